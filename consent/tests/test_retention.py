"""Retention: a member with no earn or burn for the coalition's retention period (3 years by
default) gets one warning and a retention erasure request; the erasure job erases the member once
the warning window has run out, unless the member shopped in between."""

import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django_celery_beat.models import PeriodicTask

from coalition.claims import job_claim
from coalition.models import Journal, JournalKind, NoticeChannel, OutboxMessage
from coalition.services import points_earn
from coalition.tests.factories import CoalitionFactory
from consent.models import (
    DataAccess,
    DataAccessAction,
    PrivacyRequest,
    PrivacyRequestKind,
    PrivacyRequestSource,
    PrivacyRequestStatus,
)
from consent.services import retention
from consent.services.erasure import member_erase
from consent.services.privacy import privacy_erasures_run, privacy_request_open
from consent.services.retention import retention_cutoff, retention_warn
from consent.tasks import retention_warn_task
from members.models import Identifier, Member, MemberStatus
from members.selectors import member_balances
from members.tests.factories import MemberFactory

IST = ZoneInfo("Asia/Kolkata")
# The job runs on 15 June 2028; three years earlier is 15 June 2025, same time of day.
NOW = datetime(2028, 6, 15, 2, 30, tzinfo=IST)
CUTOFF = datetime(2025, 6, 15, 2, 30, tzinfo=IST)
DUE = date(2028, 7, 15)  # 30 days of warning


def enrol(coalition, when, phone="+919811112222", **kwargs):
    """A member whose last activity is its enrolment at `when`."""
    return MemberFactory.create(coalition=coalition, phone=phone, now=when, **kwargs)


def earn(till, member, amount, receipt, when):
    return points_earn(
        till=till, member=member, amount=Decimal(amount), receipt=receipt, occurred_at=when,
        now=when,
    )  # fmt: skip


def test_the_cutoff_is_calendar_years_on_the_local_clock(coalition):
    assert retention_cutoff(coalition, NOW) == CUTOFF
    # 29 February has no twin three years earlier: the last day of that February.
    leap = datetime(2028, 2, 29, 23, 0, tzinfo=IST)
    assert retention_cutoff(coalition, leap) == datetime(2025, 2, 28, 23, 0, tzinfo=IST)
    # A UTC `now` is the coalition's local day, not UTC's (21:00 UTC is 02:30 next day in IST).
    utc = datetime(2028, 6, 14, 21, 0, tzinfo=ZoneInfo("UTC"))
    assert retention_cutoff(coalition, utc) == CUTOFF


def test_inactive_a_day_short_is_not_warned_and_past_it_is(coalition):
    # Given one member inactive for the retention period less a day, one for it and a day more
    recent = enrol(coalition, CUTOFF + timedelta(days=1), phone="+919811110001")
    lapsed = enrol(coalition, CUTOFF - timedelta(days=1), phone="+919811110002")

    # When the job runs
    assert retention_warn(now=NOW) == 1

    # Then only the lapsed member has a retention erasure request, due after the warning window
    request = PrivacyRequest.objects.get()
    assert (request.member_id, request.kind, request.source, request.status) == (
        lapsed.pk, PrivacyRequestKind.ERASURE, PrivacyRequestSource.RETENTION,
        PrivacyRequestStatus.VERIFIED,
    )  # fmt: skip
    assert (request.received_at, request.due_on) == (NOW, DUE)
    assert request.note.endswith("Warned by sms.")
    # And one SMS to its phone, naming the day (not an expiry notice); no email besides
    sms = OutboxMessage.objects.get()
    assert (sms.channel, sms.recipient, sms.notice) == (NoticeChannel.SMS, "+919811110002", None)
    assert "will be erased on 15 July 2028 unless you shop" in sms.body
    assert coalition.name in sms.body
    assert mail.outbox == []
    assert not PrivacyRequest.objects.filter(member=recent).exists()


@pytest.mark.parametrize(
    ("offset", "warned"), [(timedelta(minutes=1), 0), (-timedelta(minutes=1), 1)]
)
def test_the_boundary_is_the_moment_the_period_ends(coalition, offset, warned):
    enrol(coalition, CUTOFF + offset)
    assert retention_warn(now=NOW) == warned
    assert PrivacyRequest.objects.count() == OutboxMessage.objects.count() == warned


def test_a_member_with_an_email_only_is_warned_by_email(coalition):
    lapsed = enrol(coalition, CUTOFF - timedelta(days=400), phone=None)

    assert retention_warn(now=NOW) == 1

    [message] = mail.outbox
    assert message.to == [lapsed.identifiers.get(kind="email").value]
    assert message.subject == f"Your {coalition.name} membership ends on 15 July 2028"
    assert "Your membership and points will be erased on 15 July 2028" in message.body
    assert not OutboxMessage.objects.exists()


