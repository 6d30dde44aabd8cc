"""OpenAPI pieces shared by the till endpoints: the Idempotency-Key header and problem bodies."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from coalition.api.problems import PROBLEM_CONTENT_TYPE, PROBLEMS

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=True,
    description=(
        "1 to 255 printable ASCII characters, unique per request of this till. A retry with the "
        "same key and body replays the first response (header `Idempotent-Replayed: true`)."
    ),
)


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details; some problems add fields (`errors`, `available`, `remaining`)."""

    type = serializers.CharField(help_text="A URI ending in the problem's name.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="validation-error: messages per field.",
    )
    available = serializers.IntegerField(required=False, help_text="insufficient-points.")
    remaining = serializers.IntegerField(required=False, help_text="already-reversed.")


def problems(*statuses: int) -> dict[Any, OpenApiResponse]:
    """Problem responses for `statuses`, each described by the problem names it can carry."""
    responses: dict[Any, OpenApiResponse] = {}
    for status in statuses:
        names = ", ".join(f"`{name}`" for name, (code, _) in PROBLEMS.items() if code == status)
        responses[(status, PROBLEM_CONTENT_TYPE)] = OpenApiResponse(
            response=ProblemSerializer, description=f"Problem: {names}."
        )
    return responses


class TillKeyScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Api-Key <key>` as the API's security scheme."""

    target_class = "coalition.api.auth.TillKeyAuthentication"
    name = "TillKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: the till's own key, shown once when it was made.",
        }
