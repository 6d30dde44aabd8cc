"""The liability as CSV for finance: the same figures as the admin page, one section each."""

import io
from collections.abc import Iterable

from coalition.csvsafe import csv_writer
from coalition.selectors.liability import Liability, Row


def liability_csv(figures: Liability) -> str:
    out = io.StringIO()
    writer = csv_writer(out)

    def write(*cells: object) -> None:
        writer.writerow(cells)

    def section(title: str, rows: Iterable[Row]) -> None:
        write()
        write(title)
        write("Line", "Points", f"Value ({figures.coalition.currency})")
        for row in rows:
            write(row.label, row.points, row.value)

    coalition = figures.coalition
    write("Points liability", coalition.name)
    write("As of", figures.as_of.isoformat(timespec="seconds"))
    write("Point value", figures.point_value, coalition.currency)
    section(
        "Outstanding",
        [figures.spendable, figures.pending, figures.owed_by_members, figures.net],
    )
    section("Outstanding by funding tenant", figures.by_tenant)
    section("Outstanding by age (from the earn date)", figures.by_age)
    section(
        "Expiring (by last day)",
        [figures.overdue, *figures.expiring, figures.never_expiring],
    )
    write()
    write("Breakage")
    write("Line", "Points", f"Value ({coalition.currency})")
    write(figures.breakage.label, figures.breakage.points, figures.breakage.value)
    write("Returned to funding tenants on statements", "", figures.breakage_returned)
    write()
    write("Earn-month cohorts (share of issued points redeemed so far)")
    write(
        "Earn month",
        "Issued",
        "Redeemed",
        "Refunded",
        "Expired",
        "Other",
        "Outstanding",
        "Redemption rate",
    )
    for cohort in figures.cohorts:
        rate = cohort.redemption_rate
        write(
            f"{cohort.month:%Y-%m}",
            cohort.issued,
            cohort.redeemed,
            cohort.refunded,
            cohort.expired,
            cohort.other,
            cohort.outstanding,
            "" if rate is None else rate,
        )
    return out.getvalue()
