"""The setup commands: `create_coalition` for production, `seed_demo` for `make run`."""

import io
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import Model, Sum
from django.test import Client

from coalition import demo
from coalition.models import (
    Account,
    AccountKind,
    AdjustmentRequest,
    CampaignAward,
    CampaignKind,
    Coalition,
    Entry,
    ExpiryPolicy,
    Journal,
    JournalKind,
    Lot,
    LotConsumption,
)
from coalition.selectors import Discrepancy, ledger_verify
from coalition.services import coalition_create
from consent.models import ConsentEvent, ConsentPurpose
from members.models import Identifier, IdentifierKind, Member, MemberStatus, MergeRecord
from settlement.models import Period
from tenants.models import Store, Tenant, TenantRate, Till

SMALL = ("--members", "60", "--months", "2")


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- create_coalition ---------------------------------------------------------------------


def test_create_coalition_prints_only_the_slug(db):
    out, _ = run("create_coalition", "--slug", "phoenix-pune", "--name", "Phoenix Pune")

    assert out == "phoenix-pune\n"
    assert Coalition.objects.get(slug="phoenix-pune").name == "Phoenix Pune"


def test_create_coalition_defaults_are_those_of_the_domain(db):
    run("create_coalition", "--slug", "phoenix", "--name", "Phoenix")

    coalition = Coalition.objects.get(slug="phoenix")
    # 1 point per 100.00 spent, a point worth 1.00, in rupees, closed in India's time zone
    assert coalition.earn_block == Decimal("100.00")
    assert coalition.points_per_block == 1
    assert coalition.point_value == Decimal("1.0000")
    assert coalition.currency == "INR"
    assert coalition.time_zone == "Asia/Kolkata"
    assert (coalition.expiry_policy, coalition.expiry_months) == (ExpiryPolicy.FIXED, 12)
    # ready to take postings: the coalition's own accounts and the consent purposes exist
    assert Account.objects.filter(coalition=coalition, kind=AccountKind.BREAKAGE).exists()
    assert ConsentPurpose.objects.filter(coalition=coalition, code="programme").exists()


def test_create_coalition_takes_currency_and_time_zone(db):
    run(
        "create_coalition",
        *("--slug", "dubai", "--name", "Dubai Mall"),
        *("--currency", "aed", "--time-zone", "Asia/Dubai"),
    )

    coalition = Coalition.objects.get(slug="dubai")
    assert (coalition.currency, coalition.time_zone) == ("AED", "Asia/Dubai")


def test_create_coalition_refuses_a_duplicate_slug(db):
    run("create_coalition", "--slug", "phoenix", "--name", "Phoenix")

    with pytest.raises(CommandError, match="'phoenix' already exists"):
        run("create_coalition", "--slug", "phoenix", "--name", "Another")
    assert Coalition.objects.get(slug="phoenix").name == "Phoenix"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../etc/passwd", ""])
def test_create_coalition_refuses_an_unknown_time_zone(db, zone):
    with pytest.raises(CommandError, match="not a known IANA time zone"):
        run("create_coalition", "--slug", "x", "--name", "X", "--time-zone", zone)
    assert not Coalition.objects.exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--slug", "not a slug", "--slug"), ("--currency", "RUPEE", "--currency")],
)
def test_create_coalition_refuses_bad_input(db, option, value, message):
    args = {"--slug": "ok", "--name": "OK", option: value}

    with pytest.raises(CommandError, match=message):
        run("create_coalition", *[part for pair in args.items() for part in pair])
    assert not Coalition.objects.exists()


# --- seed_demo ----------------------------------------------------------------------------


def _staff_groups(*names: str) -> None:
    """Exactly these staff groups exist (another part of the project creates them)."""
    Group.objects.filter(name__in=[group for _, group in demo.STAFF_LOGINS]).exclude(
        name__in=names
    ).delete()
    for name in names:
        Group.objects.get_or_create(name=name)


