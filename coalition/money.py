"""Money is Decimal: rates carry 4 places, amounts are rounded half-up to the paisa."""

from decimal import ROUND_HALF_UP, Decimal

PAISA = Decimal("0.01")


def money_round(value: Decimal) -> Decimal:
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)