def test_a_card_only_member_gets_its_request_without_a_message(coalition):
    lapsed = enrol(coalition, CUTOFF - timedelta(days=10), phone=None, email=None, card="7001")

    assert retention_warn(now=NOW) == 1

    request = PrivacyRequest.objects.get(member=lapsed)
    assert (request.source, request.due_on) == (PrivacyRequestSource.RETENTION, DUE)
    assert "no warning could be sent" in request.note
    assert mail.outbox == [] and not OutboxMessage.objects.exists()


def test_a_member_never_active_since_enrolment_counts_from_enrolment(coalition):
    old = enrol(coalition, CUTOFF - timedelta(days=2), phone="+919811110001")
    new = enrol(coalition, CUTOFF + timedelta(days=2), phone="+919811110002")
    Member.objects.filter(pk__in=[old.pk, new.pk]).update(last_activity_at=None)

    assert retention_warn(now=NOW) == 1
    assert PrivacyRequest.objects.get().member_id == old.pk


def test_running_twice_warns_once(coalition):
    enrol(coalition, CUTOFF - timedelta(days=1))

    assert retention_warn(now=NOW) == 1
    assert retention_warn(now=NOW) == 0
    assert retention_warn(now=NOW + timedelta(days=1)) == 0  # the next day's run

    assert PrivacyRequest.objects.count() == 1
    assert OutboxMessage.objects.count() == 1


def test_chunks_warn_every_member_once(coalition, monkeypatch):
    monkeypatch.setattr(retention, "CHUNK", 2)
    lapsed = {
        enrol(coalition, CUTOFF - timedelta(days=n), phone=f"+91981111000{n}").pk
        for n in range(1, 6)
    }
    enrol(coalition, NOW - timedelta(days=1), phone="+919811119999")  # active: never warned

    assert retention_warn(now=NOW) == 5

    assert set(PrivacyRequest.objects.values_list("member_id", flat=True)) == lapsed
    assert OutboxMessage.objects.count() == 5


def test_a_member_who_shops_after_the_warning_is_kept(coalition, till_a):
    # Given a member warned on 15 June 2028
    lapsed = enrol(coalition, CUTOFF - timedelta(days=30), name="Asha Rao")
    retention_warn(now=NOW)
    # When it earns at a till within the warning window
    earn(till_a, lapsed, "1000.00", "r1", NOW + timedelta(days=10))

    # Then the erasure job, after the due day, erases nobody and cancels the request
    assert privacy_erasures_run(now=datetime(2028, 7, 16, 9, 0, tzinfo=IST)) == 0

    request = PrivacyRequest.objects.get()
    assert request.status == PrivacyRequestStatus.CANCELLED
    assert "The member was active again." in request.note
    lapsed.refresh_from_db()
    assert (lapsed.status, lapsed.name) == (MemberStatus.ACTIVE, "Asha Rao")
    assert lapsed.identifiers.filter(kind="phone").get().value == "+919811112222"
    assert member_balances(lapsed).balance == 10
    # And the next retention run does not warn it again: it shopped less than 3 years ago
    assert retention_warn(now=datetime(2028, 7, 16, 2, 30, tzinfo=IST)) == 0


def test_a_member_who_stays_inactive_is_erased_on_the_due_day_not_before(
    coalition, till_a, assert_ledger_clean
):
    # Given a member who earned 40 points four years ago and was warned on 15 June 2028
    lapsed = enrol(coalition, datetime(2024, 5, 1, 12, tzinfo=IST), name="Asha Rao")
    earn(till_a, lapsed, "4000.00", "r1", datetime(2024, 5, 2, 12, tzinfo=IST))
    assert retention_warn(now=NOW) == 1
    # And staff looked at it since: a view is no activity
    DataAccess.objects.create(
        at=NOW + timedelta(days=5), action=DataAccessAction.VIEW, member=lapsed,
        what="name, phone", why="A shopper called the desk.",
    )  # fmt: skip

    # When the erasure job runs the evening before the due day, nothing happens
    assert privacy_erasures_run(now=datetime(2028, 7, 14, 23, 59, tzinfo=IST)) == 0
    lapsed.refresh_from_db()
    assert (lapsed.status, lapsed.name) == (MemberStatus.ACTIVE, "Asha Rao")

    # When it runs on the due day, the member is erased
    assert privacy_erasures_run(now=datetime(2028, 7, 15, 0, 20, tzinfo=IST)) == 1

    lapsed.refresh_from_db()
    assert (lapsed.status, lapsed.name) == (MemberStatus.ERASED, "")
    assert not Identifier.objects.filter(member=lapsed).exists()
    assert member_balances(lapsed).balance == 0
    forfeit = Journal.objects.get(kind=JournalKind.FORFEIT, member=lapsed)
    assert forfeit.points == 40
    request = PrivacyRequest.objects.get()
    assert request.status == PrivacyRequestStatus.DONE
    assert request.outcome["points_forfeited"] == 40
    # The warning in the outbox named the phone: it is scrubbed too
    sms = OutboxMessage.objects.get()
    assert (sms.recipient, sms.body) == ("", "[erased]")
    assert_ledger_clean(coalition)
    # And an erased member is never warned again
    assert retention_warn(now=NOW + timedelta(days=60)) == 0


