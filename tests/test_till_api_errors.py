"""The till API's refusals: every status code and problem type of `till-api.md`, the order the
checks run in, and what the idempotency layer stores and replays (and what it never stores).

Concurrency problems (409 request-in-progress, 503 try-again) hold a lock from a second,
separate PostgreSQL connection, so those tests commit their set-up (`transaction=True`).
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.core.cache import caches
from django.db import connection
from django.utils import timezone

from coalition.claims import claim_key
from coalition.models import Coalition, IdempotencyRecord, Journal
from coalition.services.idempotency import idempotency_records_purge
from members.models import Identifier, Member
from members.tests.factories import MemberFactory
from tenants.models import Tenant, TenantStatus, Till, TillKey
from tenants.services import tenant_set_status, till_key_revoke, till_key_rotate
from tests.test_till_api_contract import (
    JSON,
    burn_body,
    burn_now,
    earn_body,
    earn_now,
    ok,
    problem,
    ref,
    validation_errors,
)
from tests.till_api import TillClient, till_client

REPLAYED = "Idempotent-Replayed"


def enrol_body(**overrides: Any) -> dict[str, Any]:
    return {"email": "new@example.com", "adult": True, "consents": {"programme": True}, **overrides}


def as_client(api: TillClient, path: str, body: Any, authorization: str | None) -> Any:
    """POST to `path` with exactly the Authorization header given (or none)."""
    headers = {"Idempotency-Key": "k-1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return api.client.post(f"/api/v1/{path}", json.dumps(body), content_type=JSON, headers=headers)


def set_status(tenant: Tenant, status: str) -> None:
    tenant_set_status(tenant=tenant, status=status, actor=None)


# 400


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"member": {"card": "1"}, "amount": "1.00",', id="truncated"),
        pytest.param("{'amount': '4000.00'}", id="single quotes"),
        pytest.param("NaN", id="NaN"),
        pytest.param('{"amount": NaN, "receipt": "1"}', id="NaN inside"),
        pytest.param('{"points": Infinity}', id="Infinity"),
        pytest.param(b"\xff\xfe{}", id="not UTF-8"),
        pytest.param("", id="empty"),
        pytest.param("[" * 100_000, id="nested deeper than the parser goes"),
    ],
)
def test_a_body_that_is_not_json_is_malformed(api_a, raw):
    problem(api_a.post("earn", raw=raw), 400, "malformed-request")
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("path", ["members", "earn", "burn", "transactions/x/reverse", "batches"])
def test_a_post_without_idempotency_key_is_refused(api_a, member, path):
    problem(api_a.post(path, earn_body(member), key=None), 400, "idempotency-key-missing")
    assert not Journal.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_an_idempotency_key_is_1_to_255_printable_ascii(api_a, member, key):
    response = api_a.post("earn", earn_body(member), key=key)
    problem(response, 400, "idempotency-key-invalid")
    ok(api_a.post("earn", earn_body(member), key="x" * 255), 201)


# 401


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no header"),
        pytest.param("Bearer {key}", id="bearer scheme"),
        pytest.param("Token {key}", id="token scheme"),
        pytest.param("{key}", id="no scheme"),
        pytest.param("Api-Key", id="scheme without key"),
        pytest.param("Api-Key nosuchpr.nosuchsecret", id="unknown key"),
        pytest.param("Api-Key {prefix}.wrongsecret", id="right prefix wrong secret"),
        pytest.param("Api-Key {key}x", id="altered key"),
    ],
)
def test_no_or_bad_key_is_unauthenticated(api_a, member, authorization):
    if authorization is not None:
        authorization = authorization.format(key=api_a.key, prefix=api_a.key.split(".")[0])
    response = as_client(api_a, "earn", earn_body(member), authorization)
    problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Api-Key")
    assert not Journal.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def _key_of(till: Till) -> TillKey:
    return TillKey.objects.get(till=till, revoked=False)


def test_a_revoked_key_is_refused_at_once(api_a, member):
    ok(api_a.get("members/lookup", **ref(member)), 200)
    till_key_revoke(key=_key_of(api_a.till), reason="lost till")
    problem(api_a.post("earn", earn_body(member)), 401, "unauthenticated")
    problem(api_a.get("members/lookup", **ref(member)), 401, "unauthenticated")
    problem(api_a.get("transactions"), 401, "unauthenticated")


def test_a_rotated_key_is_replaced(api_a, member):
    _, new_key = till_key_rotate(key=_key_of(api_a.till))
    problem(api_a.post("earn", earn_body(member)), 401, "unauthenticated")
    renewed = TillClient(till=api_a.till, key=new_key, client=api_a.client)
    ok(renewed.post("earn", earn_body(member)), 201)


def test_a_tenant_that_exited_has_every_key_revoked(api_a, till_a, member):
    second_key = till_client(till_a)
    set_status(till_a.tenant, TenantStatus.EXITED)
    for api in (api_a, second_key):
        problem(api.post("earn", earn_body(member)), 401, "unauthenticated")
        problem(api.get("members/lookup", **ref(member)), 401, "unauthenticated")
    assert not TillKey.objects.filter(till__tenant=till_a.tenant, revoked=False).exists()


def test_a_deactivated_till_is_unauthenticated(api_a, member):
    Till.objects.filter(pk=api_a.till.pk).update(is_active=False)
    problem(api_a.post("earn", earn_body(member)), 401, "unauthenticated")


# 403


def test_a_suspended_tenant_can_neither_issue_nor_redeem(api_a, till_a, member):
    earn_now(till_a, member, "4000.00", "A-1")
    set_status(till_a.tenant, TenantStatus.SUSPENDED)
    problem(api_a.post("earn", earn_body(member, receipt="A-2")), 403, "tenant-cannot-issue")
    problem(api_a.post("burn", burn_body(member)), 403, "tenant-cannot-redeem")
    assert Journal.objects.count() == 1


def test_a_tenant_not_allowed_to_redeem_may_still_issue(api_a, till_a, member):
    Tenant.objects.filter(pk=till_a.tenant_id).update(may_redeem=False)
    ok(api_a.post("earn", earn_body(member)), 201)
    problem(api_a.post("burn", burn_body(member)), 403, "tenant-cannot-redeem")


def test_a_redeem_only_tenant_cannot_issue(api_a, till_a, member):
    Tenant.objects.filter(pk=till_a.tenant_id).update(may_issue=False, redeem_only_allowed=True)
    problem(api_a.post("earn", earn_body(member)), 403, "tenant-cannot-issue")


# 404


def test_an_unknown_member_is_a_404(api_a):
    problem(api_a.post("earn", earn_body({"card": "7000000000000000"})), 404, "member-not-found")
    problem(api_a.post("burn", burn_body({"phone": "+919800000000"})), 404, "member-not-found")
    problem(api_a.get("members/lookup", email="nobody@example.com"), 404, "member-not-found")


@pytest.mark.parametrize("transaction_id", ["7b0c6f3e-0d6e-4c41-9a55-4e7d9a7d3c11", "not-a-uuid"])
def test_an_unknown_transaction_is_a_404(api_a, transaction_id):
    problem(api_a.get(f"transactions/{transaction_id}"), 404, "transaction-not-found")
    problem(
        api_a.post(f"transactions/{transaction_id}/reverse", {"reason": "r"}),
        404,
        "transaction-not-found",
    )


def test_an_unknown_path_is_a_problem_too(api_a):
    problem(api_a.get("nowhere"), 404, "not-found")


# 409


def test_a_receipt_posted_twice_by_the_store_is_a_duplicate(api_a, api_b, till_a, member):
    ok(api_a.post("earn", earn_body(member, receipt="R-1")), 201)
    problem(api_a.post("earn", earn_body(member, receipt="R-1")), 409, "duplicate-receipt")
    # Another tenant's store may use the same receipt number
    ok(api_b.post("earn", earn_body(member, receipt="R-1")), 201)
    assert Journal.objects.filter(receipt="R-1").count() == 2


def test_not_enough_points_says_how_many_are_available(api_b, till_a, member):
    earn_now(till_a, member, "1000.00", "A-1")
    body = problem(api_b.post("burn", burn_body(member, points=11)), 409, "insufficient-points")
    assert body["available"] == 10
    assert not Journal.objects.filter(kind="burn").exists()


def test_enrolling_a_taken_identifier_names_no_other_personal_data(api_a, coalition):
    # Given a member known by phone
    existing = MemberFactory.create(
        coalition=coalition, name="Asha Kulkarni", phone="+919812345678", email="asha@example.com"
    )
    # When a till enrols someone with the same phone, written without the country code
    response = api_a.post(
        "members", enrol_body(phone="98123 45678", email="new@example.com", name="Ravi")
    )
    # Then it is refused, and the refusal names nobody
    body = problem(response, 409, "member-exists")
    assert set(body) == {"type", "title", "status", "detail"}
    raw = response.content.decode()
    for personal in ("Asha", "Kulkarni", "asha@example.com", "9812345678", str(existing.pk)):
        assert personal not in raw
    assert ref(existing, "card")["card"] not in raw
    # And nothing of the new enrolment was kept
    assert Member.objects.count() == 1
    assert not Identifier.objects.filter(value="new@example.com").exists()


# 422


def _future() -> str:
    return (timezone.now() + timedelta(minutes=6)).isoformat()


def _without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != field}


INVALID: list[Any] = [
    ("earn", lambda m: earn_body(m, amount=4000), "amount", "money as a JSON integer"),
    ("earn", lambda m: earn_body(m, amount=4000.5), "amount", "money as a JSON float"),
    ("earn", lambda m: earn_body(m, amount="4e3"), "amount", "money with an exponent"),
    ("earn", lambda m: earn_body(m, amount="4000.001"), "amount", "three decimals"),
    ("earn", lambda m: earn_body(m, amount="4,000.00"), "amount", "thousands separator"),
    ("earn", lambda m: _without(earn_body(m), "receipt"), "receipt", "missing receipt"),
    ("earn", lambda m: _without(earn_body(m), "amount"), "amount", "missing amount"),
    ("earn", lambda m: _without(earn_body(m), "member"), "member", "missing member"),
    ("earn", lambda m: earn_body(m, receipt="  "), "receipt", "blank receipt"),
    ("earn", lambda m: earn_body(m, occurred_at=_future()), "occurred_at", "6 min in the future"),
    ("earn", lambda m: earn_body(m, occurred_at="2026-11-22T18:30:00"), "occurred_at", "no offset"),
    ("earn", lambda m: earn_body(m, occurred_at="22/11/2026"), "occurred_at", "not RFC 3339"),
    (
        "earn",
        lambda m: earn_body(m, occurred_at="0001-01-01T00:00:00+05:30"),
        "occurred_at",
        "before year 1 in UTC",
    ),
    ("earn", lambda m: earn_body(m, currency="USD"), "currency", "wrong currency"),
    ("earn", lambda m: earn_body(m, amount="0.00"), "amount", "amount zero"),
    ("earn", lambda m: earn_body(m, amount="-5.00"), "amount", "amount negative"),
    ("earn", lambda m: earn_body(m, amount="1000000.01"), "amount", "above the receipt ceiling"),
    ("earn", lambda m: earn_body({"card": 7000}), "member.card", "card as a number"),
    (
        "earn",
        lambda m: {**earn_body(m), "member": "someone"},
        "member.non_field_errors",
        "member not an object",
    ),
    ("earn", lambda m: earn_body(m, tenant="food-court"), "tenant", "body names a tenant"),
    ("earn", lambda m: earn_body(m, till="b1"), "till", "body names a till"),
    ("burn", lambda m: burn_body(m, points=0), "points", "points zero"),
    ("burn", lambda m: burn_body(m, points=-5), "points", "points negative"),
    ("burn", lambda m: burn_body(m, points="40"), "points", "points as a string"),
    ("burn", lambda m: burn_body(m, points=40.0), "points", "points as a float"),
    ("burn", lambda m: burn_body(m, points=True), "points", "points as a boolean"),
    ("burn", lambda m: burn_body(m, bill_amount="39.99"), "points", "value above the bill"),
    ("burn", lambda m: burn_body(m, bill_amount="0.00"), "bill_amount", "bill zero"),
    ("burn", lambda m: burn_body(m, tenant_id=1), "tenant_id", "body names a tenant id"),
    ("members", lambda m: enrol_body(consents={"programme": False}), "consents", "no consent"),
    ("members", lambda m: enrol_body(consents={}), "consents", "consents empty"),
    ("members", lambda m: enrol_body(adult=False), "adult", "a minor"),
    ("members", lambda m: enrol_body(adult="true"), "adult", "adult as a string"),
    ("members", lambda m: _without(enrol_body(), "adult"), "adult", "adult missing"),
    ("members", lambda m: _without(enrol_body(), "email"), "phone", "no identifier"),
    ("members", lambda m: enrol_body(phone="12"), "phone", "not a phone number"),
    ("members", lambda m: enrol_body(email="not-an-email"), "email", "not an email"),
    ("members", lambda m: enrol_body(till="a1"), "till", "enrolment names a till"),
    (
        "members",
        lambda m: enrol_body(consents={"programme": "yes"}),
        "consents.programme",
        "consent not a boolean",
    ),
    (
        "members",
        lambda m: enrol_body(consents={"programme": True, "x\u0000": True}),
        "consents",
        "NUL in a purpose",
    ),
    # Lookalikes of a decimal string or a time: a final newline, non-ASCII digits
    ("earn", lambda m: earn_body(m, amount="4000.00\n"), "amount", "money with a newline"),
    ("earn", lambda m: earn_body(m, amount="\u0664\u0660\u0660\u0660"), "amount", "Arabic digits"),
    (
        "earn",
        lambda m: earn_body(m, occurred_at="2025-01-01T00:00:00+05:30\n"),
        "occurred_at",
        "time with a newline",
    ),
]


@pytest.mark.parametrize(
    ("path", "make", "field"), [pytest.param(*case[:3], id=case[3]) for case in INVALID]
)
def test_invalid_values_are_a_validation_error_naming_the_field(api_a, member, path, make, field):
    members_before = Member.objects.count()
    errors = validation_errors(api_a.post(path, make(ref(member))))
    assert set(errors) == {field}
    assert not Journal.objects.exists()
    assert Member.objects.count() == members_before


@pytest.mark.parametrize("raw", ["[]", '[{"amount": "4000.00"}]', '"earn"', "40", "null"])
def test_a_body_that_is_not_an_object_is_a_validation_error(api_a, raw):
    assert set(validation_errors(api_a.post("earn", raw=raw))) == {"non_field_errors"}


def test_a_reversal_needs_a_reason(api_a, till_a, member):
    original = earn_now(till_a, member, "4000.00", "A-1")
    path = f"transactions/{original.public_id}/reverse"
    assert set(validation_errors(api_a.post(path, {}))) == {"reason"}
    assert set(validation_errors(api_a.post(path, {"reason": "   "}))) == {"reason"}
    assert set(validation_errors(api_a.post(path, {"reason": "r", "amount": "0.00"}))) == {"amount"}
    assert Journal.objects.count() == 1


def test_the_contracts_enrol_example_is_accepted(api_a):
    # till-api.md writes `marketing`; the consent log calls that purpose marketing_mall
    consents = {"programme": True, "marketing": False}
    ok(api_a.post("members", enrol_body(phone="+919812345678", consents=consents)), 201)


# 409 already-reversed and 422 not-reversible: see the reversal tests in test_till_api_contract.py


# Order of checks: 401 → 400 key → idempotency → 400/422 → 403 → 404 → 409 receipt → 409 points


def test_401_comes_before_a_missing_key_and_a_bad_body(api_a):
    response = api_a.client.post("/api/v1/earn", "{not json", content_type=JSON)
    problem(response, 401, "unauthenticated")


def test_a_missing_key_comes_before_a_bad_body(api_a):
    problem(api_a.post("earn", raw="{not json", key=None), 400, "idempotency-key-missing")


def test_a_reused_key_comes_before_the_body_is_checked(api_a, member):
    ok(api_a.post("earn", earn_body(member), key="K-1"), 201)
    problem(
        api_a.post("earn", earn_body(member, amount="4e3"), key="K-1"),
        422,
        "idempotency-key-reused",
    )
    problem(api_a.post("earn", raw="{not json", key="K-1"), 422, "idempotency-key-reused")
    assert Journal.objects.count() == 1


def test_invalid_values_come_before_the_tenant_check(api_a, till_a, member):
    set_status(till_a.tenant, TenantStatus.SUSPENDED)
    assert set(validation_errors(api_a.post("earn", earn_body(member, amount="0.00")))) == {
        "amount"
    }
    assert set(validation_errors(api_a.post("burn", burn_body(member, points=0)))) == {"points"}


def test_a_refused_tenant_cannot_probe_who_is_a_member(api_a, till_a, member):
    set_status(till_a.tenant, TenantStatus.SUSPENDED)
    for who in ({"card": "7000000000000000"}, ref(member)):
        problem(api_a.post("burn", burn_body(who)), 403, "tenant-cannot-redeem")
        problem(api_a.post("earn", earn_body(who)), 403, "tenant-cannot-issue")


def test_an_invalid_member_reference_comes_before_the_tenant_check(api_a, till_a):
    set_status(till_a.tenant, TenantStatus.SUSPENDED)
    response = api_a.post("burn", burn_body({"phone": "not-a-phone"}))
    assert set(validation_errors(response)) == {"member.phone"}


def test_an_unknown_member_comes_before_a_duplicate_receipt(api_a, till_a, member):
    earn_now(till_a, member, "4000.00", "R-1")
    problem(
        api_a.post("earn", earn_body({"card": "7000000000000000"}, receipt="R-1")),
        404,
        "member-not-found",
    )


def test_a_duplicate_receipt_comes_before_insufficient_points(api_a, till_a, member):
    earn_now(till_a, member, "1000.00", "A-1")
    burn_now(till_a, member, 5, "F-1")
    problem(
        api_a.post("burn", burn_body(member, points=500, receipt="F-1")), 409, "duplicate-receipt"
    )


# Idempotency: what is stored and replayed


def test_a_retry_is_replayed_byte_for_byte_and_posts_nothing_twice(api_a, member):
    first = api_a.post("earn", earn_body(member), key="E-1")
    assert first.status_code == 201 and REPLAYED not in first
    for _ in range(3):
        retry = api_a.post("earn", earn_body(member), key="E-1")
        assert retry.status_code == 201
        assert retry["Content-Type"] == first["Content-Type"]
        assert retry.content == first.content
        assert retry[REPLAYED] == "true"
    assert Journal.objects.count() == 1
    assert IdempotencyRecord.objects.get().status == 201


def test_an_enrolment_is_replayed_and_enrols_once(api_a):
    first = api_a.post("members", enrol_body(), key="K-1")
    assert first.status_code == 201
    retry = api_a.post("members", enrol_body(), key="K-1")
    assert (retry.status_code, retry.content, retry[REPLAYED]) == (201, first.content, "true")
    assert str(Member.objects.get().pk) == first.json()["id"]


def test_a_reversal_is_replayed_and_reverses_once(api_a, till_a, member):
    original = earn_now(till_a, member, "4000.00", "A-1")
    path = f"transactions/{original.public_id}/reverse"
    first = api_a.post(path, {"reason": "r", "amount": "1000.00"}, key="K-1")
    assert first.status_code == 201
    retry = api_a.post(path, {"reason": "r", "amount": "1000.00"}, key="K-1")
    assert (retry.status_code, retry.content, retry[REPLAYED]) == (201, first.content, "true")
    assert original.reversals.count() == 1


def test_the_fingerprint_ignores_key_order_and_whitespace(api_a, member):
    body = earn_body(member)
    first = api_a.post("earn", raw=json.dumps(body), key="E-1")
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)
    retry = api_a.post("earn", raw=f"\n  {reordered}\n", key="E-1")
    assert (retry.status_code, retry.content, retry[REPLAYED]) == (201, first.content, "true")
    assert Journal.objects.count() == 1


def test_the_same_key_with_another_request_is_refused(api_a, member):
    first = api_a.post("earn", earn_body(member), key="E-1")
    assert first.status_code == 201
    problem(
        api_a.post("earn", earn_body(member, amount="4000.01"), key="E-1"),
        422,
        "idempotency-key-reused",
    )
    # The same body to another endpoint is another request too
    problem(api_a.post("burn", earn_body(member), key="E-1"), 422, "idempotency-key-reused")
    # And the first response is still what the key replays
    assert api_a.post("earn", earn_body(member), key="E-1").content == first.content
    assert Journal.objects.count() == 1


def test_keys_belong_to_the_till(api_a, api_b, member):
    ok(api_a.post("earn", earn_body(member, receipt="A-1"), key="SAME"), 201)
    second = api_b.post("earn", earn_body(member, receipt="B-1"), key="SAME")
    assert second.status_code == 201 and REPLAYED not in second
    assert Journal.objects.count() == 2


def test_a_refusal_is_replayed_as_it_was_even_after_the_balance_changed(api_b, till_a, member):
    # Given a burn refused for lack of points
    earn_now(till_a, member, "1000.00", "A-1")
    first = api_b.post("burn", burn_body(member), key="B-1")
    assert problem(first, 409, "insufficient-points")["available"] == 10
    # When the member earns enough and the till retries with the same key
    earn_now(till_a, member, "4000.00", "A-2")
    retry = api_b.post("burn", burn_body(member), key="B-1")
    # Then the refusal is replayed, old balance and all; a new key is a new request
    assert (retry.status_code, retry.content, retry[REPLAYED]) == (409, first.content, "true")
    assert problem(retry, 409, "insufficient-points")["available"] == 10
    assert ok(api_b.post("burn", burn_body(member), key="B-2"), 201)["balance"] == 10


def test_403_404_and_422_refusals_are_stored(api_a, till_a, coalition, member):
    # 403: the tenant is suspended, then reactivated
    set_status(till_a.tenant, TenantStatus.SUSPENDED)
    forbidden = api_a.post("earn", earn_body(member, receipt="1"), key="K-403")
    problem(forbidden, 403, "tenant-cannot-issue")
    set_status(till_a.tenant, TenantStatus.ACTIVE)
    # 404: the card is unknown, then enrolled
    not_found = api_a.post("earn", earn_body({"card": "4111111111"}, receipt="2"), key="K-404")
    problem(not_found, 404, "member-not-found")
    MemberFactory.create(coalition=coalition, card="4111111111")
    # 422: above the ceiling, then the ceiling is raised
    too_big = api_a.post("earn", earn_body(member, amount="2000000.00", receipt="3"), key="K-422")
    validation_errors(too_big)
    Coalition.objects.filter(pk=coalition.pk).update(receipt_ceiling=Decimal("5000000.00"))
    for key, first, body in (
        ("K-403", forbidden, earn_body(member, receipt="1")),
        ("K-404", not_found, earn_body({"card": "4111111111"}, receipt="2")),
        ("K-422", too_big, earn_body(member, amount="2000000.00", receipt="3")),
    ):
        retry = api_a.post("earn", body, key=key)
        assert (retry.status_code, retry.content, retry[REPLAYED]) == (
            first.status_code,
            first.content,
            "true",
        )
    assert not Journal.objects.exists()
    # And each of them goes through with a new key
    for body in (
        earn_body(member, receipt="1"),
        earn_body({"card": "4111111111"}, receipt="2"),
        earn_body(member, amount="2000000.00", receipt="3"),
    ):
        ok(api_a.post("earn", body), 201)
    assert sorted(Journal.objects.values_list("receipt", flat=True)) == ["1", "2", "3"]


def test_a_malformed_body_leaves_the_key_free(api_a, member):
    problem(api_a.post("earn", raw="{not json", key="E-1"), 400, "malformed-request")
    retry = api_a.post("earn", earn_body(member), key="E-1")
    assert retry.status_code == 201 and REPLAYED not in retry


def test_a_401_leaves_the_key_free(api_a, member):
    response = as_client(api_a, "earn", earn_body(member), "Api-Key wrongpre.wrongsecret")
    problem(response, 401, "unauthenticated")
    retry = api_a.post("earn", earn_body(member), key="k-1")
    assert retry.status_code == 201 and REPLAYED not in retry


def test_keys_are_kept_at_least_7_days(api_a, member, settings):
    settings.IDEMPOTENCY_RETENTION_DAYS = 1
    first = api_a.post("earn", earn_body(member), key="E-1")
    assert idempotency_records_purge(now=timezone.now() + timedelta(days=6, hours=23)) == 0
    assert api_a.post("earn", earn_body(member), key="E-1").content == first.content
    assert idempotency_records_purge(now=timezone.now() + timedelta(days=7, hours=1)) == 1


# 429


def test_too_many_requests_for_a_key_are_rate_limited_and_not_stored(
    api_a, api_b, member, settings
):
    settings.TILL_RATE_LIMIT = 2
    caches["default"].clear()
    ok(api_a.get("members/lookup", **ref(member)), 200)
    ok(api_a.post("earn", earn_body(member, receipt="1")), 201)
    # When the till sends a third request within the minute
    limited = api_a.post("earn", earn_body(member, receipt="2"), key="E-2")
    # Then it is refused with a time to wait, and nothing is posted or stored
    problem(limited, 429, "rate-limited")
    assert 1 <= int(limited["Retry-After"]) <= 61
    problem(api_a.get("transactions"), 429, "rate-limited")
    assert Journal.objects.count() == 1
    assert not IdempotencyRecord.objects.filter(key="E-2").exists()
    # And another till is counted on its own
    ok(api_b.get("members/lookup", **ref(member)), 200)
    # And once the window has passed the same key goes through as a new request
    caches["default"].clear()
    retry = api_a.post("earn", earn_body(member, receipt="2"), key="E-2")
    assert retry.status_code == 201 and REPLAYED not in retry


# 409 request-in-progress and 503 try-again: a lock held from another connection


@contextmanager
def other_connection() -> Iterator[psycopg.Connection[Any]]:
    """A second session on the test database, outside Django's connection handling."""
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"]}
    if db["PASSWORD"]:
        params["password"] = db["PASSWORD"]
    with psycopg.connect(autocommit=True, **{k: v for k, v in params.items() if v}) as other:
        yield other