def test_seed_demo_builds_a_mall_with_a_clean_ledger(db):
    _staff_groups("Finance", "Support")

    out, _ = run("seed_demo", *SMALL)

    coalition = Coalition.objects.get(slug="demo")
    assert coalition.name == "Phoenix Marketcity Demo"
    assert ledger_verify(coalition) == []
    # Tenants across the categories, each with 1-2 stores and 1-3 tills
    tenants = Tenant.objects.filter(coalition=coalition)
    assert tenants.count() == 30
    assert len({tenant.category for tenant in tenants}) >= 10
    for tenant in tenants:
        assert 1 <= Store.objects.filter(tenant=tenant).count() <= 2
        assert 1 <= Till.objects.filter(tenant=tenant).count() <= 3
    rates = TenantRate.objects.filter(tenant__coalition=coalition)
    assert rates.filter(price_per_point__gt=1).exists()  # margin
    assert rates.filter(reimbursement_per_point__lt=1).exists()  # variance
    # Members: 60, phones in E.164, some without a phone, a minor with a guardian's consent
    members = Member.objects.filter(coalition=coalition)
    assert members.count() == 60
    phones = Identifier.objects.filter(coalition=coalition, kind=IdentifierKind.PHONE)
    assert all(phone.value.startswith("+9198") and len(phone.value) == 13 for phone in phones)
    assert members.exclude(identifiers__kind=IdentifierKind.PHONE).exists()
    assert members.filter(adult_declared=False, guardian_consent_at__isnull=False).exists()
    marketing = ConsentEvent.objects.filter(
        member__coalition=coalition, purpose__code="marketing_mall"
    )
    assert {event.given for event in marketing} == {True, False}
    # History: every kind of posting, a merge, and one balance negative after a late refund
    kinds = Counter(Journal.objects.filter(coalition=coalition).values_list("kind", flat=True))
    for kind in (JournalKind.EARN, JournalKind.BURN, JournalKind.EARN_REVERSAL):
        assert kinds[kind] > 0, kind
    assert kinds[JournalKind.EXPIRE] >= 3  # the lapsed shoppers' 13-month-old points
    assert MergeRecord.objects.filter(coalition=coalition).count() == 1
    assert members.filter(status=MemberStatus.MERGED).count() == 1
    # Both campaigns gave points in the history: the tenant's and the mall's
    funders = set(
        CampaignAward.objects.filter(campaign__coalition=coalition)
        .values_list("campaign__kind", flat=True)
        .distinct()
    )
    assert funders == {CampaignKind.MULTIPLIER, CampaignKind.CROSS_SHOP}
    assert Account.objects.filter(
        coalition=coalition, kind=AccountKind.MEMBER_POINTS, balance__lt=0
    ).exists()
    refunds = Journal.objects.filter(coalition=coalition, kind=JournalKind.EARN_REVERSAL)
    assert any(
        Journal.objects.filter(
            member=refund.member, kind=JournalKind.BURN, posted_at__lt=refund.posted_at
        ).exists()
        for refund in refunds
    )
    # Maker-checker: one large adjustment approved by Finance, one waiting
    assert AdjustmentRequest.objects.filter(coalition=coalition, status="approved").count() == 1
    assert AdjustmentRequest.objects.filter(coalition=coalition, status="pending").count() == 1
    # Staff: admin, and one login per existing staff group
    assert "admin / admin" in out and "finance / finance" in out
    assert "privacy" not in out
    assert User.objects.get(username="finance").groups.filter(name="Finance").exists()
    assert not User.objects.filter(username="privacy").exists()
    # Settlement: every month that has ended is closed, each reconciliation balanced, the
    # liability rolling forward month to month, and statements.
    periods = list(Period.objects.filter(coalition=coalition).order_by("month"))
    assert len(periods) >= 2
    for period in periods:
        reconciliation = period.reconciliations.get()
        assert reconciliation.balanced, reconciliation.discrepancies
        assert reconciliation.ledger_checked_at is not None
        # Each month's closing liability, rolled forward from the months before, is what the
        # members' entries up to the month's end add up to.
        assert reconciliation.closing_points == _member_points_before(coalition, period.ends_at)
        assert period.statements.exists()
    # The demo's tenants are created today, so a closed month has a statement for each tenant
    # with postings in it or a balance carried into it.
    active = Journal.objects.filter(
        coalition=coalition,
        tenant__isnull=False,
        posted_at__gte=periods[-1].starts_at,
        posted_at__lt=periods[-1].ends_at,
    )
    expected = set(active.values_list("tenant_id", flat=True)) | set(
        periods[-2].statements.exclude(net_amount=0).values_list("tenant_id", flat=True)
    )
    assert set(periods[-1].statements.values_list("tenant_id", flat=True)) >= expected
    assert len(expected) >= 10
    assert "kesari-manager / kesari-manager" in out and "/portal/" in out


