"""Enrolment (identifiers, consent, minors) and merging two records of one person."""

from decimal import Decimal

import pytest

from coalition.errors import InvalidRequest, MemberExists, MemberNotFound
from coalition.models import JournalKind, Lot
from coalition.services import points_burn, points_earn, points_reverse
from consent.selectors import consent_state
from consent.services import consents_record
from members.identifiers import luhn_check_digit
from members.models import Identifier, IdentifierKind, MemberStatus, MergeRecord
from members.selectors import member_balances, member_card, member_find
from members.services import member_enrol, members_merge


def test_enrolment_normalises_identifiers_and_records_consent(coalition):
    member = member_enrol(
        coalition=coalition,
        phone="98123 45678",
        email="Priya.Shah@Example.COM",
        adult=True,
        consents={"programme": True, "marketing_mall": False},
    )
    values = dict(member.identifiers.values_list("kind", "value"))
    assert values["phone"] == "+919812345678"
    assert values["email"] == "priya.shah@example.com"
    card = member_card(member)
    assert card is not None and len(card) == 16 and card.isdigit()
    assert luhn_check_digit(card[:-1]) == card[-1]
    assert consent_state(member) == {"programme": True, "marketing_mall": False}
    assert member_find(coalition, kind="phone", value="+91 98123-45678") == member
    assert member_find(coalition, kind="email", value="PRIYA.shah@example.com") == member


def test_identifier_is_unique_per_coalition(coalition):
    member_enrol(coalition=coalition, phone="9812345678", adult=True, consents={"programme": True})
    with pytest.raises(MemberExists) as taken:
        member_enrol(
            coalition=coalition, phone="+919812345678", adult=True, consents={"programme": True}
        )
    assert "9812345678" not in taken.value.detail


@pytest.mark.parametrize(
    "kwargs",
    [
        {"adult": True, "consents": {"programme": False}, "email": "a@example.com"},
        {"adult": True, "consents": {"programme": True}},
        {"adult": False, "consents": {"programme": True}, "email": "a@example.com"},
        {"adult": True, "consents": {"programme": True}, "phone": "12"},
        {"adult": True, "consents": {"programme": True}, "email": "not-an-email"},
        {"adult": True, "consents": {"programme": True, "nonsense": True}, "card": "C1"},
    ],
)
def test_enrolment_refusals(coalition, kwargs):
    with pytest.raises(InvalidRequest):
        member_enrol(coalition=coalition, **kwargs)
    assert not Identifier.objects.exists()


def test_minor_is_enrolled_by_staff_with_guardian_consent(coalition, staff, till_a):
    with pytest.raises(InvalidRequest):
        member_enrol(
            coalition=coalition,
            card="KID1",
            adult=False,
            guardian_name="Parent",
            guardian_consent=True,
            consents={"programme": True},
            till=till_a,
        )
    minor = member_enrol(
        coalition=coalition,
        card="KID1",
        adult=False,
        guardian_name="Parent",
        guardian_consent=True,
        consents={"programme": True},
        user=staff,
    )
    assert minor.guardian_consent_at is not None
    assert not minor.adult_declared


def test_merge_moves_balance_lots_and_identifiers(
    coalition, till_a, till_b, staff, assert_ledger_clean
):
    keep = member_enrol(
        coalition=coalition, phone="9812345678", adult=True, consents={"programme": True}
    )
    gone = member_enrol(
        coalition=coalition, email="dup@example.com", adult=True, consents={"programme": True}
    )
    points_earn(till=till_a, member=keep, amount=Decimal("1000.00"), receipt="1")
    earned = points_earn(till=till_a, member=gone, amount=Decimal("3000.00"), receipt="2")
    points_burn(till=till_b, member=gone, points=5, bill_amount=Decimal("50"), receipt="3")

    record = members_merge(survivor=keep, merged=gone, actor=staff, reason="same person")

    assert (record.points_moved, record.lots_moved, record.identifiers_moved) == (25, 1, 2)
    assert record.journal.kind == JournalKind.MERGE
    assert member_balances(keep).balance == 35
    assert member_balances(gone).balance == 0
    assert Lot.objects.filter(member=keep).count() == 2
    assert member_find(coalition, kind="email", value="dup@example.com") == keep
    gone.refresh_from_db()
    assert (gone.status, gone.merged_into) == (MemberStatus.MERGED, keep)
    # History stays under the old id
    assert gone.journals.filter(kind=JournalKind.EARN).count() == 1
    # The merged member is unknown to tills; its old earn reverses on the survivor
    with pytest.raises(MemberNotFound):
        points_earn(till=till_a, member=gone, amount=Decimal("100.00"), receipt="4")
    points_reverse(original=earned.journal, tenant=till_a.tenant, reason="refund")
    assert member_balances(keep).balance == 5
    assert MergeRecord.objects.get().merged_by == staff
    assert_ledger_clean(coalition)


def test_merge_with_a_negative_balance_consumes_the_survivors_lots(
    coalition, till_a, till_b, staff, assert_ledger_clean
):
    keep = member_enrol(coalition=coalition, card="K1", adult=True, consents={"programme": True})
    gone = member_enrol(coalition=coalition, card="G1", adult=True, consents={"programme": True})
    points_earn(till=till_a, member=keep, amount=Decimal("5000.00"), receipt="1")
    earned = points_earn(till=till_a, member=gone, amount=Decimal("2000.00"), receipt="2")
    points_burn(till=till_b, member=gone, points=20, bill_amount=Decimal("50"), receipt="3")
    points_reverse(original=earned.journal, tenant=till_a.tenant, reason="refund")
    assert member_balances(gone).balance == -20

    members_merge(survivor=keep, merged=gone, actor=staff, reason="same person")

    assert member_balances(keep).balance == 30
    assert sum(Lot.objects.filter(member=keep).values_list("remaining", flat=True)) == 30
    assert_ledger_clean(coalition)


def test_merge_refusals(coalition, staff):
    one = member_enrol(coalition=coalition, card="X1", adult=True, consents={"programme": True})
    with pytest.raises(InvalidRequest):
        members_merge(survivor=one, merged=one, actor=staff, reason="self")
    assert Identifier.objects.filter(kind=IdentifierKind.CARD).count() == 1


def test_withdrawing_programme_consent_ends_the_membership(till_a, member):
    # Given a member with points and identifiers
    points_earn(till=till_a, member=member, amount=Decimal("1000.00"), receipt="W-1")
    email = Identifier.objects.get(member=member, kind="email").value
    # When programme consent is withdrawn, twice
    consents_record(member=member, consents={"programme": False})
    consents_record(member=member, consents={"programme": False})
    # Then the member is unknown, cannot be posted to, and the identifiers are free again
    member.refresh_from_db()
    assert member.status == MemberStatus.WITHDRAWN
    with pytest.raises(MemberNotFound):
        member_find(member.coalition, kind="email", value=email)
    with pytest.raises(MemberNotFound):
        points_earn(till=till_a, member=member, amount=Decimal("1000.00"), receipt="W-2")
    assert Identifier.objects.filter(member=member, released_at__isnull=False).count() >= 1
    newcomer = member_enrol(
        coalition=member.coalition, email=email.upper(), adult=True, consents={"programme": True}
    )
    assert member_find(member.coalition, kind="email", value=email) == newcomer
    # And the points stay on the ledger under the old id until erasure
    assert member_balances(member).balance == 10
