"""OpenAPI pieces shared by the till endpoints: headers, problem bodies, and the few shapes DRF
fields cannot state themselves (exactly one member identifier, the enrolment consents)."""

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_field,
)
from rest_framework import serializers

from coalition.api.fields import MONEY_RE
from coalition.api.idempotency import STORED_STATUSES
from coalition.api.problems import PROBLEM_CONTENT_TYPE, PROBLEMS

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    location=OpenApiParameter.HEADER,
    required=True,
    description=(
        "1 to 255 printable ASCII characters, unique per request of this till. A retry with the "
        "same key and body replays the first response (header `Idempotent-Replayed: true`); the "
        "same key with another body is 422 `idempotency-key-reused`. Kept at least 7 days."
    ),
)

# Statuses whose answer to a POST is stored under its Idempotency-Key, and so can be replayed.
REPLAYABLE = sorted(STORED_STATUSES)

IDEMPOTENT_REPLAYED = OpenApiParameter(
    "Idempotent-Replayed",
    {"type": "string", "enum": ["true"]},
    location=OpenApiParameter.HEADER,
    response=REPLAYABLE,
    description="Present on a replay: this is the stored first response to the key.",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    {"type": "string", "pattern": "^[0-9]+$"},
    location=OpenApiParameter.HEADER,
    required=True,
    response=[429, 503],
    description="Seconds to wait before retrying (unchanged).",
)
WWW_AUTHENTICATE = OpenApiParameter(
    "WWW-Authenticate",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=True,
    response=[401],
    description='`Api-Key realm="till"`.',
)

# Headers every till endpoint answers with, and those of an idempotent POST.
GET_HEADERS = [WWW_AUTHENTICATE, RETRY_AFTER]
POST_HEADERS = [IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, *GET_HEADERS]

# Problems any till request can meet, and those any idempotent POST can meet besides.
COMMON_PROBLEMS = ("unauthenticated", "rate-limited", "try-again")
POST_PROBLEMS = (
    *COMMON_PROBLEMS,
    "malformed-request",
    "idempotency-key-missing",
    "idempotency-key-invalid",
    "idempotency-key-reused",
    "request-in-progress",
    "payload-too-large",
    "validation-error",
)


