"""The served OpenAPI document describes the till contract (`till-api.md`), and the API answers as
that document says.

1. Fidelity: every operation of the contract (and no other) is in the document served at
   `/api/v1/schema`, with its Idempotency-Key, statuses, problem responses in
   `application/problem+json`, request and response field names, money typed as a string and
   the `Authorization` key scheme; the document is valid OpenAPI 3, generated without warnings.
2. Conformance: schemathesis generates requests from the served document (valid ones, invalid
   ones, and valid ones steered onto a real member, transaction and batch so that the success
   paths are exercised too), sends them through the WSGI app with a till's key and a fresh
   Idempotency-Key, and checks every answer: no 5xx, a documented status, content type and
   headers, a body matching the documented schema, and a problem named for that status.
"""

import io
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.management import call_command
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coalition.services import points_burn, points_earn, points_release
from coalition.services.batches import batch_create
from members.models import Member
from members.selectors import member_card
from tenants.models import Till
from tests.till_api import TillClient

PREFIX = "/api/v1"
JSON = "application/json"
PROBLEM = "application/problem+json"

# --- The contract, as data (from till-api.md, not from the code) ----------------------------

# The problems the contract names, with their statuses.
STATUS = {
    "malformed-request": 400,
    "idempotency-key-missing": 400,
    "unauthenticated": 401,
    "tenant-cannot-redeem": 403,
    "member-not-found": 404,
    "transaction-not-found": 404,
    "request-in-progress": 409,
    "duplicate-receipt": 409,
    "insufficient-points": 409,
    "already-reversed": 409,
    "member-exists": 409,
    "validation-error": 422,
    "idempotency-key-reused": 422,
    "not-reversible": 422,
    "rate-limited": 429,
    "try-again": 503,
}
EVERY_REQUEST = ("unauthenticated", "rate-limited", "try-again")
EVERY_POST = (
    *EVERY_REQUEST,
    "idempotency-key-missing",
    "idempotency-key-reused",
    "request-in-progress",
    "validation-error",
)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    success: int
    response: str  # what the success body is
    problems: tuple[str, ...]  # problem names the contract gives it
    statuses: tuple[int, ...] = ()  # further statuses it implies without naming a problem
    request: frozenset[str] = frozenset()  # JSON body fields
    money: tuple[str, ...] = ()  # request fields that are money
    query: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"


CONTRACT = [
    Endpoint(
        "post",
        "/members",
        201,
        "enrolled",
        (*EVERY_POST, "malformed-request", "member-exists"),
        request=frozenset({"phone", "email", "card", "name", "adult", "consents"}),
    ),
    Endpoint(
        "get",
        "/members/lookup",
        200,
        "lookup",
        (*EVERY_REQUEST, "member-not-found", "validation-error"),
        query=frozenset({"card", "phone", "email", "id"}),
    ),
    Endpoint(
        "post",
        "/earn",
        201,
        "posting",
        (*EVERY_POST, "malformed-request", "member-not-found", "duplicate-receipt"),
        statuses=(403,),  # "403 tenant" in the order of checks
        request=frozenset({"member", "amount", "currency", "receipt", "occurred_at"}),
        money=("amount",),
    ),
    Endpoint(
        "post",
        "/burn",
        201,
        "posting",
        (
            *EVERY_POST,
            "malformed-request",
            "tenant-cannot-redeem",
            "member-not-found",
            "duplicate-receipt",
            "insufficient-points",
        ),
        # occurred_at is not in the contract's burn body, but it is an addition the API takes.
        request=frozenset({"member", "points", "bill_amount", "receipt", "occurred_at"}),
        money=("bill_amount",),
    ),
    Endpoint(
        "post",
        "/transactions/{transaction_id}/reverse",
        201,
        "posting",
        (
            *EVERY_POST,
            "malformed-request",
            "transaction-not-found",
            "already-reversed",
            "not-reversible",
        ),
        request=frozenset({"reason", "amount", "points"}),
        money=("amount",),
    ),
    Endpoint(
        "get",
        "/transactions/{transaction_id}",
        200,
        "transaction",
        (*EVERY_REQUEST, "transaction-not-found"),
    ),
    Endpoint(
        "get",
        "/transactions",
        200,
        "page",
        (*EVERY_REQUEST, "validation-error"),
        query=frozenset({"since", "till", "kind"}),
    ),
    Endpoint("post", "/batches", 202, "batch_accepted", EVERY_POST),
    Endpoint("get", "/batches/{batch_id}", 200, "batch", EVERY_REQUEST, statuses=(404,)),
]
BY_LABEL = {endpoint.label: endpoint for endpoint in CONTRACT}

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
KINDS = ["earn", "burn", "earn_reversal", "burn_reversal"]
MEMBER_REF = {"card", "phone", "email", "id"}


