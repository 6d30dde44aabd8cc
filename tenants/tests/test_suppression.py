"""Disclosure control on crafted tables: each rule just on each side of its threshold, and for
every table with totals an independent check that no hidden figure can be pinned down.

The check (`ranges`) is the intruder's: with the published figures fixed, every published
total as an equation and every figure >= 0, solve for the lowest and the highest value each
hidden figure can take (SciPy's linprog), and require the range to be at least k wide.
"""

import random
from collections.abc import Hashable, Mapping, Sequence
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from tenants.suppression import (
    TOTAL,
    Cell,
    Reason,
    Relation,
    Rules,
    is_dominated,
    is_small,
    one_way,
    primary_reason,
    protected,
    suppress,
    two_way,
    upper_protection,
)

RULES = Rules(k=10, dominance_n=2, dominance_percent=Decimal("85.00"))


def ranges(
    values: Mapping[Hashable, int], relations: Sequence[Relation], hidden: set
) -> dict[Hashable, tuple[float, float]]:
    """Each hidden figure's lowest and highest possible value, given what is published."""
    unknowns = sorted(hidden, key=repr)
    column = {key: i for i, key in enumerate(unknowns)}
    a_eq, b_eq = [], []
    for relation in relations:
        row, rhs = [0.0] * len(unknowns), 0.0
        for key, sign in [(relation.total, 1), *((part, -1) for part in relation.parts)]:
            if key in column:
                row[column[key]] += sign
            else:
                rhs -= sign * values[key]
        if any(row):
            a_eq.append(row)
            b_eq.append(rhs)
        else:  # a fully published equation must hold as it is
            assert rhs == 0
    found = {}
    for key in unknowns:
        objective = [0.0] * len(unknowns)
        objective[column[key]] = 1.0
        bounds = []
        for sign in (1, -1):
            result = linprog(
                [sign * c for c in objective],
                A_eq=a_eq or None,
                b_eq=b_eq or None,
                bounds=(0, None),
                method="highs",
            )
            if result.status == 3:
                bounds.append(float("inf"))
            else:
                assert result.status == 0, result.message
                bounds.append(sign * result.fun)
        found[key] = (bounds[0], bounds[1])
    return found


def assert_protected(values, relations, hidden, k=RULES.k):
    for key, (low, high) in ranges(values, relations, set(hidden)).items():
        assert high - low >= k - 1e-6, f"{key} is pinned to [{low}, {high}]"


def grid(table: dict[str, dict[str, int]]) -> tuple[dict, list[Relation]]:
    """Cells of a count table (each figure is members) with row, column and grand totals."""
    rows = list(table)
    columns = list(next(iter(table.values())))
    cells = {(r, c): Cell(v, v) for r in rows for c, v in table[r].items()}
    for r in rows:
        total = sum(table[r].values())
        cells[r, TOTAL] = Cell(total, total)
    for c in columns:
        total = sum(table[r][c] for r in rows)
        cells[TOTAL, c] = Cell(total, total)
    grand = sum(sum(row.values()) for row in table.values())
    cells[TOTAL, TOTAL] = Cell(grand, grand)
    return cells, two_way(rows, columns)


def values_of(cells: Mapping) -> dict:
    return {key: cell.value for key, cell in cells.items()}


# --- the primary rules, each just on each side of its threshold ----------------------------


@pytest.mark.parametrize(("members", "small"), [(9, True), (10, False), (11, False), (1, True)])
def test_small_groups_just_below_at_and_above_k(members, small):
    assert is_small(Cell(members * 3, members), RULES) is small
    assert (primary_reason(Cell(members * 3, members), RULES) == Reason.SMALL) is small


def test_k_comes_from_the_rules():
    assert is_small(Cell(4, 4), Rules(k=5))
    assert not is_small(Cell(5, 5), Rules(k=5))


def test_an_empty_cell_is_shown():
    """Zero from nobody discloses nobody: it is shown as 0, not hidden."""
    assert primary_reason(Cell(0, 0), RULES) is None


@pytest.mark.parametrize(
    ("parties", "dominated"),
    [
        ((50, 34, 16), False),  # the two largest: 84% (just below)
        ((50, 35, 15), True),  # exactly 85%
        ((51, 35, 14), True),  # 86%
        ((40, 30, 20, 10), False),  # 70%
        ((60, 40), True),  # two other tenants are always "one or two"
        ((100,), True),
    ],
)
def test_dominance_just_below_at_and_above_85_percent(parties, dominated):
    cell = Cell(sum(parties), 40, parties)
    assert is_dominated(cell, RULES) is dominated
    assert (primary_reason(cell, RULES) == Reason.DOMINATED) is dominated