@extend_schema_field(
    {"oneOf": [{"type": "string", "pattern": MONEY_RE.pattern}, {"type": "integer"}]}
)
class RemainingField(serializers.Field):
    """Money (a decimal string) or points (an integer)."""


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details. Some problems add fields: `errors` (validation-error),
    `available` (insufficient-points), `remaining` and `remaining_points` (already-reversed)."""

    type = serializers.CharField(help_text="A URI ending in the problem's name.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="validation-error: messages per field.",
    )
    available = serializers.IntegerField(
        required=False, help_text="insufficient-points: the spendable balance."
    )
    remaining = RemainingField(
        required=False,
        help_text=(
            "already-reversed: what is left to reverse; of an earn the money left to refund, "
            "of a burn the points."
        ),
    )
    remaining_points = serializers.IntegerField(
        required=False, help_text="already-reversed, of an earn: the points left to reverse."
    )


EXAMPLE_EXTRAS: dict[str, dict[str, Any]] = {
    "validation-error": {"errors": {"amount": ["A valid number is required."]}},
    "insufficient-points": {"available": 12},
    "already-reversed": {"remaining": "0.00", "remaining_points": 0},
}


def problems(*names: str) -> dict[Any, OpenApiResponse]:
    """Problem responses (application/problem+json) for the named problems, one per status, each
    listing its problem names and showing an example body of each."""
    by_status: dict[int, list[str]] = {}
    for name in names:
        status, _ = PROBLEMS[name]  # KeyError: not a problem the API knows
        by_status.setdefault(status, []).append(name)
    responses: dict[Any, OpenApiResponse] = {}
    for status, named in sorted(by_status.items()):
        responses[(status, PROBLEM_CONTENT_TYPE)] = OpenApiResponse(
            response=ProblemSerializer,
            description="Problem " + ", ".join(f"`{name}`" for name in named) + ".",
            examples=[_problem_example(name) for name in named],
        )
    return responses


def _problem_example(name: str) -> OpenApiExample:
    status, title = PROBLEMS[name]
    return OpenApiExample(
        name,
        value={
            "type": f"{settings.PROBLEM_TYPE_BASE}{name}",
            "title": title,
            "status": status,
            "detail": f"{title}.",
            **EXAMPLE_EXTRAS.get(name, {}),
        },
        status_codes=[status],
        media_type=PROBLEM_CONTENT_TYPE,
        response_only=True,
    )


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


class MemberRefScheme(OpenApiSerializerExtension):
    """A member reference names exactly one of card, phone, email or id."""

    target_class = "coalition.api.fields.MemberRefSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        schema["oneOf"] = [{"required": [kind]} for kind in ("card", "phone", "email", "id")]
        return schema


class EnrolRequestScheme(OpenApiSerializerExtension):
    """Enrolment: at least one identifier, an adult, and consent to the programme."""

    target_class = "members.api.serializers.EnrolRequestSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        properties = schema["properties"]
        schema["anyOf"] = [{"required": [kind]} for kind in ("phone", "email", "card")]
        properties["phone"]["description"] = (
            "Normalised to E.164; without a country code, the programme's default region."
        )
        properties["email"]["description"] = "Compared case-insensitively."
        properties["card"]["description"] = "A card number; one is issued when none is given."
        properties["adult"].update(
            enum=[True], description="Must be true: a minor is enrolled by staff."
        )
        properties["consents"].update(
            properties={"programme": {"type": "boolean", "enum": [True]}},
            required=["programme"],
            description=(
                "Consent per purpose code. `programme` must be true (enrolment is consent); the "
                "other codes are the programme's purposes (by default `marketing_mall` and "
                "`analytics`). An unknown code is 422."
            ),
        )
        return schema


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> Any:
    """Final touches drf-spectacular has no switch for:

    - every till POST needs its body (it cannot say so for raw media types like `text/csv`);
    - request components are named after their serializers (`EarnRequest`, not the
      `EarnRequestRequest` that COMPONENT_SPLIT_REQUEST makes of `EarnRequestSerializer`);
    - a boolean that must be true (`adult`) stays inline rather than becoming an enum component.
    """
    for operations in result.get("paths", {}).values():
        body = operations.get("post", {}).get("requestBody")
        if body is not None:
            body["required"] = True
    _links_add(result)
    schemas: dict[str, Any] = result.get("components", {}).get("schemas", {})
    inline = {
        f"#/components/schemas/{name}": schemas.pop(name)
        for name, schema in list(schemas.items())
        if schema.get("type") == "boolean" and "enum" in schema
    }
    renamed = {
        f"#/components/schemas/{name}": f"#/components/schemas/{name.removesuffix('Request')}"
        for name in list(schemas)
        if name.endswith("RequestRequest")
    }
    for old, new in renamed.items():
        schemas[new.rsplit("/", 1)[1]] = schemas.pop(old.rsplit("/", 1)[1])
    result["components"]["schemas"] = dict(sorted(schemas.items()))
    return _rewrite_refs(result, inline, renamed)


# OpenAPI links: what a success answer lets the till do next (schemathesis' stateful tests
# follow them). (path, method, status) -> {link name: (operationId, {parameter: expression})}.
_TRANSACTION_ID = {"transaction_id": "$response.body#/transaction/id"}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("/api/v1/earn", "post", "201"): {
        "GetTransaction": ("transaction", _TRANSACTION_ID),
        "ReverseTransaction": ("reverse", _TRANSACTION_ID),
    },
    ("/api/v1/burn", "post", "201"): {
        "GetTransaction": ("transaction", _TRANSACTION_ID),
        "ReverseTransaction": ("reverse", _TRANSACTION_ID),
    },
    ("/api/v1/batches", "post", "202"): {"GetBatch": ("batch", {"batch_id": "$response.body#/id"})},
    ("/api/v1/members", "post", "201"): {
        "LookUpMember": ("lookup", {"card": "$response.body#/card"})
    },
}


def _links_add(result: dict[str, Any]) -> None:
    for (path, method, status), links in LINKS.items():
        response = result.get("paths", {}).get(path, {}).get(method, {}).get("responses", {})
        if status in response:
            response[status]["links"] = {
                name: {"operationId": operation, "parameters": parameters}
                for name, (operation, parameters) in links.items()
            }


def _rewrite_refs(node: Any, inline: dict[str, Any], renamed: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(item, inline, renamed) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref in inline:
        rest = {key: value for key, value in node.items() if key != "$ref"}
        return {**inline[ref], **rest}
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and all_of[0].get("$ref") in inline:
        rest = {key: value for key, value in node.items() if key != "allOf"}
        return {**inline[all_of[0]["$ref"]], **rest}
    if ref in renamed:
        return {**node, "$ref": renamed[ref]}
    return {key: _rewrite_refs(value, inline, renamed) for key, value in node.items()}