# --- The document ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document as `/api/v1/schema` serves it, to anyone."""
    response = Client().get(f"{PREFIX}/schema", {"format": "json"})
    assert response.status_code == 200, response.content
    return dict(response.json())


class Resolve:
    """Follow `$ref`s (and a lone `allOf` wrapper) in `document`."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def __call__(self, schema: dict[str, Any]) -> dict[str, Any]:
        while True:
            if "$ref" in schema:
                name = schema["$ref"].removeprefix("#/components/schemas/")
                schema = self.document["components"]["schemas"][name]
            elif len(schema.get("allOf", [])) == 1:
                schema = {**schema, **schema["allOf"][0]}
                del schema["allOf"]
            else:
                return schema

    def properties(self, schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {name: self(prop) for name, prop in self(schema).get("properties", {}).items()}


def operation_of(document: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    operations = document["paths"].get(PREFIX + endpoint.path, {})
    assert endpoint.method in operations, f"{endpoint.label} is not documented"
    return dict(operations[endpoint.method])


def success_schema(document: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    response = operation_of(document, endpoint)["responses"][str(endpoint.success)]
    assert list(response["content"]) == [JSON], endpoint.label
    return dict(response["content"][JSON]["schema"])


def documented_problems(document: dict[str, Any], endpoint: Endpoint, status: int) -> set[str]:
    """The problem names an operation documents for `status` (one example body each)."""
    response = operation_of(document, endpoint)["responses"].get(str(status), {})
    examples = response.get("content", {}).get(PROBLEM, {}).get("examples", {})
    names = set()
    for example in examples.values():
        name = example["value"]["type"].rsplit("/", 1)[-1]
        assert example["value"]["status"] == status, endpoint.label
        names.add(name)
    return names


def test_every_operation_of_the_contract_and_no_other_is_documented(document):
    assert document["openapi"].startswith("3.")
    documented = {
        (method, path.removeprefix(PREFIX))
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    }
    assert documented == {(endpoint.method, endpoint.path) for endpoint in CONTRACT}


def test_the_schema_and_the_docs_are_public(client):
    assert client.get(f"{PREFIX}/schema").status_code == 200
    docs = client.get(f"{PREFIX}/docs")
    assert docs.status_code == 200
    assert b"redoc" in docs.content.lower()


def test_the_security_scheme_is_an_api_key_in_the_authorization_header(document):
    schemes = document["components"]["securitySchemes"]
    assert list(schemes) == ["TillKey"]
    assert {key: schemes["TillKey"][key] for key in ("type", "in", "name")} == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
    }
    assert "Api-Key <key>" in schemes["TillKey"]["description"]


@pytest.mark.parametrize("endpoint", CONTRACT, ids=lambda e: e.label)
def test_security_statuses_and_problem_responses(document, endpoint):
    operation = operation_of(document, endpoint)
    assert operation["security"] == [{"TillKey": []}]
    responses = operation["responses"]
    assert [code for code in responses if code.startswith("2")] == [str(endpoint.success)]
    for name in endpoint.problems:
        assert name in documented_problems(document, endpoint, STATUS[name]), name
    for status in endpoint.statuses:
        assert str(status) in responses
    resolve = Resolve(document)
    for code, response in responses.items():
        if code.startswith(("4", "5")):
            assert list(response["content"]) == [PROBLEM], f"{endpoint.label} {code}"
            problem = resolve(response["content"][PROBLEM]["schema"])
            assert {"type", "title", "status", "detail"} <= set(problem["required"])
            assert documented_problems(document, endpoint, int(code)), f"{code} names none"
    if "validation-error" in endpoint.problems:
        problem = resolve(responses["422"]["content"][PROBLEM]["schema"])
        assert "errors" in problem["properties"]


@pytest.mark.parametrize("endpoint", CONTRACT, ids=lambda e: e.label)
def test_every_post_requires_an_idempotency_key(document, endpoint):
    operation = operation_of(document, endpoint)
    headers = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}
    if endpoint.method != "post":
        assert "Idempotency-Key" not in headers
        return
    key = headers["Idempotency-Key"]
    assert key["required"] is True
    assert key["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[ -~]+$",
    }
    assert operation["requestBody"]["required"] is True


@pytest.mark.parametrize("endpoint", [e for e in CONTRACT if e.request], ids=lambda e: e.label)
def test_request_fields(document, endpoint):
    content = operation_of(document, endpoint)["requestBody"]["content"]
    assert list(content) == [JSON]
    resolve = Resolve(document)
    body = resolve(content[JSON]["schema"])
    properties = resolve.properties(body)
    assert set(properties) == endpoint.request
    for name in endpoint.money:
        assert properties[name]["type"] == "string", f"{name} is money: a decimal string"
        assert properties[name]["pattern"] == r"^-?\d{1,12}(\.\d{1,2})?$"
    if "points" in properties:
        assert properties["points"]["type"] == "integer"
    if "occurred_at" in properties:
        assert properties["occurred_at"] == {"type": "string", "format": "date-time"}
    if "member" in properties:
        member = properties["member"]
        assert set(resolve.properties(member)) == MEMBER_REF
        assert member["oneOf"] == [
            {"required": [kind]} for kind in ("card", "phone", "email", "id")
        ]


def test_enrolment_needs_an_identifier_an_adult_and_programme_consent(document):
    resolve = Resolve(document)
    content = operation_of(document, BY_LABEL["POST /members"])["requestBody"]["content"]
    body = resolve(content[JSON]["schema"])
    assert body["anyOf"] == [{"required": [kind]} for kind in ("phone", "email", "card")]
    assert set(body["required"]) == {"adult", "consents"}
    properties = resolve.properties(body)
    assert properties["adult"]["enum"] == [True]
    assert properties["consents"]["required"] == ["programme"]
    assert properties["consents"]["properties"]["programme"]["enum"] == [True]


def test_lookup_and_transactions_query_parameters(document):
    for label in ("GET /members/lookup", "GET /transactions"):
        endpoint = BY_LABEL[label]
        parameters = operation_of(document, endpoint)["parameters"]
        query = {p["name"]: p for p in parameters if p["in"] == "query"}
        assert endpoint.query <= set(query), label
        assert not any(p.get("required") for p in query.values()), label
    query = {
        p["name"]: p
        for p in operation_of(document, BY_LABEL["GET /transactions"])["parameters"]
        if p["in"] == "query"
    }
    assert query["since"]["schema"] == {"type": "string", "format": "date-time"}
    assert sorted(query["kind"]["schema"]["enum"]) == sorted(KINDS)
    assert "cursor" in query


def test_batch_upload_takes_the_csv_as_the_body_or_a_multipart_file(document):
    body = operation_of(document, BY_LABEL["POST /batches"])["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"text/csv", "multipart/form-data"}
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}


def test_response_fields(document):
    resolve = Resolve(document)
    by_response = {endpoint.response: endpoint for endpoint in CONTRACT}

    transaction = resolve.properties(success_schema(document, by_response["transaction"]))
    assert set(transaction) >= TRANSACTION_FIELDS
    assert set(resolve(success_schema(document, by_response["transaction"]))["required"]) >= (
        TRANSACTION_FIELDS
    )
    assert transaction["kind"]["enum"] == KINDS
    for name in ("amount", "value", "bill_amount"):
        assert transaction[name]["type"] == "string", f"transaction.{name} is money"
    assert transaction["points"]["type"] == "integer"
    assert transaction["reverses"]["nullable"] is True

    for endpoint in CONTRACT:
        if endpoint.response == "posting":
            posting = resolve.properties(success_schema(document, endpoint))
            assert set(posting) == {"transaction", "balance", "pending"}
            assert resolve.properties(posting["transaction"]) == transaction
            assert posting["balance"]["type"] == posting["pending"]["type"] == "integer"

    enrolled = resolve.properties(success_schema(document, by_response["enrolled"]))
    assert set(enrolled) == {"id", "card", "balance", "pending"}
    lookup = resolve.properties(success_schema(document, by_response["lookup"]))
    assert set(lookup) == {"id", "card", "balance", "pending", "expiring"}, "no personal data"
    assert set(resolve.properties(lookup["expiring"]["items"])) == {"points", "expires_on"}

    page = resolve.properties(success_schema(document, by_response["page"]))
    assert set(page) == {"next", "previous", "results"}
    assert resolve.properties(page["results"]["items"]) == transaction

    accepted = resolve.properties(success_schema(document, by_response["batch_accepted"]))
    assert set(accepted) == {"id", "status"}
    assert accepted["status"]["enum"] == ["queued", "processing", "done"]
    batch = resolve.properties(success_schema(document, by_response["batch"]))
    assert {"id", "status", "lines"} <= set(batch)
    assert batch["status"]["enum"] == ["queued", "processing", "done"]
    line = resolve.properties(batch["lines"]["items"])
    assert {"status", "transaction", "type", "detail"} <= set(line)
    assert line["status"]["enum"] == ["queued", "accepted", "rejected"]


def test_the_document_validates_and_generates_without_warnings(tmp_path):
    """`manage.py spectacular --validate --fail-on-warn` (OpenAPI 3 meta-schema validation)."""
    out = io.StringIO()
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
        stdout=out,
        stderr=out,
    )
    SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS, out.getvalue()


def test_schemathesis_finds_the_served_document_valid(served_schema):
    served_schema.validate()  # the OpenAPI 3.0 meta-schema, as schemathesis checks it


# --- Conformance: schemathesis against the running app ----------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
REPLAYABLE = {200, 201, 202, 403, 404, 409, 422}  # till-api.md: stored under the key
VALID_KEY = re.compile(r"^[ -~]{1,255}$")
# Per operation, bounded so that the file runs in well under 90 s; raise it for a deeper hunt.
MAX_EXAMPLES = int(os.environ.get("TILL_API_FUZZ_EXAMPLES", "40"))


@pytest.fixture
def in_test_transaction(db: Any) -> Iterator[None]:
    """Let plain WSGI requests run inside the test's transaction, as Django's test client does:
    a WSGI request otherwise closes the connection (and the test transaction) when it starts."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def served_schema(in_test_transaction: None) -> Any:
    """The document `/api/v1/schema` serves, loaded by schemathesis through the WSGI app."""
    from coalition.wsgi import application

    return schemathesis.openapi.from_wsgi(f"{PREFIX}/schema?format=json", application)