def test_dominance_with_a_fractional_percent_and_one_tenant():
    rules = Rules(k=10, dominance_n=1, dominance_percent=Decimal("84.50"))
    assert not is_dominated(Cell(1000, 40, (844, 156)), rules)  # 84.4%
    assert is_dominated(Cell(1000, 40, (845, 155)), rules)  # 84.5%


def test_small_comes_before_dominated():
    assert primary_reason(Cell(100, 3, (100,)), RULES) == Reason.SMALL


def test_without_totals_only_the_primary_cells_are_hidden():
    cells = {
        "apparel": Cell(30, 9),
        "food": Cell(40, 10, (10, 10, 10, 10)),
        "cinema": Cell(50, 30, (50,)),
    }
    assert suppress(cells, [], RULES) == {"apparel": Reason.SMALL, "cinema": Reason.DOMINATED}


def test_a_table_whose_totals_do_not_add_up_is_refused():
    cells = {("a",): Cell(10, 10), ("b",): Cell(12, 12), (TOTAL,): Cell(23, 23)}
    with pytest.raises(ValueError, match="not the sum"):
        suppress(cells, one_way(["a", "b"]), RULES)


@pytest.mark.parametrize(("interval", "ok"), [((0, 9), False), ((0, 10), True), ((3, 14), True)])
def test_a_hidden_figure_needs_a_range_at_least_k_wide(interval, ok):
    assert protected(Cell(4, 4), Reason.SMALL, interval, RULES) is ok


@pytest.mark.parametrize(("high", "ok"), [(115.0, False), (100 / 0.85, True), (200.0, True)])
def test_a_dominated_figure_must_be_able_to_reach_its_top_contributors_over_p(high, ok):
    """95 + 5 of 100 from two tenants: whatever is shown, it must look as if it could be as big
    as 100 / 0.85 = 117.6, where those two would be below 85%."""
    cell = Cell(100, 40, (95, 5))
    assert protected(cell, Reason.DOMINATED, (90.0, high), RULES) is ok


# --- secondary suppression ------------------------------------------------------------------

# Row and column totals, one cell below k (apparel in March: 4 shoppers).
TABLE = {
    "apparel": {"jan": 30, "feb": 25, "mar": 4},
    "food": {"jan": 28, "feb": 15, "mar": 40},
    "cinema": {"jan": 22, "feb": 35, "mar": 18},
}


def naive_row_only(cells: Mapping, rules: Rules) -> set:
    """The mistake the issue warns about: hide each small cell and the smallest other cell of
    its row, and nothing else."""
    hidden = {key for key, cell in cells.items() if primary_reason(cell, rules)}
    for row, column in list(hidden):
        others = [
            (cell.value, key)
            for key, cell in cells.items()
            if key[0] == row and key[1] not in (column, TOTAL)
        ]
        hidden.add(min(others)[1])
    return hidden


def test_hiding_one_more_cell_in_the_row_alone_fails_the_check():
    cells, relations = grid(TABLE)
    hidden = naive_row_only(cells, RULES)
    assert hidden == {("apparel", "mar"), ("apparel", "feb")}

    found = ranges(values_of(cells), relations, hidden)

    # The March column total gives the small cell straight back.
    assert found["apparel", "mar"] == pytest.approx((4, 4))
    assert found["apparel", "feb"] == pytest.approx((25, 25))


def test_suppression_protects_every_hidden_cell_of_the_table():
    cells, relations = grid(TABLE)

    hidden = suppress(cells, relations, RULES)

    assert hidden["apparel", "mar"] == Reason.SMALL
    assert all(hidden[key] == Reason.SECONDARY for key in hidden if key != ("apparel", "mar"))
    # A rectangle: one more cell in the small cell's row and column, and the fourth corner.
    assert len(hidden) == 4
    assert not any(TOTAL in key for key in hidden)  # no total needed hiding
    assert_protected(values_of(cells), relations, hidden)


@pytest.mark.parametrize(("small", "hidden_count"), [(9, 4), (10, 0), (11, 0)])
def test_a_table_cell_just_below_at_and_above_k(small, hidden_count):
    table = {row: dict(columns) for row, columns in TABLE.items()}
    table["apparel"]["mar"] = small
    cells, relations = grid(table)

    hidden = suppress(cells, relations, RULES)

    assert len(hidden) == hidden_count
    assert_protected(values_of(cells), relations, hidden)


def test_complements_big_enough_to_give_k_of_room():
    """Next to the small cell sit cells of 1 and 2 shoppers' worth of room: hiding those would
    leave it a range narrower than k, so bigger ones are taken (or more of them)."""
    table = {
        "a": {"x": 3, "y": 11, "z": 40},
        "b": {"x": 12, "y": 30, "z": 25},
        "c": {"x": 50, "y": 20, "z": 60},
    }
    cells, relations = grid(table)
    hidden = suppress(cells, relations, RULES)
    assert ("a", "x") in hidden
    assert_protected(values_of(cells), relations, hidden)


