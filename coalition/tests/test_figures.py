"""The daily rows behind the dashboard: what the refresh stores, that it is idempotent, that it
catches up, and how a late posting and a day not yet settled are handled."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from coalition.models import DailyFigures, DailyFlow
from coalition.selectors.dashboard.daily import daily_figures_compute
from coalition.services import points_burn, points_earn
from coalition.services.figures import SETTLE, daily_figures_refresh
from coalition.services.schedule import JOBS
from coalition.tasks import daily_figures_refresh_task
from members.tests.factories import MemberFactory

IST = ZoneInfo("Asia/Kolkata")


def at(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=IST)


def earn(till, member, amount: str, when: datetime, receipt: str, occurred=None) -> None:
    points_earn(
        till=till, member=member, amount=Decimal(amount), receipt=receipt,
        occurred_at=occurred or when, now=when,
    )  # fmt: skip


@pytest.fixture
def shopped(coalition, till_a, till_b):
    """m: 40 at A on 3 March, 25 at B on 4 March, redeems 30 at B on 5 March (A -> B)."""
    m = MemberFactory.create(coalition=coalition, now=at(3, 1))
    earn(till_a, m, "4000.00", at(3, 3), "r1")
    earn(till_b, m, "2500.00", at(3, 4), "r2")
    points_burn(
        till=till_b, member=m, points=30, bill_amount=Decimal("900"), receipt="r3",
        occurred_at=at(3, 5), now=at(3, 5),
    )  # fmt: skip
    return m


def stored(coalition) -> dict[date, tuple[int, ...]]:
    return {
        row.day: (row.issued, row.redeemed, row.member_net, row.visits, row.active_30d,
                  row.month_buyers, row.month_cross_shoppers)
        for row in DailyFigures.objects.filter(coalition=coalition)
    }  # fmt: skip


def test_refresh_stores_every_ended_day_from_the_first(coalition, shopped):
    written = daily_figures_refresh(coalition=coalition, now=at(3, 6, 9))
    assert written == 5  # 1 March (the enrolment) to 5 March; 6 March is today
    rows = stored(coalition)
    assert sorted(rows) == [date(2026, 3, d) for d in range(1, 6)]
    assert rows[date(2026, 3, 3)] == (40, 0, 40, 1, 1, 1, 0)
    assert rows[date(2026, 3, 4)] == (25, 0, 25, 1, 1, 1, 1)
    assert rows[date(2026, 3, 5)] == (0, 30, -30, 1, 1, 1, 1)
    assert DailyFigures.objects.get(day=date(2026, 3, 1)).enrolled == 1
    assert list(
        DailyFlow.objects.values_list("day", "issuer__name", "redeemer__name", "points")
    ) == [(date(2026, 3, 5), "Apparel Co", "Food Court", 30)]


def test_refresh_is_idempotent_and_catches_up(coalition, shopped, till_a):
    assert daily_figures_refresh(coalition=coalition, now=at(3, 6, 9)) == 5
    before = stored(coalition)
    # Run again the same morning: every row settled, nothing to do.
    assert daily_figures_refresh(coalition=coalition, now=at(3, 6, 9, 30)) == 0
    assert stored(coalition) == before
    # Three days without a run: the missing days are computed, the others left alone.
    assert daily_figures_refresh(coalition=coalition, now=at(3, 9, 1)) == 3
    assert stored(coalition) == before | {
        date(2026, 3, d): (0, 0, 0, 0, 1, 1, 1) for d in (6, 7, 8)
    }


def test_a_late_posting_lands_on_its_posting_day(coalition, shopped, till_a):
    daily_figures_refresh(coalition=coalition, now=at(3, 6, 9))
    before = stored(coalition)
    # Posted on 7 March, for a purchase of 3 March: the rows of 3-5 March stay as they were.
    earn(till_a, shopped, "1000.00", at(3, 7), "late", occurred=at(3, 3))
    daily_figures_refresh(coalition=coalition, now=at(3, 8, 9))
    after = stored(coalition)
    assert {day: after[day] for day in before} == before
    assert after[date(2026, 3, 7)][:3] == (10, 0, 10)


def test_a_day_stored_before_it_settled_is_computed_again(coalition, shopped, till_a):
    # A run a minute after midnight might miss a posting committed just after it with a
    # posting time just before: that row is computed again on the next run.
    assert daily_figures_refresh(coalition=coalition, now=at(3, 6, 0, 1)) == 5
    earn(till_a, shopped, "1000.00", at(3, 5, 23, 59), "just-before-midnight")
    assert DailyFigures.objects.get(day=date(2026, 3, 5)).issued == 0
    next_run = at(3, 6, 0, 1) + SETTLE + timedelta(minutes=5)
    assert daily_figures_refresh(coalition=coalition, now=next_run) == 1
    assert DailyFigures.objects.get(day=date(2026, 3, 5)).issued == 10


def test_stored_rows_equal_the_live_computation(coalition, shopped):
    daily_figures_refresh(coalition=coalition, now=at(3, 6, 9))
    live = daily_figures_compute(coalition, date(2026, 3, 1), date(2026, 3, 5))
    assert [tuple(vars(day).values()) for day in live] == [
        tuple(getattr(row, name) for name in vars(live[0]))
        for row in DailyFigures.objects.filter(coalition=coalition).order_by("day")
    ]


def test_backfill_command_recomputes_from_a_day(coalition, shopped):
    daily_figures_refresh(coalition=coalition, now=at(3, 6, 9))
    DailyFigures.objects.filter(day=date(2026, 3, 4)).update(issued=999)
    out = StringIO()
    call_command(
        "dashboard_backfill", "--coalition", coalition.slug, "--since", "2026-03-04", stdout=out
    )
    assert DailyFigures.objects.get(day=date(2026, 3, 4)).issued == 25
    assert coalition.slug in out.getvalue()


def test_the_task_and_its_beat_job(coalition, shopped):
    assert daily_figures_refresh_task() == {coalition.slug: DailyFigures.objects.count()}
    job = next(job for job in JOBS if job.task.endswith("daily_figures_refresh_task"))
    assert job.expire_seconds > 0
