"""Disclosure control for the aggregates a tenant sees: which figures of a table to hide.

Pure functions over numbers: no queries, no models. A table is a mapping of keys to `Cell`s and
a list of `Relation`s (a published total equals the sum of its parts). `suppress` returns the
keys to hide and why:

- **small group**: a figure built from 1 to k-1 members (an empty cell, zero from nobody, shows);
- **dominance** (n, p): a figure of which the n largest contributions of other tenants make up
  p% or more;
- **secondary**: wherever totals are published, more figures are hidden until no hidden figure
  can be pinned down from what is shown. Each hidden figure's lowest and highest possible
  values are solved for with a linear program (published figures fixed, totals as equalities,
  every figure >= 0); the range must be at least k wide, and a dominated figure's highest
  possible value must reach (n largest contributions) / p, so that nobody can work out that one
  or two tenants make up p% or more of it.

Complementary figures are chosen greedily (the one that frees the most totals that now pin a
hidden figure, then the smallest that is big enough to protect it, never a total while an inner
figure will do) and every choice is verified by the same linear program, so the result does not
rest on the heuristic: the loop only ends when every hidden figure passes.
"""

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final, Generic, TypeVar

from scipy.optimize import linprog

K = TypeVar("K", bound=Hashable)

TOTAL: Final = "__total__"  # the total's place in a key of `two_way` and `one_way` tables

# LP answers are floating point; a range short of k by less than this still counts as k wide.
_TOLERANCE = 1e-6


class Reason(StrEnum):
    SMALL = "small"  # fewer than k members
    DOMINATED = "dominated"  # one or two other tenants make up most of it
    SECONDARY = "secondary"  # hidden so that a hidden figure cannot be worked out from totals


@dataclass(frozen=True)
class Rules:
    k: int = 10
    dominance_n: int = 2
    dominance_percent: Decimal = Decimal(85)


@dataclass(frozen=True)
class Cell:
    """A figure (members, visits, points...), the distinct members behind it, and what each
    other tenant contributed to it (for the dominance rule; empty where no tenant is behind it)."""

    value: int
    members: int
    parties: tuple[int, ...] = ()


@dataclass(frozen=True)
class Relation(Generic[K]):
    """`total` is published as the sum of `parts`."""

    total: K
    parts: tuple[K, ...]


def is_small(cell: Cell, rules: Rules) -> bool:
    return cell.members < rules.k and (cell.members > 0 or cell.value != 0)


def top_contributions(cell: Cell, n: int) -> int:
    return sum(sorted(cell.parties, reverse=True)[:n])


def is_dominated(cell: Cell, rules: Rules) -> bool:
    if cell.value <= 0 or rules.dominance_n <= 0 or not cell.parties:
        return False
    top = top_contributions(cell, rules.dominance_n)
    return Decimal(top) * 100 >= rules.dominance_percent * cell.value


def primary_reason(cell: Cell, rules: Rules) -> Reason | None:
    if is_small(cell, rules):
        return Reason.SMALL
    if is_dominated(cell, rules):
        return Reason.DOMINATED
    return None


def upper_protection(cell: Cell, rules: Rules) -> float:
    """The highest value a dominated figure must be able to take, as far as anyone can tell
    from what is shown, for its largest contributors to stay below p% of it."""
    if rules.dominance_percent <= 0:  # every figure is dominated: none can be protected
        return float("inf")
    top = top_contributions(cell, rules.dominance_n)
    return float(Decimal(top) * 100 / rules.dominance_percent)


def one_way(rows: Sequence[str]) -> list[Relation[tuple[str]]]:
    """A column of figures keyed `(row,)` and its total `(TOTAL,)`."""
    return [Relation((TOTAL,), tuple((row,) for row in rows))]


def two_way(rows: Sequence[str], columns: Sequence[str]) -> list[Relation[tuple[str, str]]]:
    """A grid keyed `(row, column)`, with row totals `(row, TOTAL)`, column totals
    `(TOTAL, column)` and the grand total `(TOTAL, TOTAL)`."""
    relations = [Relation((row, TOTAL), tuple((row, col) for col in columns)) for row in rows]
    relations += [Relation((TOTAL, col), tuple((row, col) for row in rows)) for col in columns]
    relations.append(Relation((TOTAL, TOTAL), tuple((row, TOTAL) for row in rows)))
    relations.append(Relation((TOTAL, TOTAL), tuple((TOTAL, col) for col in columns)))
    return relations


