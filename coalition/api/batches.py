"""Batch files for tills that cannot post live: upload (202, processed by a worker) and results."""

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from coalition.api.base import IdempotentPostView, TillAPIView
from coalition.api.idempotency import (
    Outcome,
    fingerprint,
    idempotency_key,
    idempotent_respond,
)
from coalition.api.problems import problem_type
from coalition.api.schema import COMMON_PROBLEMS, GET_HEADERS, POST_HEADERS, POST_PROBLEMS, problems
from coalition.batchfile import MAX_BYTES
from coalition.errors import InvalidRequest
from coalition.models import Batch, BatchLine, BatchStatus, LineStatus
from coalition.selectors import batch_get_for_till_tenant
from coalition.services.batches import batch_create


class BatchAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=BatchStatus.choices)


class BatchLineSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="Line number in the file; the header is line 1.")
    kind = serializers.CharField()
    receipt = serializers.CharField()
    status = serializers.ChoiceField(choices=LineStatus.choices)
    transaction = serializers.UUIDField(allow_null=True, help_text="Accepted: the transaction.")
    type = serializers.CharField(
        allow_null=True, help_text="Rejected: the problem type, as a problem body's `type`."
    )
    detail = serializers.CharField(allow_null=True, help_text="Rejected: why.")


class BatchSerializer(BatchAcceptedSerializer):
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    lines_total = serializers.IntegerField()
    lines_accepted = serializers.IntegerField()
    lines_rejected = serializers.IntegerField()
    lines = BatchLineSerializer(many=True)


class BatchCreateView(IdempotentPostView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="batch_upload",
        summary="Upload a file of earn and burn lines",
        description=(
            "For tills that cannot post live. The CSV file is the body (`text/csv`) or the form "
            "field `file`: UTF-8 with a header row, at most 10 MB and 50,000 lines. Columns: "
            "`kind` (earn or burn), `receipt`, `occurred_at`, exactly one of `card`, `phone` and "
            "`email`, `amount` (earn), `points` and `bill_amount` (burn). A worker checks every "
            "line as a live request at processing time; a line sent again unchanged is accepted "
            "with its original transaction. Results: `GET /api/v1/batches/{batch_id}`."
        ),
        parameters=POST_HEADERS,
        request={
            "text/csv": OpenApiRequest({"type": "string", "format": "binary"}),
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            },
        },
        responses={202: BatchAcceptedSerializer, **problems(*POST_PROBLEMS)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        till = self.till(request)
        key = idempotency_key(request.headers)
        content = self._file(request)
        request_print = fingerprint("POST", request.path, content or b"")

        def handler() -> Outcome:
            if content is None:
                raise InvalidRequest(
                    "Send the CSV as the body (text/csv) or as the form field 'file'.",
                    field="file",
                )
            batch = batch_create(till=till, content=content)
            return Outcome(202, {"id": str(batch.public_id), "status": batch.status})

        return idempotent_respond(till=till, key=key, fingerprint=request_print, handler=handler)

    def _file(self, request: Request) -> bytes | None:
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            upload = request.FILES.get("file")
            if upload is None:
                return None
            # Past the limit only its first bytes are read: enough to refuse it (a 422, stored
            # under the key like any refusal) without holding a huge file in memory.
            return bytes(upload.read(MAX_BYTES + 1))
        body = self.request_body(request)
        return body or None


class BatchDetailView(TillAPIView):
    @extend_schema(
        operation_id="batch",
        summary="A batch's status and the result of every line",
        description=(
            "Each line is `accepted` with its transaction, or `rejected` with the problem type "
            "and detail a live request would have had; `queued` until the worker reaches it. "
            "A batch of any till of this tenant can be read."
        ),
        parameters=[
            *GET_HEADERS,
            OpenApiParameter("batch_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
        ],
        responses={200: BatchSerializer, **problems(*COMMON_PROBLEMS, "batch-not-found")},
    )
    def get(self, request: Request, batch_id: str) -> Response:
        batch = batch_get_for_till_tenant(self.till(request).tenant_id, batch_id)
        return Response(batch_data(batch))


def batch_data(batch: Batch) -> dict[str, Any]:
    rows = (
        BatchLine.objects.filter(batch=batch)
        .order_by("line")
        .values_list("line", "kind", "receipt", "status", "journal__public_id", "problem", "detail")
    )
    lines = [
        {
            "line": line,
            "kind": kind,
            "receipt": receipt,
            "status": status,
            "transaction": str(journal) if journal else None,
            "type": problem_type(problem) if status == LineStatus.REJECTED else None,
            "detail": detail if status == LineStatus.REJECTED else None,
        }
        for line, kind, receipt, status, journal, problem, detail in rows
    ]
    return {
        "id": str(batch.public_id),
        "status": batch.status,
        "created_at": batch.created_at,
        "started_at": batch.started_at,
        "finished_at": batch.finished_at,
        "lines_total": batch.lines_total,
        "lines_accepted": sum(1 for line in lines if line["status"] == LineStatus.ACCEPTED),
        "lines_rejected": sum(1 for line in lines if line["status"] == LineStatus.REJECTED),
        "lines": lines,
    }
