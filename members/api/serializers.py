"""What a till sends to enrol a member and what it gets back: an id, a card and balances, never
a name, phone or email."""

import re
from typing import Any

from rest_framework import serializers

from coalition.api.fields import StrictBooleanField, StrictCharField, TillRequestSerializer
from consent.models import ConsentPurpose

PURPOSE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,59}")
# The contract's words for purposes, where they differ from the consent log's codes.
PURPOSE_ALIASES = {"marketing": ConsentPurpose.MARKETING_MALL}


class EnrolRequestSerializer(TillRequestSerializer):
    phone = StrictCharField(required=False, max_length=64)
    email = StrictCharField(required=False, max_length=254)
    card = StrictCharField(required=False, max_length=64)
    name = StrictCharField(required=False, max_length=200, allow_blank=True)
    adult = StrictBooleanField()
    consents = serializers.DictField(child=StrictBooleanField(), allow_empty=False)

    def validate_consents(self, value: dict[str, bool]) -> dict[str, bool]:
        """Purpose codes as the consent log knows them; `marketing` is marketing by the mall."""
        consents: dict[str, bool] = {}
        for code, given in value.items():
            if not isinstance(code, str) or not PURPOSE_RE.fullmatch(code):
                raise serializers.ValidationError(f"{str(code)[:60]!r} is not a purpose code.")
            code = PURPOSE_ALIASES.get(code, code)
            if code in consents and consents[code] != given:
                raise serializers.ValidationError(f"Purpose {code!r} is given twice, differently.")
            consents[code] = given
        return consents


class EnrolledSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    card = serializers.CharField()
    balance = serializers.IntegerField()
    pending = serializers.IntegerField()


class ExpiringSerializer(serializers.Serializer):
    points = serializers.IntegerField()
    expires_on = serializers.DateField()


class LookupSerializer(EnrolledSerializer):
    expiring = ExpiringSerializer(many=True, help_text="Points expiring in the next 30 days.")


class LookupQuerySerializer(serializers.Serializer):
    card = serializers.CharField(required=False, max_length=64)
    phone = serializers.CharField(required=False, max_length=64)
    email = serializers.CharField(required=False, max_length=254)
    id = serializers.CharField(required=False, max_length=64)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [kind for kind in ("card", "phone", "email", "id") if attrs.get(kind)]
        if len(given) != 1:
            raise serializers.ValidationError("Give exactly one of card, phone, email or id.")
        return {"kind": given[0], "value": attrs[given[0]]}