class _System(Generic[K]):
    """What an intruder knows once `hidden` is hidden: the published figures and every total's
    equation, with the hidden figures as the unknowns (each >= 0)."""

    def __init__(
        self, values: Mapping[K, int], relations: Sequence[Relation[K]], hidden: Iterable[K]
    ) -> None:
        self.unknowns = list(hidden)
        self.position = {key: i for i, key in enumerate(self.unknowns)}
        rows: list[list[float]] = []
        rhs: list[float] = []
        for relation in relations:
            terms = [(relation.total, 1.0), *((part, -1.0) for part in relation.parts)]
            if not any(key in self.position for key, _ in terms):
                continue
            row = [0.0] * len(self.unknowns)
            known = 0.0
            for key, sign in terms:
                if key in self.position:
                    row[self.position[key]] += sign
                else:
                    known -= sign * values[key]
            rows.append(row)
            rhs.append(known)
        self.a_eq = rows or None
        self.b_eq = rhs or None

    def interval(self, key: K) -> tuple[float, float]:
        """The lowest and highest value `key` can take (`inf` when nothing caps it)."""
        objective = [0.0] * len(self.unknowns)
        objective[self.position[key]] = 1.0
        low = self._solve(objective)
        high = self._solve([-c for c in objective])
        assert low is not None, "every figure is at least zero"
        return low, (float("inf") if high is None else -high)

    def _solve(self, objective: list[float]) -> float | None:
        if self.a_eq is None:
            return 0.0 if min(objective) >= 0 else None
        result = linprog(
            objective, A_eq=self.a_eq, b_eq=self.b_eq, bounds=(0, None), method="highs"
        )
        if result.status == 3:  # unbounded
            return None
        if result.status != 0:
            raise ValueError(f"The table's totals do not add up ({result.message}).")
        return float(result.fun)


def protected(cell: Cell, reason: Reason, interval: tuple[float, float], rules: Rules) -> bool:
    low, high = interval
    if high - low < rules.k - _TOLERANCE:
        return False
    return not (reason == Reason.DOMINATED and high < upper_protection(cell, rules) - _TOLERANCE)


def _check_totals(cells: Mapping[K, Cell], relations: Sequence[Relation[K]]) -> None:
    for relation in relations:
        parts = sum(cells[part].value for part in relation.parts)
        if cells[relation.total].value != parts:
            raise ValueError(f"The total {relation.total!r} is not the sum of its parts.")


def suppress(
    cells: Mapping[K, Cell], relations: Sequence[Relation[K]], rules: Rules
) -> dict[K, Reason]:
    """The keys to hide, each with its reason (primary ones first, in `cells` order)."""
    _check_totals(cells, relations)
    hidden: dict[K, Reason] = {}
    for key, cell in cells.items():
        reason = primary_reason(cell, rules)
        if reason is not None:
            hidden[key] = reason
    if not hidden or not relations:
        return hidden
    values = {key: cell.value for key, cell in cells.items()}
    totals = {relation.total for relation in relations}
    member_of: dict[K, list[int]] = {key: [] for key in cells}
    for index, relation in enumerate(relations):
        for key in (relation.total, *relation.parts):
            member_of[key].append(index)
    # Hiding more only widens what a hidden figure could be, so a figure that passed once
    # stays protected: each is solved for until it passes, not again after.
    verified: set[K] = set()
    while True:
        system = _System(values, relations, hidden)
        failing = None
        for key, reason in hidden.items():
            if key in verified:
                continue
            if protected(cells[key], reason, system.interval(key), rules):
                verified.add(key)
            else:
                failing = key
                break
        if failing is None:
            return hidden
        complement = _complement(failing, hidden, cells, relations, member_of, totals, rules)
        if complement is None:  # nothing left to hide: every figure already is
            return hidden
        hidden[complement] = Reason.SECONDARY


def _complement(
    failing: K,
    hidden: Mapping[K, Reason],
    cells: Mapping[K, Cell],
    relations: Sequence[Relation[K]],
    member_of: Mapping[K, list[int]],
    totals: set[K],
    rules: Rules,
) -> K | None:
    """The next figure to hide so that `failing` (and the others) can move.

    A total with exactly one hidden figure in its equation gives that figure back, so when
    `failing` is in such an equation the complement comes from it. Otherwise from any equation
    with a hidden figure: the one that sits in most equations that give a figure back (the
    fourth corner of a rectangle frees both its row and its column). Between equals: an inner
    figure before a total, one in an equation with `failing`, one at least as big as the
    protection needed (a smaller one cannot give `failing` room to move), then the smallest
    (least lost to the reader).
    """
    unknowns = [sum(key in hidden for key in _keys(relation)) for relation in relations]
    pinning = [index for index in member_of[failing] if unknowns[index] == 1]
    candidates = pinning or [index for index, count in enumerate(unknowns) if count]
    pool = {key for index in candidates for key in _keys(relations[index]) if key not in hidden}
    if not pool:
        pool = {key for key in cells if key not in hidden}
    if not pool:
        return None
    near = {key for index in member_of[failing] for key in _keys(relations[index])}
    cell = cells[failing]
    need = float(rules.k)
    if hidden[failing] == Reason.DOMINATED:
        need = max(need, upper_protection(cell, rules) - cell.value)
    position = {key: i for i, key in enumerate(cells)}

    def rank(key: K) -> tuple[bool, int, bool, bool, int, int]:
        pins = sum(1 for index in member_of[key] if unknowns[index] == 1)
        value = cells[key].value
        return (key in totals, -pins, key not in near, value < need, value, position[key])

    return min(pool, key=rank)


def _keys(relation: Relation[K]) -> tuple[K, ...]:
    return (relation.total, *relation.parts)
