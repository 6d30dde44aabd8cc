"""Shapes of the till API's transactions: what earn, burn and reverse accept and answer."""

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from coalition.api.fields import (
    MemberRefSerializer,
    MoneyField,
    OffsetDateTimeField,
    StrictCharField,
    StrictIntegerField,
    TillRequestSerializer,
)
from coalition.models import Journal
from coalition.selectors import TILL_KINDS


class EarnRequestSerializer(TillRequestSerializer):
    member = MemberRefSerializer()
    amount = MoneyField()
    currency = StrictCharField(max_length=3, min_length=3)
    receipt = StrictCharField(max_length=64)
    occurred_at = OffsetDateTimeField(required=False)


class BurnRequestSerializer(TillRequestSerializer):
    member = MemberRefSerializer()
    points = StrictIntegerField()
    bill_amount = MoneyField()
    receipt = StrictCharField(max_length=64)
    occurred_at = OffsetDateTimeField(required=False)


class ReverseRequestSerializer(TillRequestSerializer):
    reason = StrictCharField(max_length=500)
    amount = MoneyField(required=False, help_text="Earn: the amount refunded (default: the rest).")
    points = StrictIntegerField(
        required=False, help_text="Burn: the points given back (default: the rest)."
    )


class TransactionSerializer(serializers.Serializer):
    """A transaction as a till sees it: never a member's personal data."""

    id = serializers.UUIDField(source="public_id")
    kind = serializers.ChoiceField(choices=[(k.value, k.label) for k in TILL_KINDS])
    points = serializers.IntegerField(min_value=0, help_text="Points moved (0 for a visit).")
    amount = MoneyField(allow_null=True, help_text="Earn: the purchase. Earn reversal: refunded.")
    bill_amount = MoneyField(allow_null=True, help_text="Burn: the bill the points paid towards.")
    value = MoneyField(help_text="The points at the point value (burn: the discount given).")
    receipt = serializers.CharField()
    tenant = serializers.CharField(source="tenant.slug", help_text="The tenant's slug.")
    till = serializers.CharField(
        source="till.code", allow_null=True, help_text="The till's code; null if staff posted it."
    )
    occurred_at = serializers.DateTimeField()
    posted_at = serializers.DateTimeField()
    reverses = serializers.UUIDField(
        source="reverses.public_id", allow_null=True, help_text="Reversals: the original's id."
    )


class PostingSerializer(serializers.Serializer):
    transaction = TransactionSerializer()
    balance = serializers.IntegerField(help_text="Spendable points after this transaction.")
    pending = serializers.IntegerField(help_text="Points earned but still held back.")


_TIME = serializers.DateTimeField()


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def transaction_data(journal: Journal) -> dict[str, Any]:
    """`TransactionSerializer`'s output, built directly: every earn and burn answers with one,
    and a serializer instance costs more than the rest of the rendering (docs/benchmarks.md).
    A test holds the two to the same output."""
    till, tenant, reverses = journal.till, journal.tenant, journal.reverses
    assert tenant is not None  # a till transaction always has its tenant
    return {
        "id": str(journal.public_id),
        "kind": journal.kind,
        "points": int(journal.points),
        "amount": _money(journal.amount),
        "bill_amount": _money(journal.bill_amount),
        "value": _money(journal.value),
        "receipt": journal.receipt,
        "tenant": tenant.slug,
        "till": till.code if till is not None else None,
        "occurred_at": _TIME.to_representation(journal.occurred_at),
        "posted_at": _TIME.to_representation(journal.posted_at),
        "reverses": str(reverses.public_id) if reverses is not None else None,
    }


def posting_data(journal: Journal, balance: int, pending: int) -> dict[str, Any]:
    return {"transaction": transaction_data(journal), "balance": balance, "pending": pending}
