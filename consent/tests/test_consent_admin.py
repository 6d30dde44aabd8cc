"""Staff publish versioned notice texts and give or withdraw a member's consent in one click."""

import pytest
from django.urls import reverse

from coalition.services.staff import FINANCE, PRIVACY_OFFICER, PROGRAMME_MANAGER, SUPPORT
from coalition.tests.admin_client import client_for, messages_of, staff_user
from coalition.tests.factories import CoalitionFactory
from consent.models import ConsentEvent, ConsentNotice, ConsentPurpose
from consent.selectors import consent_overview, consent_state
from members.models import Identifier, MemberStatus


def purpose(coalition, code: str) -> ConsentPurpose:
    return ConsentPurpose.objects.get(coalition=coalition, code=code)


def test_a_new_coalition_has_an_english_text_for_each_purpose(coalition):
    for one in ConsentPurpose.objects.filter(coalition=coalition):
        notice = ConsentNotice.objects.get(purpose=one, version=one.notice_version, language="en")
        assert len(notice.text) > 20


def test_publishing_a_version_keeps_the_old_texts_and_new_consents_cite_it(coalition, member):
    marketing = purpose(coalition, ConsentPurpose.MARKETING_MALL)
    client = client_for(staff_user("pm", PROGRAMME_MANAGER))
    url = reverse("admin:consent_consentpurpose_publish", args=[marketing.pk])
    # Refusals: no English, a language without its text, a version that exists
    page = client.post(url, {"version": "v2", "text_en": ""})
    assert page.status_code == 200 and b"This field is required" in page.content
    page = client.post(url, {"version": "v2", "text_en": "Offers", "language_1": "hi"})
    assert b"Give both the language and its text" in page.content
    page = client.post(url, {"version": "v1", "text_en": "Offers"})
    assert b"exists already" in page.content
    assert ConsentNotice.objects.filter(purpose=marketing).count() == 1
    # When a manager publishes v2 in English and Hindi
    done = client.post(
        url,
        {"version": "v2", "text_en": "Offers by SMS", "language_1": "hi", "text_1": "ऑफ़र"},
        follow=True,
    )
    assert any("v2 is in force" in message for message in messages_of(done))
    marketing.refresh_from_db()
    assert marketing.notice_version == "v2"
    assert set(
        ConsentNotice.objects.filter(purpose=marketing).values_list("version", "language")
    ) == {("v1", "en"), ("v2", "en"), ("v2", "hi")}
    # Then a consent recorded from now on cites v2, and the page says the old one is outdated
    support = client_for(staff_user("desk", SUPPORT))
    support.post(
        reverse("admin:members_member_consent", args=[member.pk]),
        {"consent": f"{marketing.pk}:1"},
    )
    event = ConsentEvent.objects.filter(member=member, purpose=marketing).latest("at")
    assert (event.given, event.notice_version) == (True, "v2")


def test_support_gives_and_withdraws_in_one_click_each(coalition, member):
    user = staff_user("desk", SUPPORT)
    client = client_for(user)
    change = reverse("admin:members_member_change", args=[member.pk])
    url = reverse("admin:members_member_consent", args=[member.pk])
    analytics = purpose(coalition, ConsentPurpose.ANALYTICS)
    page = client.get(change).content.decode()
    assert 'id="consents"' in page and "never asked" in page
    assert f'value="{analytics.pk}:1"' in page
    # Give
    client.post(url, {"consent": f"{analytics.pk}:1"})
    assert consent_state(member)[ConsentPurpose.ANALYTICS] is True
    # Withdraw: as easy as giving, one click
    page = client.get(change).content.decode()
    assert f'value="{analytics.pk}:0"' in page
    client.post(url, {"consent": f"{analytics.pk}:0"})
    assert consent_state(member)[ConsentPurpose.ANALYTICS] is False
    events = ConsentEvent.objects.filter(member=member, purpose=analytics).order_by("at", "id")
    assert [(e.given, e.channel, e.by_user) for e in events] == [
        (True, "staff", user),
        (False, "staff", user),
    ]
    states = {state.purpose.code: state for state in consent_overview(member)}
    assert states[ConsentPurpose.ANALYTICS].given is False
    assert states[ConsentPurpose.PROGRAMME].given is True


def test_withdrawing_programme_consent_asks_then_ends_the_membership(coalition, member):
    client = client_for(staff_user("privacy", PRIVACY_OFFICER))
    url = reverse("admin:members_member_consent", args=[member.pk])
    programme = purpose(coalition, ConsentPurpose.PROGRAMME)
    # The first click asks for a confirmation and changes nothing
    page = client.post(url, {"consent": f"{programme.pk}:0"})
    assert page.status_code == 200 and b"ends this membership" in page.content
    member.refresh_from_db()
    assert member.status == MemberStatus.ACTIVE
    # Confirmed, the membership ends and the identifiers are free again
    done = client.post(url, {"consent": f"{programme.pk}:0", "confirm": "1"}, follow=True)
    assert any("membership has ended" in message for message in messages_of(done))
    member.refresh_from_db()
    assert member.status == MemberStatus.WITHDRAWN
    assert not Identifier.objects.filter(member=member, released_at__isnull=True).exists()
    assert consent_state(member)[ConsentPurpose.PROGRAMME] is False


@pytest.mark.parametrize("group", [FINANCE, PROGRAMME_MANAGER])
def test_roles_without_the_consent_permission_are_refused(coalition, member, group):
    client = client_for(staff_user("someone", group))
    analytics = purpose(coalition, ConsentPurpose.ANALYTICS)
    response = client.post(
        reverse("admin:members_member_consent", args=[member.pk]),
        {"consent": f"{analytics.pk}:1"},
    )
    assert response.status_code == 403
    assert not ConsentEvent.objects.filter(member=member, purpose=analytics).exists()


def test_a_purpose_of_another_coalition_is_refused(coalition, member):
    other = CoalitionFactory.create(slug="other", name="Other Mall")
    foreign = purpose(other, ConsentPurpose.ANALYTICS)
    client = client_for(staff_user("desk", SUPPORT))
    done = client.post(
        reverse("admin:members_member_consent", args=[member.pk]),
        {"consent": f"{foreign.pk}:1"},
        follow=True,
    )
    assert any("Choose a purpose" in message for message in messages_of(done))
    assert not ConsentEvent.objects.filter(member=member, purpose=foreign).exists()


def test_support_sees_the_members_consent_history_not_the_whole_log(coalition, member):
    client = client_for(staff_user("desk", SUPPORT))
    page = client.get(reverse("admin:members_member_change", args=[member.pk]))
    assert b'id="consent_events-group"' in page.content  # the history inline
    assert b"Membership of the programme" in page.content
    log = client.get(reverse("admin:consent_consentevent_changelist"))
    assert log.status_code == 403
