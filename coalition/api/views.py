"""Earn, burn, reverse and read transactions: the till API's ledger endpoints.

Each view only validates the body and calls a service; the till's tenant always comes from its
key. Reads go through the `*_for_tenant` selectors, so another tenant's transaction is a 404.
"""

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from coalition.api.base import IdempotentPostView, TillAPIView
from coalition.api.fields import OffsetDateTimeField
from coalition.api.idempotency import Outcome
from coalition.api.schema import COMMON_PROBLEMS, GET_HEADERS, POST_HEADERS, POST_PROBLEMS, problems
from coalition.api.serializers import (
    BurnRequestSerializer,
    EarnRequestSerializer,
    PostingSerializer,
    ReverseRequestSerializer,
    TransactionSerializer,
    posting_data,
)
from coalition.selectors import TILL_KINDS, transaction_get_for_tenant, transactions_for_tenant
from coalition.services import points_burn, points_earn, points_reverse
from coalition.services.ledger import Posting
from members.selectors import MemberRef
from tenants.models import Till


def _outcome(posting: Posting) -> Outcome:
    journal = posting.journal
    return Outcome(
        201, posting_data(journal, posting.balance, posting.pending), member_id=journal.member_id
    )


class EarnView(IdempotentPostView):
    request_serializer = EarnRequestSerializer

    @extend_schema(
        operation_id="earn",
        summary="Credit points for a purchase",
        description=(
            "Points follow the programme's earn rule (default: 1 point per whole 100.00 spent, "
            "rounded down) plus any active campaign; a purchase worth 0 points is still recorded. "
            "The till's tenant is the earning tenant. A receipt already posted as an earn by this "
            "store is 409 `duplicate-receipt`; a wrong currency, an amount of 0 or less or above "
            "the per-receipt ceiling, or an `occurred_at` more than 5 minutes ahead is 422."
        ),
        parameters=POST_HEADERS,
        request=EarnRequestSerializer,
        responses={
            201: PostingSerializer,
            **problems(
                *POST_PROBLEMS, "tenant-cannot-issue", "member-not-found", "duplicate-receipt"
            ),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().post(request, *args, **kwargs)

    def perform(self, till: Till, data: dict[str, Any], **kwargs: Any) -> Outcome:
        return _outcome(
            points_earn(
                till=till,
                member=MemberRef(**data["member"]),
                amount=data["amount"],
                currency=data["currency"],
                receipt=data["receipt"],
                occurred_at=data.get("occurred_at"),
            )
        )


class BurnView(IdempotentPostView):
    request_serializer = BurnRequestSerializer

    @extend_schema(
        operation_id="burn",
        summary="Redeem points against a bill",
        description=(
            "The transaction's `value` is the discount given. Not enough spendable points is 409 "
            "`insufficient-points` with `available`; a value above the bill or points of 0 or "
            "less is 422; a tenant that may not redeem (suspended, or in arrears) is 403 "
            "`tenant-cannot-redeem`."
        ),
        parameters=POST_HEADERS,
        request=BurnRequestSerializer,
        responses={
            201: PostingSerializer,
            **problems(
                *POST_PROBLEMS,
                "tenant-cannot-redeem",
                "member-not-found",
                "duplicate-receipt",
                "insufficient-points",
            ),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().post(request, *args, **kwargs)

    def perform(self, till: Till, data: dict[str, Any], **kwargs: Any) -> Outcome:
        return _outcome(
            points_burn(
                till=till,
                member=MemberRef(**data["member"]),
                points=data["points"],
                bill_amount=data["bill_amount"],
                receipt=data["receipt"],
                occurred_at=data.get("occurred_at"),
            )
        )


class ReverseView(IdempotentPostView):
    request_serializer = ReverseRequestSerializer

    @extend_schema(
        operation_id="reverse",
        summary="Reverse (refund) an earn or a burn, fully or partly",
        description=(
            "An earn is reversed in money (`amount`, a partial refund: the points reversed are the "
            "original points minus those the unrefunded remainder would have earned), a burn in "
            "`points`; without either, the whole remainder. Only the tenant whose till posted the "
            "original may reverse it (another tenant's id is 404). More than remains is 409 "
            "`already-reversed` with `remaining`; a reversal cannot be reversed (422 "
            "`not-reversible`). Reversing spent points may take the balance negative."
        ),
        parameters=[
            *POST_HEADERS,
            OpenApiParameter("transaction_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
        ],
        request=ReverseRequestSerializer,
        responses={
            201: PostingSerializer,
            **problems(
                *POST_PROBLEMS, "transaction-not-found", "already-reversed", "not-reversible"
            ),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().post(request, *args, **kwargs)

    def perform(self, till: Till, data: dict[str, Any], **kwargs: Any) -> Outcome:
        original = transaction_get_for_tenant(till.tenant_id, kwargs["transaction_id"])
        return _outcome(
            points_reverse(
                original=original,
                tenant=till.tenant,
                till=till,
                reason=data["reason"],
                amount=data.get("amount"),
                points=data.get("points"),
            )
        )


class TransactionDetailView(TillAPIView):
    @extend_schema(
        operation_id="transaction",
        summary="One of this tenant's transactions",
        description="Another tenant's transaction is 404, as an unknown one is.",
        parameters=[
            *GET_HEADERS,
            OpenApiParameter("transaction_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
        ],
        responses={
            200: TransactionSerializer,
            **problems(*COMMON_PROBLEMS, "transaction-not-found"),
        },
    )
    def get(self, request: Request, transaction_id: str) -> Response:
        journal = transaction_get_for_tenant(self.till(request).tenant_id, transaction_id)
        return Response(TransactionSerializer(journal).data)


class TransactionCursor(CursorPagination):
    ordering = ("posted_at", "id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound as exc:  # DRF's answer to a bad cursor; it is a bad value, not a path
            raise serializers.ValidationError(
                {"cursor": ["Not a cursor this API gave out in next or previous."]}
            ) from exc


class TransactionFilter(serializers.Serializer):
    since = OffsetDateTimeField(required=False)
    till = serializers.CharField(required=False, max_length=40)
    kind = serializers.ChoiceField(required=False, choices=[k.value for k in TILL_KINDS])


class TransactionListView(TillAPIView):
    pagination_class = TransactionCursor

    @extend_schema(
        operation_id="transactions",
        summary="This tenant's transactions, oldest first",
        description=(
            "Ordered by (`posted_at`, `id`) and cursor-paginated: follow `next` until it is null."
        ),
        parameters=[
            *GET_HEADERS,
            OpenApiParameter(
                "since",
                OpenApiTypes.DATETIME,
                description="RFC 3339 with an offset; transactions posted at or after it.",
            ),
            OpenApiParameter("till", str, description="A till code of this tenant."),
            OpenApiParameter("kind", str, enum=[k.value for k in TILL_KINDS]),
            OpenApiParameter(
                "cursor", str, description="From `next` or `previous`; any other is 422."
            ),
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": TransactionCursor.max_page_size},
                description=f"Default {TransactionCursor.page_size}.",
            ),
        ],
        responses={
            200: TransactionSerializer(many=True),
            **problems(*COMMON_PROBLEMS, "validation-error"),
        },
    )
    def get(self, request: Request) -> Response:
        filters = TransactionFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        journals = transactions_for_tenant(self.till(request).tenant_id)
        if "since" in wanted:
            journals = journals.filter(posted_at__gte=wanted["since"])
        if "till" in wanted:
            journals = journals.filter(till__code=wanted["till"])
        if "kind" in wanted:
            journals = journals.filter(kind=wanted["kind"])
        paginator = TransactionCursor()
        page = paginator.paginate_queryset(journals, request, view=self)
        assert page is not None
        return paginator.get_paginated_response(TransactionSerializer(page, many=True).data)