@dataclass
class World:
    """What steered requests point at: a member with a card and spendable points, one earn and
    one burn of this tenant, and a batch."""

    key: str
    card: str
    currency: str
    earn_id: str
    burn_id: str
    batch_id: str


@pytest.fixture
def world(api_a: TillClient, member: Member) -> World:
    till: Till = api_a.till
    card = member_card(member)
    assert card is not None
    earned = points_earn(till=till, member=member, amount=Decimal("5000.00"), receipt="W-1")
    points_release(as_of=timezone.now() + timedelta(days=3650))
    burned = points_burn(
        till=till, member=member, points=5, bill_amount=Decimal("100.00"), receipt="W-2"
    )
    batch = batch_create(till=till, content=_csv(card, "W-3"))
    return World(
        key=api_a.key,
        card=card,
        currency=till.tenant.coalition.currency,
        earn_id=str(earned.journal.public_id),
        burn_id=str(burned.journal.public_id),
        batch_id=str(batch.public_id),
    )


def _csv(card: str, receipt: str) -> bytes:
    return (
        "kind,receipt,occurred_at,card,amount\n"
        f"earn,{receipt},2026-01-01T10:00:00+05:30,{card},250.00\n"
    ).encode()


# Steering: a generated valid case rewritten so that it reaches the success path (or a business
# refusal) instead of stopping at validation. Values are drawn, so Hypothesis still drives them.
Draw = Callable[[st.SearchStrategy[Any]], Any]