def test_seed_demo_logins_work(db):
    _staff_groups("Support")

    run("seed_demo", *SMALL)

    for username in ("admin", "support"):
        assert Client().login(username=username, password=username), username
        assert User.objects.get(username=username).is_staff
    assert User.objects.get(username="admin").is_superuser
    portal = Client()
    assert portal.login(username="kesari-manager", password="kesari-manager")
    statements = portal.get("/portal/statements/")
    assert statements.status_code == 200
    assert b"Kesari Threads" in statements.content


LEDGER_MODELS: tuple[type[Model], ...] = (
    Coalition,
    Tenant,
    Store,
    Till,
    TenantRate,
    Member,
    Identifier,
    ConsentEvent,
    Account,
    Journal,
    Entry,
    Lot,
    LotConsumption,
    AdjustmentRequest,
    MergeRecord,
    User,
    Group,
)


def test_seed_demo_twice_creates_nothing_new(db):
    run("seed_demo", *SMALL)
    before = {model.__name__: model._default_manager.count() for model in LEDGER_MODELS}

    out, _ = run("seed_demo", *SMALL)

    after = {model.__name__: model._default_manager.count() for model in LEDGER_MODELS}
    assert after == before
    assert "already loaded" in out
    assert "admin / admin" in out


def test_seed_demo_is_deterministic_for_a_seed(db):
    now = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)

    def load(seed: int) -> tuple[list[Any], list[Any]]:
        with transaction.atomic():
            demo.demo_load(members=25, months=1, seed=seed, now=now)
            members = sorted(
                Member.objects.filter(coalition__slug="demo").values_list("name", "enrolled_at")
            )
            journals = sorted(
                Journal.objects.filter(coalition__slug="demo").values_list(
                    "kind", "points", "amount", "receipt", "occurred_at"
                )
            )
            transaction.set_rollback(True)
        return members, journals

    first = load(7)
    assert load(7) == first
    assert load(8) != first


def test_seed_demo_fails_loudly_when_the_ledger_does_not_verify(db, monkeypatch):
    monkeypatch.setattr(
        demo, "ledger_verify", lambda coalition: [Discrepancy("pool", "coalition 1", "off by 1")]
    )

    with pytest.raises(CommandError, match="does not verify"):
        run("seed_demo", "--members", "20", "--months", "1")


def test_seed_demo_says_when_an_earlier_load_was_interrupted(db):
    coalition_create(slug="demo", name=demo.DEMO_NAME + demo.LOADING)

    _, err = run("seed_demo", *SMALL)

    assert "incomplete" in err
    assert not Member.objects.exists()


@pytest.mark.parametrize(("option", "value"), [("--months", "13"), ("--members", "5")])
def test_seed_demo_refuses_sizes_out_of_range(db, option, value):
    with pytest.raises(CommandError, match=f"argument {option}"):
        run("seed_demo", option, value)
    assert not Coalition.objects.exists()


def _member_points_before(coalition, moment) -> int:
    from coalition.models import AccountKind, Entry

    held = Entry.objects.filter(
        account__coalition=coalition,
        account__kind__in=[AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING],
        journal__posted_at__lt=moment,
    ).aggregate(total=Sum("points"))["total"]
    return int(held or 0)
