"""Request fields as strict as the contract: money is a decimal string, points an integer, times
RFC 3339 with an offset, and a body never names a tenant or a till."""

import copy
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MONEY_RE = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,2})?")
# Any number of fraction digits is RFC 3339; past microseconds they are dropped.
RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# A body may not choose whose account it posts to: the till's key says that.
FORBIDDEN_FIELDS = frozenset(
    {"tenant", "tenant_id", "tenant_slug", "till", "till_id", "till_code", "store", "store_id"}
)


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^-?\d{1,12}(\.\d{1,2})?$",
        "example": "4000.00",
        "description": "A decimal string with at most two places.",
    }
)
class MoneyField(serializers.Field):
    default_error_messages = {
        "invalid": 'Money is a decimal string with at most two places, like "4000.00".',
    }

    def to_internal_value(self, data: Any) -> Decimal:
        if not isinstance(data, str) or not MONEY_RE.fullmatch(data):
            self.fail("invalid")
        return Decimal(data)

    def to_representation(self, value: Decimal) -> str:
        return f"{value:.2f}"


@extend_schema_field({"type": "integer", "format": "int64", "example": 40})
class StrictIntegerField(serializers.Field):
    default_error_messages = {"invalid": "A whole number is required."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int) or abs(data) > 2**53:
            self.fail("invalid")
        return int(data)

    def to_representation(self, value: int) -> int:
        return int(value)


@extend_schema_field({"type": "string", "format": "date-time"})
class OffsetDateTimeField(serializers.Field):
    default_error_messages = {
        "invalid": "An RFC 3339 time with an offset is required, like 2026-11-22T18:30:00+05:30.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str) or not RFC3339_RE.fullmatch(data):
            self.fail("invalid")
        try:
            parsed = parse_datetime(data.upper())  # RFC 3339 allows a lowercase "t" and "z"
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.fail("invalid")
        # In UTC: PostgreSQL refuses offsets beyond 15:59 (RFC 3339 allows 23:59), and a time
        # that is before year 1 or after 9999 in UTC cannot be a Python datetime at all.
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            self.fail("invalid")

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


@extend_schema_field({"type": "boolean"})
class StrictBooleanField(serializers.Field):
    """true or false, never "yes", 1 or "true" coerced into one."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data

    def to_representation(self, value: bool) -> bool:
        return bool(value)


class StrictCharField(serializers.CharField):
    """A string, never a number or a boolean coerced into one."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class LeanSerializer(serializers.Serializer):
    """A serializer whose fields are copied shallowly for each instance.

    DRF deep-copies the declared fields for every serializer instance, re-running each field's
    constructor; on the till path that was the larger part of validating a body. A shallow copy
    is enough for the fields used here: their state after construction (validators, messages)
    is never changed per request, and each copy gets its own binding to its serializer.
    """

    def get_fields(self) -> dict[str, serializers.Field]:
        return {name: copy.copy(field) for name, field in self._declared_fields.items()}


class TillRequestSerializer(LeanSerializer):
    """Unknown fields are ignored, except one that tries to name a tenant or a till."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, dict):
            named = sorted(FORBIDDEN_FIELDS & set(self.initial_data))
            if named:
                raise serializers.ValidationError(
                    {
                        name: ["The till's key decides the tenant and till; a body cannot."]
                        for name in named
                    }
                )
        return attrs


MEMBER_REF_KINDS = ("card", "phone", "email", "id")


class MemberRefSerializer(LeanSerializer):
    """Exactly one of card, phone, email or id."""

    card = StrictCharField(required=False, max_length=64)
    phone = StrictCharField(required=False, max_length=64)
    email = StrictCharField(required=False, max_length=254)
    id = serializers.UUIDField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [kind for kind in MEMBER_REF_KINDS if attrs.get(kind) not in (None, "")]
        if len(given) != 1:
            raise serializers.ValidationError(
                "Name the member by exactly one of card, phone, email or id."
            )
        kind = given[0]
        return {"kind": kind, "value": str(attrs[kind])}