def _money(draw: Draw, low: int, high: int) -> str:
    cents = draw(st.integers(min_value=low * 100, max_value=high * 100))
    return f"{Decimal(cents) / 100:.2f}"


def _receipt(draw: Draw) -> str:
    return f"R-{draw(st.integers(min_value=1, max_value=10**6))}"


def _steer_enrol(case: Any, world: World, draw: Draw) -> None:
    number = draw(st.integers(min_value=0, max_value=99_999_999))
    identifier = draw(
        st.sampled_from(
            [{"phone": f"+9198{number:08d}"}, {"email": f"shopper-{number}@example.com"}]
        )
    )
    consents = {"programme": True, "marketing_mall": draw(st.booleans())}
    case.body = {**identifier, "adult": True, "consents": consents}


def _steer_lookup(case: Any, world: World, draw: Draw) -> None:
    case.query = {"card": world.card}


def _steer_earn(case: Any, world: World, draw: Draw) -> None:
    case.body = {
        "member": {"card": world.card},
        "amount": _money(draw, 1, 20_000),
        "currency": world.currency,
        "receipt": _receipt(draw),
    }


def _steer_burn(case: Any, world: World, draw: Draw) -> None:
    case.body = {
        "member": {"card": world.card},
        "points": draw(st.integers(min_value=1, max_value=20)),
        "bill_amount": _money(draw, 100, 1_000),  # above any 20 points' value
        "receipt": _receipt(draw),
    }


