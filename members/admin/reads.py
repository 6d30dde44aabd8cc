"""Reads the member pages need beyond members/selectors.py: a page of members with their
balances in one query."""

from django.db.models import Case, IntegerField, OuterRef, QuerySet, Subquery, Value, When

from coalition.models import Account, AccountKind
from members.models import Identifier, IdentifierKind, Member

# The identifier a member is shown by: a phone, else an email, else a card.
PRIMARY_FIRST = Case(
    When(kind=IdentifierKind.PHONE, then=Value(0)),
    When(kind=IdentifierKind.EMAIL, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def members_with_balances(queryset: QuerySet[Member]) -> QuerySet[Member]:
    """Each member with their balances and primary identifier, one query for the whole page."""
    accounts = Account.objects.filter(member=OuterRef("pk"))
    identifiers = Identifier.objects.filter(member=OuterRef("pk")).order_by(
        PRIMARY_FIRST, "created_at", "id"
    )
    return queryset.annotate(
        points_balance=Subquery(
            accounts.filter(kind=AccountKind.MEMBER_POINTS).values("balance")[:1]
        ),
        pending_balance=Subquery(
            accounts.filter(kind=AccountKind.MEMBER_PENDING).values("balance")[:1]
        ),
        primary_kind=Subquery(identifiers.values("kind")[:1]),
        primary_value=Subquery(identifiers.values("value")[:1]),
    )