def test_one_small_cell_in_a_column_with_a_total():
    cells = {("a",): Cell(4, 4), ("b",): Cell(30, 30), ("c",): Cell(50, 50)}
    cells[TOTAL,] = Cell(84, 84)
    relations = one_way(["a", "b", "c"])

    hidden = suppress(cells, relations, RULES)

    assert hidden == {("a",): Reason.SMALL, ("b",): Reason.SECONDARY}
    assert_protected(values_of(cells), relations, hidden)


def test_a_small_total_is_hidden_and_protected_too():
    """Each cell of a row is small, so is its total: the grand total would give it back."""
    table = {
        "a": {"x": 3, "y": 2, "z": 4},
        "b": {"x": 12, "y": 30, "z": 25},
        "c": {"x": 50, "y": 20, "z": 60},
    }
    cells, relations = grid(table)
    hidden = suppress(cells, relations, RULES)
    assert hidden["a", TOTAL] == Reason.SMALL
    assert_protected(values_of(cells), relations, hidden)


def test_a_dominated_cell_keeps_its_largest_contributors_below_85_percent():
    """Points in a category: one tenant made 95 of 100 in March. Whatever the page shows, the
    highest value the March figure can take must be at least 95 / 0.85."""
    parties = {
        ("food", "jan"): (40, 30, 30),
        ("food", "feb"): (50, 30, 20),
        ("food", "mar"): (95, 3, 2),
        ("books", "jan"): (20, 20, 20),
        ("books", "feb"): (30, 30, 30),
        ("books", "mar"): (40, 40, 40),
    }
    cells = {key: Cell(sum(value), 20, value) for key, value in parties.items()}
    for row in ("food", "books"):
        cells[row, TOTAL] = Cell(sum(cells[row, m].value for m in ("jan", "feb", "mar")), 50)
    for month in ("jan", "feb", "mar"):
        cells[TOTAL, month] = Cell(sum(cells[r, month].value for r in ("food", "books")), 40)
    cells[TOTAL, TOTAL] = Cell(sum(cells[r, TOTAL].value for r in ("food", "books")), 90)
    relations = two_way(["food", "books"], ["jan", "feb", "mar"])

    hidden = suppress(cells, relations, RULES)

    assert hidden["food", "mar"] == Reason.DOMINATED
    values = values_of(cells)
    assert_protected(values, relations, hidden)
    _, high = ranges(values, relations, set(hidden))["food", "mar"]
    assert high >= upper_protection(cells["food", "mar"], RULES) - 1e-6
    assert upper_protection(cells["food", "mar"], RULES) == pytest.approx((95 + 3) / 0.85)


def test_periods_suppressed_together_cannot_be_played_off_against_each_other() -> None:
    """One table for the 2- and the 4-month view (both row totals published): no hidden
    figure of either view can be worked out from everything the two views show."""
    months = ["m1", "m2", "m3", "m4"]
    table = {
        "a": {"m1": 20, "m2": 15, "m3": 30, "m4": 5},
        "b": {"m1": 25, "m2": 12, "m3": 18, "m4": 40},
        "c": {"m1": 14, "m2": 50, "m3": 22, "m4": 16},
    }
    cells: dict = {}
    relations: list[Relation] = []
    for row in [*table, TOTAL]:
        for m in months:
            value = table[row][m] if row != TOTAL else sum(table[r][m] for r in table)
            cells[row, m] = Cell(value, value)
        for window, span in (("last-2", months[-2:]), ("last-4", months)):
            value = sum(cells[row, m].value for m in span)
            cells[row, window] = Cell(value, value)
            relations.append(Relation((row, window), tuple((row, m) for m in span)))
    for column in [*months, "last-2", "last-4"]:
        relations.append(Relation((TOTAL, column), tuple((r, column) for r in table)))

    hidden = suppress(cells, relations, RULES)

    assert hidden["a", "m4"] == Reason.SMALL
    assert_protected(values_of(cells), relations, hidden)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 6),
    columns=st.integers(1, 6),
)
def test_random_tables_are_always_protected(seed, rows, columns):
    generator = random.Random(seed)
    table = {
        f"r{r}": {
            f"c{c}": generator.choice([0, 1, 3, 7, 9, 10, 12, 25, 60]) for c in range(columns)
        }
        for r in range(rows)
    }
    cells, relations = grid(table)

    hidden = suppress(cells, relations, RULES)

    for key, cell in cells.items():
        if primary_reason(cell, RULES):
            assert key in hidden
    assert_protected(values_of(cells), relations, hidden)