def _steer_reverse(case: Any, world: World, draw: Draw) -> None:
    earn = draw(st.booleans())
    case.path_parameters = {"transaction_id": world.earn_id if earn else world.burn_id}
    body: dict[str, Any] = {"reason": "Returned"}
    if draw(st.booleans()):
        if earn:
            body["amount"] = _money(draw, 1, 1_000)
        else:
            body["points"] = draw(st.integers(min_value=1, max_value=3))
    case.body = body


def _steer_transaction(case: Any, world: World, draw: Draw) -> None:
    case.path_parameters = {"transaction_id": draw(st.sampled_from([world.earn_id, world.burn_id]))}


def _steer_transactions(case: Any, world: World, draw: Draw) -> None:
    case.query = {
        "since": "2000-01-01T00:00:00+05:30",
        "kind": draw(st.sampled_from(KINDS)),
        "page_size": draw(st.integers(min_value=1, max_value=2)),
    }


def _steer_batch_upload(case: Any, world: World, draw: Draw) -> None:
    csv = _csv(world.card, f"B-{draw(st.integers(min_value=1, max_value=5))}")
    case.body = {"file": csv} if case.media_type == "multipart/form-data" else csv


def _steer_batch(case: Any, world: World, draw: Draw) -> None:
    case.path_parameters = {"batch_id": world.batch_id}


STEER: dict[str, Callable[[Any, World, Draw], None]] = {
    "POST /members": _steer_enrol,
    "GET /members/lookup": _steer_lookup,
    "POST /earn": _steer_earn,
    "POST /burn": _steer_burn,
    "POST /transactions/{transaction_id}/reverse": _steer_reverse,
    "GET /transactions/{transaction_id}": _steer_transaction,
    "GET /transactions": _steer_transactions,
    "POST /batches": _steer_batch_upload,
    "GET /batches/{batch_id}": _steer_batch,
}


