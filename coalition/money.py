"""Money is Decimal: rates carry 4 places, amounts are rounded half-up to the paisa."""

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import TypeVar

PAISA = Decimal("0.01")
K = TypeVar("K", int, str)


def money_round(value: Decimal) -> Decimal:
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)


def money_split(exact: dict[K, Decimal]) -> dict[K, Decimal]:
    """Round shares to the paisa so that they add up to their rounded total, losing no paisa.

    The remainder rule (largest remainder): the total is rounded half-up; each share is first
    rounded down to the paisa; the paise still missing go one each to the shares with the
    largest remainders, ties to the smaller key.
    """
    total = money_round(sum(exact.values(), Decimal(0)))
    floors = {key: value.quantize(PAISA, rounding=ROUND_DOWN) for key, value in exact.items()}
    missing = int((total - sum(floors.values(), Decimal(0))) / PAISA)
    by_remainder = sorted(exact, key=lambda key: (-(exact[key] - floors[key]), key))
    for key in by_remainder[:missing]:
        floors[key] += PAISA
    return floors
