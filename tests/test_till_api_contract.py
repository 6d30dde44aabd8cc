"""The till API over HTTP, as `till-api.md` fixes it: enrol, earn, burn, reverse, lookup and the
transaction reads; member references; reversal semantics; what one tenant's till can see of
another's; and the number of queries a posting costs.

Error statuses and idempotency are in `test_till_api_errors.py`, batch files in
`test_till_api_batches.py`; both import the helpers defined here.
"""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coalition.models import Journal, JournalKind
from coalition.services import points_burn, points_earn, points_reverse
from coalition.services.programme import add_months
from consent.services import consents_record
from members.models import Identifier, Member, MemberStatus
from members.services import members_merge
from members.tests.factories import MemberFactory
from tenants.services import till_create
from tests.till_api import PROBLEM, problem_name, till_client

JSON = "application/json"
# The fields `till-api.md` gives a transaction (additions are allowed, so this is a subset).
TRANSACTION_FIELDS = {
    "id",
    "kind",
    "points",
    "amount",
    "value",
    "receipt",
    "tenant",
    "till",
    "occurred_at",
    "posted_at",
    "reverses",
}


# Helpers shared by the three till API test modules.


def problem(response: Any, status: int, name: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem of `status` named `name`, and return its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM, response.content
    body: dict[str, Any] = response.json()
    assert problem_name(response) == name, body
    assert body["type"].endswith(f"/problems/{name}")
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def validation_errors(response: Any) -> dict[str, list[str]]:
    """Assert a 422 validation-error and return its `errors` (every value a list of messages)."""
    errors: dict[str, list[str]] = problem(response, 422, "validation-error")["errors"]
    assert errors, "a validation-error names at least one field"
    for messages in errors.values():
        assert messages and all(isinstance(m, str) and m for m in messages)
    return errors


def ok(response: Any, status: int) -> Any:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    return response.json()


def ref(member: Member, kind: str = "email") -> dict[str, str]:
    """How a till names `member`: {"card"|"phone"|"email": value} or {"id": uuid}."""
    if kind == "id":
        return {"id": str(member.pk)}
    return {kind: Identifier.objects.get(member=member, kind=kind).value}


def earn_body(
    member: Member | dict[str, Any], amount: Any = "4000.00", receipt: str = "A-1001", **extra: Any
) -> dict[str, Any]:
    who = member if isinstance(member, dict) else ref(member)
    return {"member": who, "amount": amount, "currency": "INR", "receipt": receipt, **extra}


def burn_body(
    member: Member | dict[str, Any],
    points: Any = 40,
    bill_amount: str = "600.00",
    receipt: str = "F-77",
    **extra: Any,
) -> dict[str, Any]:
    who = member if isinstance(member, dict) else ref(member)
    return {
        "member": who,
        "points": points,
        "bill_amount": bill_amount,
        "receipt": receipt,
        **extra,
    }


def earn_now(till: Any, member: Member, amount: str, receipt: str, **kwargs: Any) -> Journal:
    """A given: an earn posted through the service, not the subject of the test."""
    return points_earn(
        till=till, member=member, amount=Decimal(amount), receipt=receipt, **kwargs
    ).journal


def burn_now(till: Any, member: Member, points: int, receipt: str, **kwargs: Any) -> Journal:
    return points_burn(
        till=till,
        member=member,
        points=points,
        bill_amount=Decimal("100000.00"),
        receipt=receipt,
        **kwargs,
    ).journal


# The worked example, end to end over HTTP


def test_worked_example_enrol_earn_burn_and_read_back(api_a, api_b, assert_ledger_clean):
    # Given a shopper enrolled at the apparel store's till
    enrolled = ok(
        api_a.post(
            "members",
            {
                "phone": "+919812345678",
                "name": "Asha",
                "adult": True,
                "consents": {"programme": True, "marketing_mall": False},
            },
        ),
        201,
    )
    assert set(enrolled) == {"id", "card", "balance", "pending"}
    assert (enrolled["balance"], enrolled["pending"]) == (0, 0)
    assert len(enrolled["card"]) == 16
    member = Member.objects.get(pk=enrolled["id"])
    # When they spend 4,000.00 at the apparel store
    earned = ok(api_a.post("earn", earn_body({"card": enrolled["card"]})), 201)
    # Then they earn 40 points, posted by the till's own tenant and till
    assert set(earned) == {"transaction", "balance", "pending"}
    earn = earned["transaction"]
    assert set(earn) >= TRANSACTION_FIELDS
    assert earn["kind"] == "earn"
    assert (earn["points"], earn["amount"], earn["value"]) == (40, "4000.00", "40.00")
    assert (earn["receipt"], earn["tenant"], earn["till"]) == ("A-1001", "apparel", "a1")
    assert earn["reverses"] is None
    assert (earned["balance"], earned["pending"]) == (40, 0)
    # When they redeem 40 points against a 600.00 bill at the food court
    burned = ok(api_b.post("burn", burn_body({"phone": "+919812345678"})), 201)
    # Then the food court gives a 40.00 discount and the balance is 0
    burn = burned["transaction"]
    assert (burn["kind"], burn["points"], burn["value"]) == ("burn", 40, "40.00")
    assert (burn["tenant"], burn["till"], burn["receipt"]) == ("food-court", "b1", "F-77")
    assert (burned["balance"], burned["pending"]) == (0, 0)
    # And each tenant reads back its own transaction exactly as it was posted
    assert ok(api_a.get(f"transactions/{earn['id']}"), 200) == earn
    assert ok(api_b.get(f"transactions/{burn['id']}"), 200) == burn
    assert Journal.objects.filter(member=member).count() == 2
    assert_ledger_clean(member.coalition)


def test_a_purchase_worth_no_points_is_still_recorded(api_a, member):
    posted = ok(api_a.post("earn", earn_body(member, amount="99.99")), 201)
    assert (posted["transaction"]["points"], posted["balance"]) == (0, 0)
    assert Journal.objects.filter(kind=JournalKind.EARN, receipt="A-1001").exists()


def test_an_earn_and_a_burn_may_share_a_receipt(api_a, member):
    # Given an earn on receipt R-9
    ok(api_a.post("earn", earn_body(member, receipt="R-9")), 201)
    # When the same till redeems points on the same bill
    burned = ok(api_a.post("burn", burn_body(member, points=10, receipt="R-9")), 201)
    # Then the burn is accepted, but a second earn on R-9 is a duplicate
    assert burned["balance"] == 30
    problem(api_a.post("earn", earn_body(member, receipt="R-9")), 409, "duplicate-receipt")
    assert Journal.objects.filter(receipt="R-9").count() == 2


def test_holdback_shows_as_pending_not_spendable(api_a, coalition, member):
    coalition.holdback_days = 7
    coalition.save()
    posted = ok(api_a.post("earn", earn_body(member)), 201)
    assert (posted["balance"], posted["pending"]) == (0, 40)
    available = problem(
        api_a.post("burn", burn_body(member, points=1)), 409, "insufficient-points"
    )["available"]
    assert available == 0


# Member references


@pytest.mark.parametrize("kind", ["card", "phone", "email", "id"])
def test_each_kind_of_reference_names_the_same_member(api_a, coalition, kind):
    shopper = MemberFactory.create(coalition=coalition, phone="+919812345678")
    posted = ok(api_a.post("earn", earn_body(ref(shopper, kind))), 201)
    assert Journal.objects.get(public_id=posted["transaction"]["id"]).member == shopper
    looked_up = ok(api_a.get("members/lookup", **ref(shopper, kind)), 200)
    assert (looked_up["id"], looked_up["balance"]) == (str(shopper.pk), 40)


@pytest.mark.parametrize("phone", ["9812345678", "98123 45678", "+91 98123-45678", "09812345678"])
def test_phone_without_country_code_takes_the_coalition_region(api_a, coalition, phone):
    shopper = MemberFactory.create(coalition=coalition, phone="+919812345678")
    assert ok(api_a.get("members/lookup", phone=phone), 200)["id"] == str(shopper.pk)
    posted = ok(api_a.post("earn", earn_body({"phone": phone})), 201)
    assert Journal.objects.get(public_id=posted["transaction"]["id"]).member == shopper


def test_email_compares_case_insensitively(api_a, coalition):
    shopper = MemberFactory.create(coalition=coalition, email="asha.k@example.com")
    assert ok(api_a.get("members/lookup", email="Asha.K@EXAMPLE.com"), 200)["id"] == str(shopper.pk)
    ok(api_a.post("earn", earn_body({"email": "ASHA.K@example.COM"})), 201)
    assert Journal.objects.get().member == shopper
    problem(
        api_a.post(
            "members",
            {"email": "ASHA.K@Example.com", "adult": True, "consents": {"programme": True}},
        ),
        409,
        "member-exists",
    )


def test_two_references_at_once_are_refused(api_a, member):
    both = {**ref(member, "email"), **ref(member, "card")}
    assert set(validation_errors(api_a.post("earn", earn_body(both)))) == {
        "member.non_field_errors"
    }
    assert set(validation_errors(api_a.get("members/lookup", **both))) == {"non_field_errors"}
    assert not Journal.objects.exists()


def test_an_unknown_member_is_not_found(api_a, member):
    problem(api_a.get("members/lookup", card="7000000000000000"), 404, "member-not-found")
    problem(api_a.post("earn", earn_body({"card": "7000000000000000"})), 404, "member-not-found")
    stranger = MemberFactory.create()  # enrolled in another mall's programme
    problem(api_a.post("earn", earn_body(ref(stranger, "id"))), 404, "member-not-found")
    assert not Journal.objects.exists()


def test_an_erased_member_is_unknown_to_tills(api_a, member):
    card, email = ref(member, "card"), ref(member, "email")
    # There is no erasure service yet (issue 6); the status is what every lookup filters on.
    Member.objects.filter(pk=member.pk).update(status=MemberStatus.ERASED)
    for reference in (card, email, ref(member, "id")):
        problem(api_a.get("members/lookup", **reference), 404, "member-not-found")
        problem(api_a.post("earn", earn_body(reference)), 404, "member-not-found")
    assert not Journal.objects.exists()


def test_a_merged_member_is_found_only_as_the_survivor(api_a, coalition, staff):
    # Given two records of one person, merged
    survivor = MemberFactory.create(coalition=coalition)
    merged = MemberFactory.create(coalition=coalition, email="old@example.com")
    members_merge(survivor=survivor, merged=merged, actor=staff, reason="same person")
    # Then the merged id is unknown, and its identifiers now name the survivor
    problem(api_a.get("members/lookup", id=str(merged.pk)), 404, "member-not-found")
    problem(api_a.post("earn", earn_body(ref(merged, "id"))), 404, "member-not-found")
    assert ok(api_a.get("members/lookup", email="old@example.com"), 200)["id"] == str(survivor.pk)


def test_a_member_who_withdrew_programme_consent_is_unknown_and_free_to_enrol(api_a, member):
    email = ref(member, "email")
    consents_record(member=member, consents={"programme": False})
    problem(api_a.get("members/lookup", **email), 404, "member-not-found")
    ok(api_a.post("members", {**email, "adult": True, "consents": {"programme": True}}), 201)


# Lookup


def test_lookup_gives_a_till_no_personal_data(api_a, coalition):
    shopper = MemberFactory.create(
        coalition=coalition, name="Asha Kulkarni", phone="+919812345678", email="asha@example.com"
    )
    looked_up = ok(api_a.get("members/lookup", phone="+919812345678"), 200)
    assert set(looked_up) == {"id", "card", "balance", "pending", "expiring"}
    assert looked_up["card"] == ref(shopper, "card")["card"]
    raw = api_a.get("members/lookup", phone="+919812345678").content.decode()
    for personal in ("Asha", "Kulkarni", "9812345678", "asha@example.com"):
        assert personal not in raw


def test_lookup_lists_points_expiring_within_30_days(api_a, till_a, member):
    # Given lots earned 350 and 330 days ago (fixed 12-month expiry), and one earned today
    now = timezone.now()
    soon = earn_now(till_a, member, "1000.00", "OLD", occurred_at=now - timedelta(days=350))
    earn_now(till_a, member, "2000.00", "MID", occurred_at=now - timedelta(days=330))
    earn_now(till_a, member, "2500.00", "NEW")
    # When the till looks the member up
    looked_up = ok(api_a.get("members/lookup", **ref(member)), 200)
    # Then only the lot whose last day falls in the next 30 days is listed
    assert (looked_up["balance"], looked_up["pending"]) == (55, 0)
    last_day = add_months(timezone.localdate(soon.occurred_at), 12) - timedelta(days=1)
    assert 0 <= (last_day - timezone.localdate()).days <= 30
    assert looked_up["expiring"] == [{"points": 10, "expires_on": last_day.isoformat()}]


# Reversals


def test_partial_refund_of_an_earn_reverses_what_the_refund_cost(api_a, till_a, member):
    # Given 40 points for a 4,050.00 purchase
    original = earn_now(till_a, member, "4050.00", "A-1")
    # When 60.00 of it is refunded
    refunded = ok(
        api_a.post(
            f"transactions/{original.public_id}/reverse", {"reason": "sock", "amount": "60.00"}
        ),
        201,
    )
    # Then the points reversed are 40 less what the unrefunded 3,990.00 earns (39): 1, not 0
    reversal = refunded["transaction"]
    assert (reversal["kind"], reversal["reverses"]) == ("earn_reversal", str(original.public_id))
    assert (reversal["points"], reversal["amount"], refunded["balance"]) == (1, "60.00", 39)
    # When 1,500.00 more is refunded, the rest (2,490.00) still earns 24: 15 more are reversed
    second = ok(
        api_a.post(
            f"transactions/{original.public_id}/reverse", {"reason": "shirt", "amount": "1500.00"}
        ),
        201,
    )
    assert (second["transaction"]["points"], second["balance"]) == (15, 24)
    # And refunding more than remains is refused with what remains
    over = problem(
        api_a.post(
            f"transactions/{original.public_id}/reverse", {"reason": "all", "amount": "2490.01"}
        ),
        409,
        "already-reversed",
    )
    assert over["remaining"] == "2490.00"
    # And without an amount the whole remainder is refunded
    rest = ok(api_a.post(f"transactions/{original.public_id}/reverse", {"reason": "all"}), 201)
    assert (rest["transaction"]["amount"], rest["transaction"]["points"]) == ("2490.00", 24)
    assert rest["balance"] == 0


def test_partial_reversal_of_a_burn_is_in_points(api_b, till_a, till_b, member):
    earn_now(till_a, member, "4000.00", "A-1")
    burn = burn_now(till_b, member, 40, "F-1")
    path = f"transactions/{burn.public_id}/reverse"
    first = ok(api_b.post(path, {"reason": "voided line", "points": 15}), 201)
    assert (first["transaction"]["kind"], first["transaction"]["points"]) == ("burn_reversal", 15)
    assert (first["transaction"]["reverses"], first["balance"]) == (str(burn.public_id), 15)
    assert (
        problem(api_b.post(path, {"reason": "x", "points": 26}), 409, "already-reversed")[
            "remaining"
        ]
        == 25
    )
    assert set(validation_errors(api_b.post(path, {"reason": "in money", "amount": "10.00"}))) == {
        "amount"
    }
    rest = ok(api_b.post(path, {"reason": "voided bill"}), 201)
    assert (rest["transaction"]["points"], rest["balance"]) == (25, 40)
    assert problem(api_b.post(path, {"reason": "again"}), 409, "already-reversed")["remaining"] == 0


def test_a_reversal_cannot_be_reversed(api_a, till_a, member):
    original = earn_now(till_a, member, "4000.00", "A-1")
    reversal = ok(api_a.post(f"transactions/{original.public_id}/reverse", {"reason": "r"}), 201)
    problem(
        api_a.post(f"transactions/{reversal['transaction']['id']}/reverse", {"reason": "undo"}),
        422,
        "not-reversible",
    )


def test_refund_after_the_points_were_spent_goes_negative_and_blocks_burns(
    api_a, api_b, till_a, member, assert_ledger_clean
):
    # Given 40 points earned at A, 30 of them spent at B
    original = earn_now(till_a, member, "4000.00", "A-1")
    ok(api_b.post("burn", burn_body(member, points=30, receipt="F-1")), 201)
    # When A refunds the whole purchase
    refunded = ok(api_a.post(f"transactions/{original.public_id}/reverse", {"reason": "r"}), 201)
    # Then all 40 are reversed and the balance goes negative
    assert (refunded["transaction"]["points"], refunded["balance"]) == (40, -30)
    assert ok(api_b.get("members/lookup", **ref(member)), 200)["balance"] == -30
    # And the member cannot burn until a later earn repays the debt
    short = problem(
        api_b.post("burn", burn_body(member, points=1, receipt="F-2")), 409, "insufficient-points"
    )
    assert short["available"] == 0
    assert (
        ok(api_a.post("earn", earn_body(member, amount="5000.00", receipt="A-2")), 201)["balance"]
        == 20
    )
    assert_ledger_clean(member.coalition)


def test_any_till_of_the_tenant_may_reverse(api_a, till_a, member):
    original = earn_now(till_a, member, "4000.00", "A-1")
    other = till_client(till_create(tenant=till_a.tenant, store_code="east", till_code="a2"))
    reversed_ = ok(other.post(f"transactions/{original.public_id}/reverse", {"reason": "r"}), 201)
    assert (reversed_["transaction"]["till"], reversed_["transaction"]["tenant"]) == (
        "a2",
        "apparel",
    )


def test_an_earn_is_not_reversed_in_points(api_a, till_a, member):
    original = earn_now(till_a, member, "4000.00", "A-1")
    response = api_a.post(
        f"transactions/{original.public_id}/reverse", {"reason": "r", "points": 5}
    )
    assert set(validation_errors(response)) == {"points"}
    assert not original.reversals.exists()


# Transactions list


def _posted(till: Any, member: Member, receipt: str, at: Any, kind: str = "earn") -> str:
    if kind == "earn":
        return str(earn_now(till, member, "1000.00", receipt, now=at).public_id)
    return str(burn_now(till, member, 1, receipt, now=at).public_id)


def test_transactions_list_filters_by_since_till_and_kind(api_a, till_a, till_b, member):
    t0 = timezone.now() - timedelta(hours=3)
    second_till = till_create(tenant=till_a.tenant, store_code="main", till_code="a2")
    early = _posted(till_a, member, "1", t0)
    at_since = _posted(second_till, member, "2", t0 + timedelta(hours=1))
    burn = _posted(till_a, member, "3", t0 + timedelta(hours=2), kind="burn")
    _posted(till_b, member, "4", t0 + timedelta(hours=2))  # tenant B's: never listed to A

    def ids(**params: Any) -> list[str]:
        page = ok(api_a.get("transactions", **params), 200)
        assert set(page) == {"next", "previous", "results"}
        return [row["id"] for row in page["results"]]

    assert ids() == [early, at_since, burn]
    since = (t0 + timedelta(hours=1)).isoformat()
    assert ids(since=since) == [at_since, burn]  # inclusive
    assert ids(till="a2") == [at_since]
    assert ids(kind="burn") == [burn]
    assert ids(kind="earn", since=since) == [at_since]
    assert ids(till="b1") == []
    assert "since" in validation_errors(api_a.get("transactions", since="2026-01-01T00:00:00"))
    assert "kind" in validation_errors(api_a.get("transactions", kind="expire"))


def test_transactions_list_is_cursor_paginated_by_posted_at_then_id(api_a, till_a, member):
    # Given five transactions, two of them posted at the very same moment
    t0 = timezone.now() - timedelta(hours=1)
    times = [t0, t0 + timedelta(minutes=2), t0 + timedelta(minutes=1), t0 + timedelta(minutes=1)]
    posted = [_posted(till_a, member, f"R-{i}", at) for i, at in enumerate(times)]
    posted.append(_posted(till_a, member, "R-4", t0 + timedelta(minutes=3)))
    expected = [
        str(j.public_id)
        for j in Journal.objects.filter(public_id__in=posted).order_by("posted_at", "id")
    ]
    assert expected[:3] == [posted[0], posted[2], posted[3]]  # the tie goes by id
    # When the till walks the list two at a time
    first = ok(api_a.get("transactions", page_size=2), 200)
    assert first["previous"] is None and first["next"]
    seen = [row["id"] for row in first["results"]]
    page = first
    while page["next"]:
        page = ok(api_a.client.get(page["next"], **api_a.auth), 200)
        assert len(page["results"]) <= 2
        seen += [row["id"] for row in page["results"]]
    # Then it sees every transaction once, in (posted_at, id) order
    assert seen == expected
    back = ok(api_a.client.get(page["previous"], **api_a.auth), 200)
    assert [row["id"] for row in back["results"]] == expected[2:4]


# Cross-tenant: a till sees and touches only its own tenant's transactions


def test_a_till_cannot_read_or_reverse_another_tenants_transaction(api_a, api_b, till_b, member):
    earn_now(till_b, member, "4000.00", "B-1")
    theirs = str(Journal.objects.get(receipt="B-1").public_id)
    problem(api_a.get(f"transactions/{theirs}"), 404, "transaction-not-found")
    problem(
        api_a.post(f"transactions/{theirs}/reverse", {"reason": "not mine"}),
        404,
        "transaction-not-found",
    )
    assert ok(api_a.get("transactions"), 200)["results"] == []
    assert Journal.objects.count() == 1
    # And B itself still can
    assert ok(api_b.get(f"transactions/{theirs}"), 200)["id"] == theirs


@pytest.mark.parametrize("field", ["tenant", "till", "tenant_id", "till_code"])
def test_a_body_cannot_name_another_tenant_or_till(api_a, till_b, member, field):
    body = earn_body(member, **{field: till_b.tenant.slug if "tenant" in field else "b1"})
    assert set(validation_errors(api_a.post("earn", body))) == {field}
    assert not Journal.objects.exists()


def test_what_a_till_posts_is_always_its_own_tenants(api_a, api_b, till_a, member):
    posted = ok(api_a.post("earn", earn_body(member, mall="phoenix", shop="b1")), 201)
    journal = Journal.objects.get(public_id=posted["transaction"]["id"])
    assert (journal.tenant, journal.till) == (till_a.tenant, till_a)
    problem(api_b.get(f"transactions/{journal.public_id}"), 404, "transaction-not-found")


# Query counts


# The counts are for a test run inside the test's transaction, where each `atomic` block is a
# SAVEPOINT/RELEASE pair; in production the outermost pair is BEGIN/COMMIT, which Django does not
# log as queries, so a live request costs two fewer.


def test_earn_costs_a_fixed_number_of_queries(api_a, member, django_assert_num_queries):
    body = earn_body(ref(member, "card"))
    # 1 the till's key (with till, tenant and coalition); 2 SAVEPOINT (idempotency);
    # 3 advisory lock on the key + lock_timeout + stored response?; 4 SAVEPOINT (points_earn);
    # 5 member by card; 6 lock the member's accounts (FOR UPDATE); 7 under the lock: member
    # status, tenant's rate on the day, tenant's issued account, margin account; 8 journal,
    # guarded balance UPDATE, entries and the new lot (one statement; the receipt's unique
    # index decides a duplicate); 9 RELEASE; 10 INSERT stored response; 11 RELEASE.
    # (No UPDATE of the member's last activity: it is recorded to the hour, and this member
    # enrolled moments ago.)
    with django_assert_num_queries(11):
        ok(api_a.post("earn", body), 201)


def test_burn_costs_a_fixed_number_of_queries(api_b, till_a, member, django_assert_num_queries):
    earn_now(till_a, member, "4000.00", "A-1")
    body = burn_body(ref(member, "card"))
    # 1 the till's key; 2 SAVEPOINT (idempotency); 3 advisory lock + lock_timeout + stored
    # response?; 4 SAVEPOINT (points_burn); 5 member by card; 6 lock the member's accounts;
    # 7 under the lock: member status, receipt already posted? (a burn checks it before the
    # balance, as the contract orders), tenant's rate, tenant's redeemed account, variance
    # account; 8 journal, guarded balance UPDATE and entries (one statement); 9 lots taken FIFO
    # and their consumptions (one statement, however many lots); 10 RELEASE; 11 INSERT stored
    # response; 12 RELEASE.
    # (Arrears cost nothing yet: no statements exist before the monthly close, issue 4; last
    # activity as for the earn.)
    with django_assert_num_queries(12):
        ok(api_b.post("burn", body), 201)


def test_transactions_list_has_no_n_plus_one(api_a, till_a, member):
    other_till = till_create(tenant=till_a.tenant, store_code="main", till_code="a2")

    def add_rows(groups: int) -> None:
        # Two earns from two tills and a reversal (which names the transaction it reverses)
        for _ in range(groups):
            n = Journal.objects.count()
            first = earn_now(till_a, member, "100.00", f"S-{n}")
            earn_now(other_till, member, "100.00", f"S-{n + 1}")
            points_reverse(original=first, tenant=till_a.tenant, till=till_a, reason="r")

    def queries_for(rows: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            page = ok(api_a.get("transactions", page_size=100), 200)
        assert len(page["results"]) == rows
        return len(captured)

    add_rows(1)
    few = queries_for(3)
    add_rows(9)
    many = queries_for(30)
    # 1 the till's key; 2 one page of journals joined to their tenant, till and reversed journal
    assert few == many == 2


def test_the_hand_built_transaction_matches_its_serializer(api_a, till_a, member):
    # Given an earn, a burn and a reversal (one without a till: made by staff)
    from coalition.api.serializers import TransactionSerializer, transaction_data
    from coalition.selectors import transactions_for_tenant
    from coalition.services import points_reverse

    earn = earn_now(till_a, member, "4000.00", "H-1")
    burn_now(till_a, member, 5, "H-2")
    points_reverse(original=earn, tenant=till_a.tenant, reason="staff refund")
    journals = list(transactions_for_tenant(till_a.tenant_id))
    assert {j.kind for j in journals} == {"earn", "burn", "earn_reversal"}
    # Then the fast rendering of the till path equals the documented serializer's, field by field
    for journal in journals:
        assert transaction_data(journal) == dict(TransactionSerializer(journal).data)