@pytest.mark.parametrize("endpoint", CONTRACT, ids=lambda e: e.label)
def test_the_api_answers_as_documented(
    served_schema: Any, document: dict[str, Any], world: World, endpoint: Endpoint
) -> None:
    operation = served_schema[PREFIX + endpoint.path][endpoint.method.upper()]
    strategies = {
        "positive": operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        "negative": operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    }
    statuses: dict[int, int] = {}

    @given(data=st.data())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(data: Any) -> None:
        mode = data.draw(st.sampled_from(["steered", "positive", "negative"]), label="mode")
        case = data.draw(strategies["negative" if mode == "negative" else "positive"])
        if mode == "steered":
            STEER[endpoint.label](case, world, data.draw)
        # The till's key, and a fresh Idempotency-Key: a generated one could repeat, and a
        # replay (legitimate, but of another body) would then answer 422 for a valid request.
        # A negative case keeps an invalid generated key (and drops headers it mutated away).
        headers = {"Authorization": f"Api-Key {world.key}"}
        generated_key = case.headers.get("Idempotency-Key") if case.headers else None
        if endpoint.method == "post" and not (
            mode == "negative" and generated_key is not None and not VALID_KEY.match(generated_key)
        ):
            headers["Idempotency-Key"] = uuid.uuid4().hex
        response = case.call(headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        validate(case, response, headers)
        if response.status_code in REPLAYABLE and endpoint.method == "post":
            # The same request again is the stored answer, byte for byte, and also as documented.
            replay = case.call(headers=headers)
            assert replay.status_code == response.status_code
            assert replay.content == response.content
            assert replay.headers.get("idempotent-replayed") == ["true"]
            validate(case, replay, headers)

    def validate(case: Any, response: Any, headers: dict[str, str]) -> None:
        case.validate_response(response, checks=CHECKS, headers=headers)
        if response.status_code >= 400:
            body = response.json()
            name = body["type"].rsplit("/", 1)[-1]
            assert body["status"] == response.status_code, body
            documented = documented_problems(document, endpoint, response.status_code)
            assert name in documented, f"{endpoint.label}: undocumented problem {body}"

    check()
    assert endpoint.success in statuses, f"{endpoint.label} never succeeded: {statuses}"


# --- What the fuzzing found, pinned down --------------------------------------------------------


@pytest.mark.parametrize("when", ["2026-01-01T10:00:00+18:01", "2026-01-01t04:29:00.1234567z"])
def test_an_rfc_3339_time_postgresql_would_refuse_as_given_is_taken_in_utc(
    api_a: TillClient, member: Member, when: str
) -> None:
    """Schemathesis sent `since=...+18:01`: RFC 3339 allows offsets up to 23:59, PostgreSQL
    up to 15:59, and the DataError was a 500. Times are now taken in UTC (and lowercase `t`/`z`
    and more than six fraction digits, which RFC 3339 also allows, are accepted)."""
    card = member_card(member)
    body = {
        "member": {"card": card},
        "amount": "100.00",
        "currency": "INR",
        "receipt": "T-1",
        "occurred_at": when,
    }
    earned = api_a.post("earn", body)
    assert earned.status_code == 201, earned.content
    occurred_at = datetime.fromisoformat(earned.json()["transaction"]["occurred_at"])
    assert occurred_at == datetime.fromisoformat(when.upper())  # the same instant
    listed = api_a.get("transactions", since=when)
    assert listed.status_code == 200, listed.content


# --- Found by probing what the fuzzing above cannot reach -------------------------------------


def test_a_batch_line_with_an_offset_beyond_postgresql_is_not_a_server_error(
    api_a: TillClient, member: Member
) -> None:
    api = TillClient(till=api_a.till, key=api_a.key, client=Client(raise_request_exception=False))
    card = member_card(member)
    csv = f"kind,receipt,occurred_at,card,amount\nearn,O-1,2026-01-01T10:00:00+18:01,{card},100\n"
    response = api.post("batches", raw=csv, content_type="text/csv")
    assert response.status_code < 500, response.content
