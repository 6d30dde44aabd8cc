"""What a till sends to enrol a member and what it gets back: an id, a card and balances, never
a name, phone or email."""

from typing import Any

from rest_framework import serializers

from coalition.api.fields import StrictCharField, TillRequestSerializer


class EnrolRequestSerializer(TillRequestSerializer):
    phone = StrictCharField(required=False, max_length=64)
    email = StrictCharField(required=False, max_length=254)
    card = StrictCharField(required=False, max_length=64)
    name = StrictCharField(required=False, max_length=200, allow_blank=True)
    adult = serializers.BooleanField()
    consents = serializers.DictField(child=serializers.BooleanField(), allow_empty=False)

    def validate_adult(self, value: Any) -> bool:
        if not isinstance(self.initial_data.get("adult"), bool):
            raise serializers.ValidationError("Must be true or false.")
        return bool(value)


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