def test_a_coalition_uses_its_own_retention_settings(coalition):
    strict = CoalitionFactory.create(retention_years=1, retention_warning_days=14)
    thirteen_months_ago = datetime(2027, 5, 15, 12, tzinfo=IST)
    here = enrol(strict, thirteen_months_ago, phone="+919811110001")
    enrol(coalition, thirteen_months_ago, phone="+919811110002")  # within 3 years

    assert retention_warn(now=NOW) == 1

    request = PrivacyRequest.objects.get()
    assert (request.member_id, request.coalition_id) == (here.pk, strict.pk)
    assert request.due_on == date(2028, 6, 29)
    assert "erased on 29 June 2028" in OutboxMessage.objects.get().body


def test_one_coalition_at_a_time(coalition):
    other = CoalitionFactory.create()
    enrol(coalition, CUTOFF - timedelta(days=1), phone="+919811110001")
    enrol(other, CUTOFF - timedelta(days=1), phone="+919811110002")

    assert retention_warn(now=NOW, coalition=other) == 1
    assert PrivacyRequest.objects.get().coalition_id == other.pk


@pytest.mark.parametrize("status", [MemberStatus.WITHDRAWN, MemberStatus.ERASED])
def test_withdrawn_and_erased_members_are_never_warned(coalition, status):
    gone = enrol(coalition, CUTOFF - timedelta(days=100))
    if status == MemberStatus.ERASED:
        member_erase(member=gone, actor=None, why="Asked at the desk.", now=CUTOFF)
    else:
        Member.objects.filter(pk=gone.pk).update(status=status)
    OutboxMessage.objects.all().delete()

    assert retention_warn(now=NOW) == 0

    assert not PrivacyRequest.objects.filter(source=PrivacyRequestSource.RETENTION).exists()
    assert not OutboxMessage.objects.exists() and mail.outbox == []


def test_a_member_with_an_open_erasure_request_is_not_warned(coalition):
    asked = enrol(coalition, CUTOFF - timedelta(days=100))
    own = privacy_request_open(
        member=asked, kind=PrivacyRequestKind.ERASURE, now=NOW - timedelta(days=3)
    )

    assert retention_warn(now=NOW) == 0

    assert list(PrivacyRequest.objects.all()) == [own]
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_while_another_holds_the_coalition_skips_it(coalition):
    enrol(coalition, CUTOFF - timedelta(days=1))
    results: list[int] = []

    def second_run() -> None:
        # Another connection, as another worker would have.
        results.append(retention_warn(now=NOW))
        connection.close()

    with job_claim(f"retention-warn:{coalition.pk}") as held:
        assert held
        thread = threading.Thread(target=second_run)
        thread.start()
        thread.join()
    assert results == [0]
    assert not PrivacyRequest.objects.exists()
    # Once the claim is free the run warns
    assert retention_warn(now=NOW) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_warn_each_member_once(coalition):
    for n in range(1, 6):
        enrol(coalition, CUTOFF - timedelta(days=n), phone=f"+91981111000{n}")
    start = threading.Barrier(3)
    results: list[int] = []

    def run() -> None:
        start.wait()
        results.append(retention_warn(now=NOW))
        connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results)[-1] == 5 and sum(results) == 5
    assert PrivacyRequest.objects.count() == OutboxMessage.objects.count() == 5


def test_the_task_warns_as_of_now(coalition):
    enrol(coalition, CUTOFF - timedelta(days=1))
    with time_machine.travel(NOW, tick=False):
        assert retention_warn_task() == 1
        assert retention_warn_task() == 0
    assert PrivacyRequest.objects.get().due_on == DUE


def test_the_job_is_scheduled_after_migrate(db):
    task = PeriodicTask.objects.select_related("crontab").get(
        task="consent.tasks.retention_warn_task"
    )
    assert task.enabled
    assert (task.crontab.hour, task.crontab.minute) == ("2", "30")
    assert task.expire_seconds == 6 * 60 * 60
    assert "retention period" in task.description
