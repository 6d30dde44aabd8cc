"""Batch files over HTTP: upload (text/csv or multipart), file-level refusals, per-line results
after `batch_process` (called directly: no broker), and that a line sent again is idempotent on
its receipt."""

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from coalition.batchfile import MAX_BYTES, MAX_LINES
from coalition.models import Batch, BatchLine, IdempotencyRecord, Journal
from coalition.services.batches import batch_process
from members.models import Member
from tenants.models import TenantStatus
from tenants.services import tenant_set_status, till_create
from tests.test_till_api_contract import earn_now, ok, problem, ref, validation_errors
from tests.till_api import TillClient, till_client

HEADER = "kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount"
LINE_FIELDS = {"line", "kind", "receipt", "status", "transaction", "type", "detail"}


def earn_line(member: Member, receipt: str, amount: str, occurred_at: str = "") -> str:
    return f"earn,{receipt},{occurred_at},,,{ref(member)['email']},{amount},,"


def burn_line(member: Member, receipt: str, points: int, bill_amount: str = "600.00") -> str:
    return f"burn,{receipt},,{ref(member, 'card')['card']},,,,{points},{bill_amount}"


def csv_file(*lines: str, header: str = HEADER) -> bytes:
    return ("\r\n".join([header, *lines]) + "\r\n").encode()


def upload(api: TillClient, content: bytes, **kwargs: Any) -> Any:
    return api.post("batches", raw=content, content_type="text/csv", **kwargs)


def upload_multipart(api: TillClient, content: bytes, key: str = "M-1") -> Any:
    return api.client.post(
        "/api/v1/batches",
        {"file": SimpleUploadedFile("day.csv", content, content_type="text/csv")},
        headers={"Authorization": f"Api-Key {api.key}", "Idempotency-Key": key},
    )


def accepted_id(response: Any) -> str:
    body = ok(response, 202)
    assert set(body) == {"id", "status"}
    assert body["status"] == "queued"
    return str(body["id"])


def processed(api: TillClient, batch_id: str) -> dict[str, Any]:
    batch_process(batch_id=Batch.objects.get(public_id=batch_id).pk)
    result: dict[str, Any] = ok(api.get(f"batches/{batch_id}"), 200)
    assert result["status"] == "done"
    for line in result["lines"]:
        assert set(line) == LINE_FIELDS
    return result