@pytest.mark.django_db(transaction=True)
def test_the_same_key_while_the_first_request_runs_is_in_progress(api_a, member):
    body = earn_body(member)
    with other_connection() as other:
        # Given the first request with key E-1 still running (it holds the key's claim)
        lock = claim_key(f"idempotency:{api_a.till.pk}:E-1")
        other.execute("SELECT pg_advisory_lock(%s)", [lock])
        # When the till retries
        response = api_a.post("earn", body, key="E-1")
        # Then it is told to retry later, and nothing was posted or stored
        problem(response, 409, "request-in-progress")
        assert not Journal.objects.exists()
        assert not IdempotencyRecord.objects.exists()
        other.execute("SELECT pg_advisory_unlock(%s)", [lock])
    # And once the first is done, the unchanged retry goes through
    retry = api_a.post("earn", body, key="E-1")
    assert retry.status_code == 201 and REPLAYED not in retry


@pytest.mark.django_db(transaction=True)
def test_a_lock_that_is_not_released_in_time_is_try_again(api_a, member, settings):
    settings.API_LOCK_TIMEOUT_MS = 200
    body = earn_body(member)
    with other_connection() as other, other.transaction():
        # Given another transaction holding the member's points account
        other.execute(
            "SELECT id FROM coalition_account WHERE member_id = %s FOR UPDATE", [str(member.pk)]
        )
        # When the till posts an earn for that member
        response = api_a.post("earn", body, key="E-1")
    # Then it gets a clean 503 with a time to wait, and nothing was applied or stored
    problem(response, 503, "try-again")
    assert int(response["Retry-After"]) >= 1
    assert not Journal.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    # And the unchanged retry goes through once the lock is gone
    retry = api_a.post("earn", body, key="E-1")
    assert retry.status_code == 201 and REPLAYED not in retry
