"""Campaigns in the back office: programme managers create them without code, with clear errors,
and a campaign that has given points keeps its terms."""

from datetime import timedelta
from decimal import Decimal

from django.urls import reverse
from django.utils import timezone

from coalition.models import Campaign, CampaignKind
from coalition.services import points_earn
from coalition.services.staff import FINANCE, PROGRAMME_MANAGER
from coalition.tests.admin_client import client_for, staff_user

ADD = reverse("admin:coalition_campaign_add")


def form(coalition, **fields):
    today = timezone.localdate()
    data = {
        "coalition": coalition.pk,
        "name": "Diwali double points",
        "kind": CampaignKind.MULTIPLIER,
        "starts_on": today.isoformat(),
        "ends_on": (today + timedelta(days=6)).isoformat(),
        "weekdays": ["5", "6"],
        "multiplier": "2.00",
        "min_categories": "2",
        "min_amount": "0",
    }
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


def test_a_programme_manager_creates_a_weekend_multiplier(coalition, till_a):
    manager = client_for(staff_user("pm", PROGRAMME_MANAGER))
    response = manager.post(ADD, form(coalition, tenant=till_a.tenant.pk, member_cap="500"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = Campaign.objects.get(name="Diwali double points")
    assert (created.kind, created.tenant, created.multiplier) == (
        CampaignKind.MULTIPLIER,
        till_a.tenant,
        Decimal("2.00"),
    )
    assert created.weekdays == [5, 6]
    assert created.member_cap == 500
    assert created.created_by is not None and created.created_by.username == "pm"
    # And the list shows it with its days
    listing = manager.get(reverse("admin:coalition_campaign_changelist"))
    assert "Sat, Sun" in listing.content.decode()


def test_the_form_says_what_is_missing(coalition, till_a):
    manager = client_for(staff_user("pm", PROGRAMME_MANAGER))
    # A multiplier without a tenant, and of 1
    response = manager.post(ADD, form(coalition, multiplier="1.00"))
    errors = response.context["adminform"].form.errors
    assert "A multiplier runs at one tenant" in errors["tenant"][0]
    assert "above 1" in errors["multiplier"][0]
    # A bonus naming a tenant and no points
    response = manager.post(
        ADD,
        form(coalition, kind=CampaignKind.CROSS_SHOP, tenant=till_a.tenant.pk, multiplier=None),
    )
    errors = response.context["adminform"].form.errors
    assert "leave the tenant out" in errors["tenant"][0]
    assert "bonus in points" in errors["bonus_points"][0]
    # Dates the wrong way round
    today = timezone.localdate()
    response = manager.post(
        ADD,
        form(
            coalition,
            tenant=till_a.tenant.pk,
            ends_on=(today - timedelta(days=1)).isoformat(),
        ),
    )
    assert response.status_code == 200
    assert not Campaign.objects.exists()


def test_terms_are_read_only_once_it_gave_points(coalition, till_a, member):
    campaign = Campaign.objects.create(
        coalition=coalition,
        name="Double",
        kind=CampaignKind.MULTIPLIER,
        tenant=till_a.tenant,
        multiplier=Decimal("2.00"),
        starts_on=timezone.localdate() - timedelta(days=1),
        ends_on=timezone.localdate() + timedelta(days=1),
    )
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="A-1")
    manager = client_for(staff_user("pm", PROGRAMME_MANAGER))
    url = reverse("admin:coalition_campaign_change", args=[campaign.pk])
    page = manager.get(url)
    assert "40 points" in page.content.decode()  # given so far
    assert "multiplier" not in page.context["adminform"].form.fields
    # Pausing it with a reason is still possible, and the multiplier stays
    response = manager.post(
        url,
        {
            "name": "Double",
            "paused": "on",
            "starts_on": campaign.starts_on.isoformat(),
            "ends_on": campaign.ends_on.isoformat(),
            "weekdays": [str(d) for d in range(7)],
            "member_cap": "",
            "total_cap": "",
            "change_reason": "Budget spent",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert campaign.paused and campaign.multiplier == Decimal("2.00")


def test_finance_sees_campaigns_but_cannot_change_them(coalition):
    finance = client_for(staff_user("fin", FINANCE))
    assert finance.get(reverse("admin:coalition_campaign_changelist")).status_code == 200
    assert finance.get(ADD).status_code == 403


def test_the_earns_page_says_which_campaign_gave_which_points(coalition, till_a, member):
    Campaign.objects.create(
        coalition=coalition,
        name="Double at Apparel",
        kind=CampaignKind.MULTIPLIER,
        tenant=till_a.tenant,
        multiplier=Decimal("2.00"),
        starts_on=timezone.localdate() - timedelta(days=1),
        ends_on=timezone.localdate() + timedelta(days=1),
    )
    journal = points_earn(
        till=till_a, member=member, amount=Decimal("4000.00"), receipt="A-1"
    ).journal
    finance = client_for(staff_user("fin", FINANCE))
    page = finance.get(reverse("admin:coalition_journal_change", args=[journal.pk]))
    awards = page.context["inline_admin_formsets"][1]
    assert awards.opts.verbose_name_plural.startswith("campaign points")
    rows = [(str(form.original.campaign), form.original.points) for form in awards]
    assert rows == [("Double at Apparel", 40)]
