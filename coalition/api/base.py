"""The views every till endpoint is built on: key auth, rate limit, problem+json, and for POSTs
exactly-once execution under an Idempotency-Key."""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from rest_framework.request import Request
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from coalition.api.auth import IsTill, TillKeyAuthentication, TillKeyThrottle
from coalition.api.idempotency import (
    Outcome,
    canonical_json,
    fingerprint,
    idempotency_key,
    idempotent_respond,
)
from coalition.errors import MalformedRequest, PayloadTooLarge
from tenants.models import Till


class TillAPIView(APIView):
    authentication_classes = [TillKeyAuthentication]
    permission_classes = [IsTill]
    throttle_classes = [TillKeyThrottle]

    def till(self, request: Request) -> Till:
        till = request.auth
        assert isinstance(till, Till)  # guaranteed by IsTill
        return till


class IdempotentPostView(TillAPIView):
    """A POST that is answered once per Idempotency-Key. Subclasses implement `perform`.

    The order of checks is the contract's: 401 (authentication, before `post` runs) → 400 key
    missing → idempotency (replay, 422 reuse, 409 in progress) → 400/422 shape → business rules.
    """

    request_serializer: type[Serializer]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        till = self.till(request)
        key = idempotency_key(request.headers)
        body = canonical_json(self.request_body(request))
        request_print = fingerprint(request.method or "POST", request.path, body.canonical)

        def handler() -> Outcome:
            if not body.is_json:
                raise MalformedRequest("The body is not valid JSON.")
            serializer = self.request_serializer(data=body.data)
            serializer.is_valid(raise_exception=True)
            return self.perform(till, serializer.validated_data, **kwargs)

        return idempotent_respond(till=till, key=key, fingerprint=request_print, handler=handler)

    def request_body(self, request: Request) -> bytes:
        try:
            return bytes(request.body)
        except RequestDataTooBig as exc:
            raise PayloadTooLarge("The request body is too large.") from exc

    def perform(self, till: Till, data: dict[str, Any], **kwargs: Any) -> Outcome:
        raise NotImplementedError
