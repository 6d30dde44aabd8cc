"""Historical transactions: each row posted by points_earn / points_burn as a till would, a
receipt already posted skipped (the same file twice posts nothing twice), refusals per row."""

from decimal import Decimal
from typing import Any

from tablib import Dataset

from coalition.models import AccountKind, Coalition, Journal, JournalKind
from coalition.resources import TRANSACTION_COLUMNS, TransactionResource
from members.models import Member
from members.tests.factories import MemberFactory
from tenants.models import Till

HEADER = ",".join(TRANSACTION_COLUMNS)


def run(coalition: Coalition, lines: list[str], dry_run: bool = False) -> Any:
    dataset = Dataset().load("\n".join([HEADER, *lines]) + "\n", format="csv")
    return TransactionResource(coalition=coalition).import_data(
        dataset, dry_run=dry_run, use_transactions=dry_run, raise_errors=False
    )


def balance(member: Member) -> int:
    return member.accounts.get(kind=AccountKind.MEMBER_POINTS).balance


def test_earns_and_burns_are_posted_through_the_services_once(
    coalition: Coalition, till_a: Till, till_b: Till, assert_ledger_clean: Any
) -> None:
    shopper = MemberFactory.create(coalition=coalition, phone="+919812345678", card="7000123")
    lines = [
        "earn,apparel,a1,,98123 45678,,4000.00,,,A-1001,2024-03-01T14:05:00+05:30",
        "burn,food-court,b1,7000123,,,,40,600.00,F-77,2024-03-15 19:30",
        "EARN,apparel,a1,,,nobody@example.com,500.00,,,A-1002,2024-03-02T10:00:00+05:30",
        "earn,apparel,zz,7000123,,,100.00,,,A-1003,2024-03-02T10:00:00+05:30",
        "burn,food-court,b1,7000123,,,,900,600.00,F-78,2024-03-16T10:00:00+05:30",
        "earn,apparel,a1,7000123,+919812345678,,100.00,,,A-1004,yesterday",
    ]

    preview = run(coalition, lines, dry_run=True)

    assert not Journal.objects.exists()
    result = run(coalition, lines)

    for outcome in (preview, result):
        assert [row.import_type for row in outcome.rows] == [
            "new",
            "new",
            "invalid",
            "invalid",
            "invalid",
            "invalid",
        ]
    refused = {row.number: row.error_dict for row in result.invalid_rows}
    assert refused == {
        3: {"__all__": ["No member with that identifier."]},
        4: {"till": ["No till with this code at a tenant with this slug."]},
        5: {"points": ["The points are worth 900.00, more than the bill of 600.00."]},
        6: {
            "__all__": ["Name the member by exactly one of card, phone or email."],
            "occurred_at": ["A date and time, as 2024-03-01T14:05:00+05:30."],
        },
    }
    earn = Journal.objects.get(kind=JournalKind.EARN)
    assert (earn.member_id, earn.points, earn.amount, earn.till, earn.receipt) == (
        shopper.pk,
        40,
        Decimal("4000.00"),
        till_a,
        "A-1001",
    )
    assert earn.occurred_at.isoformat() == "2024-03-01T08:35:00+00:00"
    burn = Journal.objects.get(kind=JournalKind.BURN)
    # A time without an offset is in the programme's time zone (Asia/Kolkata).
    assert burn.occurred_at.isoformat() == "2024-03-15T14:00:00+00:00"
    assert (burn.points, burn.till) == (40, till_b)
    assert balance(shopper) == 0
    assert_ledger_clean(coalition)

    again = run(coalition, lines[:2])

    assert [row.import_type for row in again.rows] == ["skip", "skip"]
    assert Journal.objects.count() == 2
    assert balance(shopper) == 0


def test_a_receipt_posted_with_other_details_is_an_error_not_a_skip(
    coalition: Coalition, till_a: Till
) -> None:
    MemberFactory.create(coalition=coalition, card="7000123")
    run(coalition, ["earn,apparel,a1,7000123,,,4000.00,,,A-1,2024-03-01T14:05:00+05:30"])

    result = run(coalition, ["earn,apparel,a1,7000123,,,5000.00,,,A-1,2024-03-01T14:05:00+05:30"])

    assert {row.number: row.error_dict for row in result.invalid_rows} == {
        1: {"receipt": ["This receipt was already posted with other details."]}
    }
    assert Journal.objects.get().amount == Decimal("4000.00")


def test_a_wrong_header_refuses_the_file(coalition: Coalition) -> None:
    dataset = Dataset().load("kind,till,amount\nearn,a1,10\n", format="csv")

    result = TransactionResource(coalition=coalition).import_data(dataset, dry_run=True)

    assert [str(error.error) for error in result.base_errors] == [
        "The header row must name exactly the columns kind, tenant, till, card, phone, email, "
        "amount, points, bill_amount, receipt, occurred_at (missing columns: tenant, card, "
        "phone, email, points, bill_amount, receipt, occurred_at)."
    ]