def outcomes(result: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    """(line, status, problem name or None) for every line."""
    return [
        (line["line"], line["status"], line["type"].rsplit("/", 1)[-1] if line["type"] else None)
        for line in result["lines"]
    ]


# Upload and processing


def test_a_csv_body_is_queued_then_posted_line_by_line(api_a, till_a, member):
    content = csv_file(
        earn_line(member, "A-1", "4000.00", occurred_at="2026-01-15T18:30:00+05:30"),
        burn_line(member, "F-1", 10),
        earn_line(member, "A-2", "99.99"),
    )
    # When the till uploads its day's file
    batch_id = accepted_id(upload(api_a, content))
    # Then every line is recorded and queued before anything is posted
    queued = ok(api_a.get(f"batches/{batch_id}"), 200)
    assert (queued["status"], queued["lines_total"]) == ("queued", 3)
    assert [(line["line"], line["status"]) for line in queued["lines"]] == [
        (2, "queued"),
        (3, "queued"),
        (4, "queued"),
    ]
    assert not Journal.objects.exists()
    # When a worker processes it
    result = processed(api_a, batch_id)
    # Then each line is posted by the uploading till, as the live endpoint would
    assert outcomes(result) == [(2, "accepted", None), (3, "accepted", None), (4, "accepted", None)]
    assert (result["lines_accepted"], result["lines_rejected"]) == (3, 0)
    journals = {str(j.public_id): j for j in Journal.objects.all()}
    assert [line["transaction"] for line in result["lines"]] == [
        str(Journal.objects.get(receipt=receipt, kind=kind).public_id)
        for receipt, kind in (("A-1", "earn"), ("F-1", "burn"), ("A-2", "earn"))
    ]
    assert {(j.tenant_id, j.till_id) for j in journals.values()} == {(till_a.tenant_id, till_a.pk)}
    first = Journal.objects.get(receipt="A-1")
    assert (first.points, first.occurred_at.isoformat()) == (40, "2026-01-15T13:00:00+00:00")
    assert ok(api_a.get("members/lookup", **ref(member)), 200)["balance"] == 30


def test_a_multipart_file_is_taken_the_same_way(api_a, member):
    batch_id = accepted_id(upload_multipart(api_a, csv_file(earn_line(member, "A-1", "4000.00"))))
    assert outcomes(processed(api_a, batch_id)) == [(2, "accepted", None)]
    assert Journal.objects.get().points == 40


def test_a_line_of_the_wrong_shape_is_recorded_as_rejected(api_a, member):
    email = ref(member)["email"]
    card = ref(member, "card")["card"]
    content = csv_file(
        earn_line(member, "A-1", "4e3"),  # an exponent
        f"earn,A-2,,{card},,{email},100.00,,",  # two identifiers
        f"refund,A-3,,,,{email},100.00,,",  # no such kind
        f"burn,F-1,,{card},,,,,600.00",  # a burn without points
        f"earn,A-4,2026-01-15T18:30:00,,,{email},100.00,,",  # a time without offset
        f"earn,A-5,,,,{email},100.00",  # too few fields
        earn_line(member, "A-6", "4000.00"),
    )
    batch_id = accepted_id(upload(api_a, content))
    # Then the wrong lines are rejected at once, before any processing, each saying why
    queued = ok(api_a.get(f"batches/{batch_id}"), 200)
    assert [line["status"] for line in queued["lines"]] == ["rejected"] * 6 + ["queued"]
    details = [line["detail"] for line in queued["lines"][:6]]
    for detail, field in zip(
        details, ["amount", "member", "kind", "points", "occurred_at", "line"], strict=True
    ):
        assert detail.startswith(f"{field}:") or f"; {field}:" in detail, detail
    # And the good line is still posted
    result = processed(api_a, batch_id)
    assert outcomes(result) == [
        *[(n, "rejected", "validation-error") for n in range(2, 8)],
        (8, "accepted", None),
    ]
    assert (result["lines_accepted"], result["lines_rejected"]) == (1, 6)
    assert Journal.objects.get().receipt == "A-6"


def test_lines_are_checked_when_processed_not_when_uploaded(api_a, till_a, member, coalition):
    # Given a file that earns 40, then tries to burn 50, then burns 40
    content = csv_file(
        earn_line(member, "A-1", "4000.00"),
        burn_line(member, "F-1", 50),
        burn_line(member, "F-2", 40),
        "earn,A-2,,7000000000000000,,,100.00,,",
    )
    batch_id = accepted_id(upload(api_a, content))
    result = processed(api_a, batch_id)
    # Then the offline burn beyond the balance is refused, as a live burn would be
    assert outcomes(result) == [
        (2, "accepted", None),
        (3, "rejected", "insufficient-points"),
        (4, "accepted", None),
        (5, "rejected", "member-not-found"),
    ]
    assert "40" in result["lines"][1]["detail"]
    assert ok(api_a.get("members/lookup", **ref(member)), 200)["balance"] == 0


def test_a_tenant_suspended_after_upload_gets_its_lines_refused(api_a, till_a, member):
    earn_now(till_a, member, "4000.00", "A-0")
    batch_id = accepted_id(upload(api_a, csv_file(burn_line(member, "F-1", 10))))
    tenant_set_status(tenant=till_a.tenant, status=TenantStatus.SUSPENDED, actor=None)
    assert outcomes(processed(api_a, batch_id)) == [(2, "rejected", "tenant-cannot-redeem")]


# A line sent again


def test_the_same_file_sent_again_is_accepted_with_the_original_transactions(api_a, member):
    content = csv_file(
        earn_line(member, "A-1", "4000.00"),
        burn_line(member, "F-1", 30),
        earn_line(member, "A-2", "1500.00"),
    )
    first = processed(api_a, accepted_id(upload(api_a, content)))
    journals = Journal.objects.count()
    # When the till sends the same file again, as a new request
    second_id = accepted_id(upload(api_a, content))
    second = processed(api_a, second_id)
    # Then it is another batch, but every line comes back accepted as the original transaction
    assert second_id != first["id"]
    assert outcomes(second) == [(2, "accepted", None), (3, "accepted", None), (4, "accepted", None)]
    assert [line["transaction"] for line in second["lines"]] == [
        line["transaction"] for line in first["lines"]
    ]
    assert Journal.objects.count() == journals
    assert ok(api_a.get("members/lookup", **ref(member)), 200)["balance"] == 25


def test_a_receipt_sent_again_with_other_content_is_a_duplicate(api_a, till_a, member):
    live = earn_now(till_a, member, "4000.00", "A-1")
    content = csv_file(
        earn_line(member, "A-1", "4000.00"),  # the live earn, sent again unchanged
        earn_line(member, "A-1", "5000.00"),  # the same receipt, another amount
        burn_line(member, "A-1", 10),  # a burn may share an earn's receipt
    )
    result = processed(api_a, accepted_id(upload(api_a, content)))
    assert outcomes(result) == [
        (2, "accepted", None),
        (3, "rejected", "duplicate-receipt"),
        (4, "accepted", None),
    ]
    assert result["lines"][0]["transaction"] == str(live.public_id)
    assert Journal.objects.filter(receipt="A-1").count() == 2


def test_an_upload_retried_with_its_key_is_the_same_batch(api_a, member):
    content = csv_file(earn_line(member, "A-1", "4000.00"))
    first = upload(api_a, content, key="DAY-1")
    retry = upload(api_a, content, key="DAY-1")
    assert (retry.status_code, retry.content, retry["Idempotent-Replayed"]) == (
        202,
        first.content,
        "true",
    )
    assert str(Batch.objects.get().public_id) == accepted_id(first)
    # The same key with another file is another request
    problem(
        upload(api_a, csv_file(earn_line(member, "A-2", "1.00")), key="DAY-1"),
        422,
        "idempotency-key-reused",
    )
    assert Batch.objects.count() == 1


def test_processing_a_batch_twice_posts_nothing_twice(api_a, member):
    batch_id = accepted_id(upload(api_a, csv_file(earn_line(member, "A-1", "4000.00"))))
    first = processed(api_a, batch_id)
    assert processed(api_a, batch_id) == first
    assert Journal.objects.count() == 1


# Files that cannot be taken as a whole: 422 on `file`, and nothing recorded


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(HEADER.encode() + b"\r\n", id="header only"),
        pytest.param(
            HEADER.encode() + b"\nearn,A-1,,,,caf\xe9@example.com,100.00,,\n", id="Latin-1"
        ),
        pytest.param(
            csv_file("earn,A-1,,,,a@example.com,100.00,,", header="receipt,email,amount"),
            id="header without kind",
        ),
        pytest.param(
            csv_file("earn,A-1,100.00", header="kind,receipt,amount"), id="no identifier column"
        ),
        pytest.param(
            csv_file("earn,A-1,,,,a@b.c,100.00,,,apparel", header=HEADER + ",tenant"),
            id="a tenant column",
        ),
        pytest.param(
            csv_file("earn,A-1,,,,a@b.c,100.00,,,b1", header=HEADER + ",till"), id="a till column"
        ),
        pytest.param(
            csv_file("earn,A-1,,,,a@b.c,100.00,,,1", header=HEADER + ",amount"),
            id="a repeated column",
        ),
        pytest.param(csv_file('earn,"A-1,,,,a@b.c,100.00,,'), id="an unterminated quote"),
        pytest.param(csv_file("earn,A-1,,,,a@b.c,100.00,,").replace(b"A-1", b"A\x00"), id="NUL"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole(api_a, content):
    assert set(validation_errors(upload(api_a, content))) == {"file"}
    assert not Batch.objects.exists()


def test_a_file_over_10_mb_is_refused_however_it_is_sent(api_a, member):
    line = earn_line(member, "A-1", "100.00").encode() + b"\r\n"
    content = HEADER.encode() + b"\r\n" + line * (MAX_BYTES // len(line) + 1)
    assert MAX_BYTES < len(content) < MAX_BYTES + 1024
    assert set(validation_errors(upload(api_a, content))) == {"file"}
    assert set(validation_errors(upload_multipart(api_a, content))) == {"file"}
    assert not Batch.objects.exists()


def test_a_file_over_50000_lines_is_refused(api_a, member):
    email = ref(member)["email"]
    lines = [f"earn,A-{n},,,,{email},1.00,," for n in range(MAX_LINES + 1)]
    assert set(validation_errors(upload(api_a, csv_file(*lines)))) == {"file"}
    assert not BatchLine.objects.exists()


def test_a_multipart_form_without_a_file_is_refused(api_a):
    response = api_a.client.post(
        "/api/v1/batches", {"other": "x"}, HTTP_IDEMPOTENCY_KEY="M-1", **api_a.auth
    )
    assert set(validation_errors(response)) == {"file"}
    # A refusal after the key was claimed is stored like any other
    assert IdempotencyRecord.objects.get().status == 422


def test_a_line_with_an_out_of_range_time_is_rejected_not_a_stuck_batch(api_a, member):
    content = csv_file(
        earn_line(member, "A-1", "100.00", occurred_at="0001-01-01T00:00:00+05:30"),
        earn_line(member, "A-2", "100.00"),
    )
    result = processed(api_a, accepted_id(upload(api_a, content)))
    assert outcomes(result) == [(2, "rejected", "validation-error"), (3, "accepted", None)]


# Cross-tenant


def test_a_batch_is_seen_only_by_the_tenant_that_sent_it(api_a, api_b, till_a, member):
    batch_id = accepted_id(upload(api_a, csv_file(earn_line(member, "A-1", "4000.00"))))
    problem(api_b.get(f"batches/{batch_id}"), 404, "batch-not-found")
    problem(api_a.get("batches/7b0c6f3e-0d6e-4c41-9a55-4e7d9a7d3c11"), 404, "batch-not-found")
    problem(api_a.get("batches/not-a-uuid"), 404, "batch-not-found")
    # Any till of the sending tenant may read it
    other = till_client(till_create(tenant=till_a.tenant, store_code="main", till_code="a2"))
    assert ok(other.get(f"batches/{batch_id}"), 200)["id"] == batch_id
