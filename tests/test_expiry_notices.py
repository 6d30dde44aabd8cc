"""Expiry is never silent: one notice per member before any point expires, through a pluggable
channel, each recorded with its delivery status; the sweep waits a notice window after it."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.test import override_settings

from coalition import channels
from coalition.channels import ChannelError
from coalition.models import (
    ExpiryNotice,
    JournalKind,
    Lot,
    NoticeChannel,
    NoticeStatus,
    OutboxMessage,
)
from coalition.services import lots_expire, points_burn, points_earn
from coalition.services.notices import MAX_ATTEMPTS, expiry_notices_queue, expiry_notices_send
from members.selectors import member_balances
from members.tests.factories import MemberFactory

IST = ZoneInfo("Asia/Kolkata")


def at(year, month, day, hour=12):
    return datetime(year, month, day, hour, tzinfo=IST)


def earn(till, member, amount, receipt, when):
    return points_earn(
        till=till, member=member, amount=Decimal(amount), receipt=receipt, occurred_at=when,
        now=when,
    ).journal  # fmt: skip


def test_one_notice_per_member_lists_points_and_dates(till_a, till_b, member):
    earn(till_a, member, "4000.00", "1", at(2025, 1, 10))  # 40, last day 2026-01-09
    earn(till_a, member, "2500.00", "2", at(2025, 1, 20))  # 25, last day 2026-01-19
    earn(till_a, member, "1000.00", "3", at(2025, 6, 1))  # 10, not within the window
    points_burn(
        till=till_b, member=member, points=15, bill_amount=Decimal("500"), receipt="4",
        occurred_at=at(2025, 2, 1), now=at(2025, 2, 1),
    )  # fmt: skip

    assert expiry_notices_queue(now=at(2025, 12, 25)) == 1

    notice = ExpiryNotice.objects.get()
    assert (notice.member_id, notice.points, str(notice.first_expiry)) == (
        member.pk, 50, "2026-01-09",
    )  # fmt: skip
    assert notice.lots == [
        {"expires_on": "2026-01-09", "points": 25},  # 40 less the 15 burned FIFO
        {"expires_on": "2026-01-19", "points": 25},
    ]
    assert (notice.channel, notice.status) == (NoticeChannel.EMAIL, NoticeStatus.QUEUED)
    assert Lot.objects.filter(notice=notice).count() == 2
    # Recorded once: the next day's run records nothing more for the same lots.
    assert expiry_notices_queue(now=at(2025, 12, 26)) == 0


def test_email_is_sent_and_its_status_recorded(till_a, member):
    earn(till_a, member, "4000.00", "1", at(2025, 1, 10))
    expiry_notices_queue(now=at(2025, 12, 25))

    assert expiry_notices_send(now=at(2025, 12, 25, 13)) == {NoticeStatus.SENT: 1}

    notice = ExpiryNotice.objects.get()
    assert notice.status == NoticeStatus.SENT and notice.sent_at == at(2025, 12, 25, 13)
    [message] = mail.outbox
    email = member.identifiers.get(kind="email").value
    assert message.to == [email]
    assert "40 points: last day 2026-01-09" in message.body
    assert expiry_notices_send() == {}  # nothing left to send


def test_sms_goes_through_the_outbox_adapter(coalition, till_a):
    shopper = MemberFactory.create(coalition=coalition, email=None, phone="+919811112222")
    earn(till_a, shopper, "4000.00", "1", at(2025, 1, 10))
    expiry_notices_queue(now=at(2025, 12, 25))

    expiry_notices_send(now=at(2025, 12, 26))

    notice = ExpiryNotice.objects.get()
    assert (notice.channel, notice.status) == (NoticeChannel.SMS, NoticeStatus.SENT)
    sms = OutboxMessage.objects.get()
    assert (sms.channel, sms.recipient, sms.notice) == (NoticeChannel.SMS, "+919811112222", notice)
    assert "last day 2026-01-09" in sms.body


def test_a_card_only_member_gets_a_no_channel_record_and_still_expires(coalition, till_a):
    shopper = MemberFactory.create(coalition=coalition, email=None, card="7000000000000001")
    earn(till_a, shopper, "4000.00", "1", at(2025, 1, 10))

    expiry_notices_queue(now=at(2025, 12, 25))

    notice = ExpiryNotice.objects.get()
    assert (notice.channel, notice.status) == (NoticeChannel.NONE, NoticeStatus.NO_CHANNEL)
    assert expiry_notices_send() == {}
    # The record is what lets the sweep proceed, a window after it.
    assert lots_expire(as_of=at(2026, 1, 20)) == 0
    assert lots_expire(as_of=at(2026, 1, 25)) == 40


def test_a_lot_without_a_notice_is_not_expired_and_a_late_notice_postpones(till_a, member):
    earn(till_a, member, "4000.00", "1", at(2025, 1, 10))  # last day 2026-01-09

    # Long past its last day, but no notice recorded: nothing expires.
    assert lots_expire(as_of=at(2026, 3, 1)) == 0
    # The notice is recorded now; the lot waits the 30-day window from it...
    expiry_notices_queue(now=at(2026, 3, 1))
    assert lots_expire(as_of=at(2026, 3, 30)) == 0
    # ...and then expires, once.
    assert lots_expire(as_of=at(2026, 3, 31, 13)) == 40
    assert lots_expire(as_of=at(2026, 4, 30)) == 0
    assert member_balances(member).balance == 0
    [journal] = member.journals.filter(kind=JournalKind.EXPIRE)
    assert journal.points == 40


def test_the_sweep_expires_many_members_in_chunks(coalition, till_a, monkeypatch):
    from coalition.services import expiry

    monkeypatch.setattr(expiry, "CHUNK", 2)
    shoppers = [MemberFactory.create(coalition=coalition) for _ in range(5)]
    for number, shopper in enumerate(shoppers):
        earn(till_a, shopper, f"{1000 * (number + 1)}.00", f"R-{number}", at(2025, 1, 10))
    expiry_notices_queue(now=at(2025, 12, 25))

    assert lots_expire(as_of=at(2026, 2, 1)) == 10 + 20 + 30 + 40 + 50

    for shopper in shoppers:
        assert member_balances(shopper).balance == 0
    assert lots_expire(as_of=at(2026, 2, 1)) == 0


class BrokenChannel:
    name = NoticeChannel.EMAIL
    address_kind = "email"

    def send(self, recipient, subject, body, notice):
        raise ChannelError("gateway down")


@override_settings(NOTICE_ADAPTERS={"email": "tests.test_expiry_notices.BrokenChannel"})
def test_a_failing_channel_is_retried_then_marked_failed(till_a, member):
    channels.channel.cache_clear()
    try:
        earn(till_a, member, "4000.00", "1", at(2025, 1, 10))
        expiry_notices_queue(now=at(2025, 12, 25))
        for attempt in range(1, MAX_ATTEMPTS):
            assert expiry_notices_send(now=at(2025, 12, 26)) == {"retry": 1}
            notice = ExpiryNotice.objects.get()
            assert (notice.status, notice.attempts) == (NoticeStatus.QUEUED, attempt)
        assert expiry_notices_send(now=at(2025, 12, 26)) == {NoticeStatus.FAILED: 1}
        notice = ExpiryNotice.objects.get()
        assert notice.status == NoticeStatus.FAILED
        assert notice.error == "ChannelError: gateway down"
    finally:
        channels.channel.cache_clear()
    # A failed delivery is still a recorded notice: the sweep proceeds after the window.
    assert lots_expire(as_of=at(2026, 1, 25)) == 40


@pytest.mark.parametrize("window", [0, 45])
def test_the_window_is_the_coalitions(coalition, till_a, member, window):
    coalition.expiry_notice_days = window
    coalition.save(update_fields=["expiry_notice_days"])
    earn(till_a, member, "4000.00", "1", at(2025, 1, 10))  # last day 2026-01-09
    # The points expire on 2026-01-10: the notice goes out `window` days before that.
    noticed = at(2026, 1, 10) - timedelta(days=window)

    assert expiry_notices_queue(now=noticed - timedelta(days=1)) == 0
    assert expiry_notices_queue(now=noticed) == 1
    assert lots_expire(as_of=at(2026, 1, 10, 11)) == 0  # a window after the notice: not yet
    assert lots_expire(as_of=at(2026, 1, 10, 13)) == 40


def test_a_notice_whose_points_have_all_passed_their_last_day_is_not_sent(till_a, member):
    earn(till_a, member, "4000.00", "1", at(2025, 1, 10))  # last day 2026-01-09
    expiry_notices_queue(now=at(2025, 12, 25))

    # The senders were down until after the last day: telling the member now would mislead.
    assert expiry_notices_send(now=at(2026, 1, 11)) == {NoticeStatus.FAILED: 1}

    notice = ExpiryNotice.objects.get()
    assert notice.status == NoticeStatus.FAILED
    assert (
        notice.error == "Not sent: its last day (2026-01-09) passed before it could be delivered."
    )
    assert mail.outbox == []
