"""Enrol a member at a till and look one up. A till learns an id, a card and balances; never a
name, phone or email."""

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from coalition.api.base import IdempotentPostView, TillAPIView
from coalition.api.idempotency import Outcome
from coalition.api.schema import COMMON_PROBLEMS, GET_HEADERS, POST_HEADERS, POST_PROBLEMS, problems
from consent.models import ConsentChannel
from members.api.serializers import (
    EnrolledSerializer,
    EnrolRequestSerializer,
    LookupQuerySerializer,
    LookupSerializer,
)
from members.selectors import member_balances, member_card, member_expiring, member_find
from members.services import member_enrol
from tenants.models import Till


class EnrolView(IdempotentPostView):
    request_serializer = EnrolRequestSerializer

    @extend_schema(
        operation_id="enrol",
        summary="Enrol a member at the till",
        description=(
            "At least one of phone, email and card; `adult` must be true and "
            "`consents.programme` true (enrolment is consent). A card is issued when none is "
            "given. An identifier already enrolled is 409 `member-exists`, naming no other "
            "personal data."
        ),
        parameters=POST_HEADERS,
        request=EnrolRequestSerializer,
        responses={201: EnrolledSerializer, **problems(*POST_PROBLEMS, "member-exists")},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().post(request, *args, **kwargs)

    def perform(self, till: Till, data: dict[str, Any], **kwargs: Any) -> Outcome:
        member = member_enrol(
            coalition=till.tenant.coalition,
            consents=data["consents"],
            phone=data.get("phone") or None,
            email=data.get("email") or None,
            card=data.get("card") or None,
            name=data.get("name", ""),
            adult=data["adult"],
            channel=ConsentChannel.TILL,
            till=till,
        )
        payload = {"id": str(member.pk), "card": member_card(member), "balance": 0, "pending": 0}
        return Outcome(201, payload, member_id=member.pk)


class LookupView(TillAPIView):
    @extend_schema(
        operation_id="lookup",
        summary="A member's balance and points expiring soon",
        description=(
            "Name the member by exactly one of `card`, `phone`, `email` or `id`. `balance` is "
            "spendable, `pending` earned but still held back, `expiring` the points expiring in "
            "the next 30 days. A till never sees a name, phone or email."
        ),
        parameters=[
            *GET_HEADERS,
            *(
                OpenApiParameter(name, OpenApiTypes.STR, description=f"The member's {name}.")
                for name in ("card", "phone", "email", "id")
            ),
        ],
        responses={
            200: LookupSerializer,
            **problems(*COMMON_PROBLEMS, "member-not-found", "validation-error"),
        },
    )
    def get(self, request: Request) -> Response:
        query = LookupQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        coalition = self.till(request).tenant.coalition
        member = member_find(
            coalition, kind=query.validated_data["kind"], value=query.validated_data["value"]
        )
        balances = member_balances(member)
        return Response(
            {
                "id": str(member.pk),
                "card": member_card(member),
                "balance": balances.balance,
                "pending": balances.pending,
                "expiring": [
                    {"points": points, "expires_on": day.isoformat()}
                    for points, day in member_expiring(member)
                ],
            }
        )
