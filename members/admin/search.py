"""Finding a member the way staff type it, and showing identifiers without exposing them.

Identifiers are stored normalised (E.164 phones, case-folded emails, cards without spaces), so
the search normalises what staff type in the same way, for each coalition's phone region, and
then looks the value up exactly on the unique (coalition, kind, value) index.
"""

import re
import uuid
from functools import reduce
from operator import or_

from django.db.models import Q, QuerySet

from coalition.errors import InvalidRequest
from coalition.models import Coalition
from members.identifiers import identifier_normalise
from members.models import Identifier, IdentifierKind, Member

SHORT_ID = re.compile(r"^[0-9a-f]{8}$")
MASK = "•"


def members_search(queryset: QuerySet[Member], term: str) -> QuerySet[Member]:
    """Members known by `term`: a card, phone (any format) or email; a member id or the
    8-character short id; or, for a term with no digits and no @, part of a name."""
    term = term.strip()
    if not term:
        return queryset
    match = Q(pk__in=[])
    lookups = [
        Q(coalition_id=coalition_id, kind=kind, value=value)
        for coalition_id, region in Coalition.objects.values_list("pk", "phone_region")
        for kind, value in identifier_candidates(term, region)
    ]
    if lookups:
        match |= Q(pk__in=Identifier.objects.filter(reduce(or_, lookups)).values("member_id"))
    match |= _id_match(term.lower())
    if not any(char.isdigit() for char in term) and "@" not in term:
        match |= Q(name__icontains=term)
    return queryset.filter(match)


def identifier_candidates(term: str, region: str) -> list[tuple[str, str]]:
    """Every (kind, value) `term` could be, normalised as identifiers are stored."""
    found = []
    for kind in IdentifierKind:
        try:
            found.append((kind.value, identifier_normalise(kind, term, region)))
        except InvalidRequest:
            continue  # not this kind of identifier
    return found


def _id_match(term: str) -> Q:
    try:
        return Q(pk=uuid.UUID(term))
    except ValueError:
        pass
    if SHORT_ID.match(term):
        # The short id is the uuid's first 8 hex digits: a range on the primary key index.
        return Q(pk__gte=uuid.UUID(term + "0" * 24), pk__lte=uuid.UUID(term + "f" * 24))
    return Q(pk__in=[])


def identifier_mask(kind: str | None, value: str | None) -> str:
    """`+91•••••••5678`, `p•••@example.com`, `••••3456`: enough to recognise, not to copy."""
    if not value:
        return "—"
    if kind == IdentifierKind.PHONE:
        return value[:3] + MASK * max(len(value) - 7, 0) + value[-4:]
    if kind == IdentifierKind.EMAIL:
        local, _, domain = value.partition("@")
        return f"{local[:1]}{MASK * 3}@{domain}"
    return MASK * 4 + value[-4:]


def name_mask(name: str) -> str:
    """`Priya Sharma` → `P. S.`: enough to tell two results apart, not to know who it is."""
    return " ".join(f"{word[:1]}." for word in name.split()) or "—"
