"""Members in the back office: search as staff type, balances without N+1, and the actions that
call services (enrol, adjust, merge)."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from coalition.models import Account, AccountKind, Journal, JournalKind
from coalition.services import points_earn
from coalition.tests.admin_client import client_for, messages_of, staff_user
from consent.selectors import consent_state
from members.models import Identifier, IdentifierKind, Member, MemberStatus, MergeRecord
from members.selectors import member_balances
from members.services import members_merge
from members.tests.factories import MemberFactory

CHANGELIST = "admin:members_member_changelist"


@pytest.fixture
def support(db):
    return client_for(staff_user("helpdesk", "Support"))


@pytest.fixture
def superuser_client(db):
    return client_for(User.objects.create_superuser("root", "root@example.com", "x"))


@pytest.fixture
def shoppers(coalition):
    """Three members who differ by one digit or one letter, so a loose search would find two."""
    return {
        "phone": MemberFactory.create(coalition=coalition, phone="+919812345678", name="Asha"),
        "near_phone": MemberFactory.create(coalition=coalition, phone="+919812345679"),
        "email": MemberFactory.create(coalition=coalition, email="Priya.S@Example.com"),
        "card": MemberFactory.create(coalition=coalition, card="7000 1234 5678 9012"),
    }


def found(client, term):
    response = client.get(reverse(CHANGELIST), {"q": term})
    assert response.status_code == 200
    return {member.pk for member in response.context["cl"].result_list}


@pytest.mark.parametrize(
    "typed", ["98123 45678", "+91 98123 45678", "098123-45678", "+919812345678"]
)
def test_search_finds_a_member_by_phone_typed_any_way(support, shoppers, typed):
    assert found(support, typed) == {shoppers["phone"].pk}


def test_search_finds_a_member_by_email_in_any_case(support, shoppers):
    assert found(support, "PRIYA.S@EXAMPLE.COM") == {shoppers["email"].pk}
    assert found(support, " priya.s@example.com ") == {shoppers["email"].pk}


def test_search_finds_a_member_by_card_exactly(support, shoppers):
    assert found(support, "7000123456789012") == {shoppers["card"].pk}
    assert found(support, "7000 1234 5678 9012") == {shoppers["card"].pk}
    assert found(support, "700012345678901") == set()  # one digit short: no partial match


def test_search_by_member_id_short_id_and_name(support, shoppers):
    member = shoppers["phone"]
    assert found(support, str(member.pk)) == {member.pk}
    assert member.pk in found(support, str(member.pk)[:8])
    assert found(support, "asha") == {member.pk}


def test_search_finds_nobody_for_an_unknown_or_malformed_term(support, shoppers):
    assert found(support, "98123 00000") == set()
    assert found(support, "nobody@example.com") == set()
    assert found(support, "+++") == set()


def test_merged_member_is_found_through_the_survivor(support, shoppers, staff):
    old, new = shoppers["near_phone"], shoppers["phone"]
    members_merge(survivor=new, merged=old, actor=staff, reason="Same person")
    assert found(support, "98123 45679") == {new.pk}


def test_changelist_shows_balances_without_a_query_per_member(
    support, coalition, till_a, django_assert_max_num_queries
):
    # Given members with points
    for index in range(3):
        member = MemberFactory.create(coalition=coalition)
        points_earn(till=till_a, member=member, amount=Decimal("1000.00"), receipt=f"R{index}")
    with django_assert_max_num_queries(100) as few:
        response = support.get(reverse(CHANGELIST))
    # Then balances and masked identifiers are on the page
    rows = list(response.context["cl"].result_list)
    assert [row.points_balance for row in rows] == [10, 10, 10]
    assert b"s\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2@example.com" in response.content  # s•••@
    # And ten more members cost no more queries
    for _ in range(10):
        MemberFactory.create(coalition=coalition)
    with django_assert_max_num_queries(len(few.captured_queries)):
        support.get(reverse(CHANGELIST))


def test_member_page_shows_balance_and_history_links_and_nothing_editable(
    support, coalition, till_a, member
):
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="A-1")
    response = support.get(reverse("admin:members_member_change", args=[member.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "<strong>40</strong> spendable" in content
    assert f"journal/?member__in={member.pk}" in content
    assert response.context["adminform"].form.fields == {}  # every field read-only
    assert 'name="_save"' not in content


def test_member_change_post_changes_nothing(support, member):
    url = reverse("admin:members_member_change", args=[member.pk])
    support.post(url, {"name": "Someone else", "status": "erased", "balance": 999})
    member.refresh_from_db()
    assert (member.status, member_balances(member).balance) == (MemberStatus.ACTIVE, 0)
    assert member.name != "Someone else"


def test_adjust_action_posts_a_journal_and_moves_the_balance(
    support, coalition, member, assert_ledger_clean
):
    # When Support picks the member in the list and runs "Adjust points"
    response = support.post(
        reverse(CHANGELIST), {"action": "adjust_points", "_selected_action": [member.pk]}
    )
    adjust = reverse("admin:members_member_adjust", args=[member.pk])
    assert response.status_code == 302 and response["Location"] == adjust
    assert support.get(adjust).status_code == 200
    # And fills in the form
    done = support.post(adjust, {"points": 250, "reason": "Till was down"}, follow=True)

    # Then a journal is posted, the balance moves and the ledger stays sound
    assert any("balance is now 250" in text for text in messages_of(done))
    journal = Journal.objects.get(member=member, kind=JournalKind.ADJUST)
    assert (journal.points, journal.reason) == (250, "Till was down")
    assert member_balances(member).balance == 250
    assert_ledger_clean(coalition)


def test_adjust_refusal_is_shown_on_the_form_not_as_a_server_error(support, member):
    url = reverse("admin:members_member_adjust", args=[member.pk])
    response = support.post(url, {"points": -5, "reason": "Clawback"})
    assert response.status_code == 200
    assert "spendable points" in str(response.context["adminform"].form.non_field_errors())
    assert not Journal.objects.filter(member=member).exists()


def test_adjust_needs_a_reason_and_points(support, member):
    url = reverse("admin:members_member_adjust", args=[member.pk])
    response = support.post(url, {"points": 0, "reason": ""})
    assert set(response.context["adminform"].form.errors) == {"points", "reason"}
    assert member_balances(member).balance == 0


def test_privacy_officer_cannot_adjust(member):
    privacy = client_for(staff_user("dpo", "Privacy officer"))
    url = reverse("admin:members_member_adjust", args=[member.pk])
    assert privacy.get(url).status_code == 403
    assert privacy.post(url, {"points": 10, "reason": "x"}).status_code == 403
    assert member_balances(member).balance == 0


def test_merge_action_moves_the_balance_to_the_survivor(
    support, coalition, till_a, assert_ledger_clean
):
    # Given two records of one person, both with points
    survivor = MemberFactory.create(coalition=coalition, phone="+919812345678")
    merged = MemberFactory.create(coalition=coalition, email="asha@example.com")
    points_earn(till=till_a, member=survivor, amount=Decimal("1000.00"), receipt="R1")
    points_earn(till=till_a, member=merged, amount=Decimal("3000.00"), receipt="R2")
    selected = {"action": "merge_members", "_selected_action": [survivor.pk, merged.pk]}

    # When staff run "Merge" and see the form
    form_page = support.post(reverse(CHANGELIST), selected)
    assert form_page.status_code == 200
    assert b"Merge two members" in form_page.content
    # And choose the survivor and give a reason
    done = support.post(
        reverse(CHANGELIST),
        {**selected, "apply": "1", "survivor": str(survivor.pk), "reason": "Same person"},
        follow=True,
    )

    # Then the balance and identifiers moved, and the merge is audited
    assert any("Merged" in text for text in messages_of(done))
    merged.refresh_from_db()
    assert (merged.status, merged.merged_into_id) == (MemberStatus.MERGED, survivor.pk)
    assert member_balances(survivor).balance == 40
    assert member_balances(merged).balance == 0
    assert Identifier.objects.filter(member=survivor, kind=IdentifierKind.EMAIL).exists()
    record = MergeRecord.objects.get(merged=merged)
    assert (record.points_moved, record.merged_by.username) == (30, "helpdesk")
    assert_ledger_clean(coalition)


def test_merge_needs_exactly_two_members(support, coalition):
    members = [MemberFactory.create(coalition=coalition) for _ in range(3)]
    response = support.post(
        reverse(CHANGELIST),
        {"action": "merge_members", "_selected_action": [m.pk for m in members]},
        follow=True,
    )
    assert "Select exactly two members to merge." in messages_of(response)
    assert not MergeRecord.objects.exists()


def test_merge_refusal_is_shown_as_an_error(support, coalition, staff):
    a, b, c = (MemberFactory.create(coalition=coalition) for _ in range(3))
    members_merge(survivor=a, merged=b, actor=staff, reason="first")
    response = support.post(
        reverse(CHANGELIST),
        {
            "action": "merge_members",
            "_selected_action": [b.pk, c.pk],
            "apply": "1",
            "survivor": str(c.pk),
            "reason": "b is already merged",
        },
    )
    assert response.status_code == 200
    assert "must be active" in str(response.context["adminform"].form.non_field_errors())
    assert MergeRecord.objects.count() == 1


def test_privacy_officer_has_no_merge_or_adjust_action(member):
    privacy = client_for(staff_user("dpo", "Privacy officer"))
    response = privacy.get(reverse(CHANGELIST))
    actions = response.context["cl"].model_admin.get_actions(response.wsgi_request)
    assert set(actions) == set()


def test_enrol_in_admin_goes_through_member_enrol(superuser_client, coalition):
    response = superuser_client.post(
        reverse("admin:members_member_add"),
        {
            "coalition": coalition.pk,
            "phone": "98123 45678",
            "name": "Asha",
            "adult": "on",
            "consent_programme": "on",
            "consent_analytics": "on",
        },
    )
    member = Member.objects.get(identifiers__value="+919812345678")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:members_member_change", args=[member.pk])
    # The service's work is all there: accounts, a generated card, the consent log
    kinds = set(Account.objects.filter(member=member).values_list("kind", flat=True))
    assert kinds == {AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING}
    assert member.identifiers.filter(kind=IdentifierKind.CARD).exists()
    assert consent_state(member) == {"programme": True, "marketing_mall": False, "analytics": True}


def test_enrol_a_minor_needs_a_guardian(superuser_client, coalition):
    data = {"coalition": coalition.pk, "email": "kid@example.com", "consent_programme": "on"}
    refused = superuser_client.post(reverse("admin:members_member_add"), data)
    assert refused.status_code == 200
    assert "adult" in refused.context["adminform"].form.errors
    assert not Member.objects.exists()

    data |= {"guardian_name": "Meera", "guardian_consent": "on"}
    enrolled = superuser_client.post(reverse("admin:members_member_add"), data)
    assert enrolled.status_code == 302
    member = Member.objects.get()
    assert (member.adult_declared, member.guardian_name) == (False, "Meera")
    assert member.guardian_consent_at is not None


def test_enrol_refuses_an_identifier_already_enrolled(superuser_client, coalition, shoppers):
    response = superuser_client.post(
        reverse("admin:members_member_add"),
        {
            "coalition": coalition.pk,
            "phone": "+91 98123 45678",
            "adult": "on",
            "consent_programme": "on",
        },
    )
    assert response.status_code == 200
    assert "already enrolled" in str(response.context["adminform"].form.non_field_errors())
    assert Member.objects.count() == len(shoppers)


def test_support_enrols_but_the_privacy_officer_cannot(support):
    assert support.get(reverse("admin:members_member_add")).status_code == 200
    privacy = client_for(staff_user("dpo", "Privacy officer"))
    assert privacy.get(reverse("admin:members_member_add")).status_code == 403


def test_journals_link_shows_the_history_of_the_member_and_of_those_merged_into_it(
    coalition, till_a, staff
):
    # Given a survivor and a merged member, each with an earn before the merge
    survivor = MemberFactory.create(coalition=coalition)
    merged = MemberFactory.create(coalition=coalition)
    other = MemberFactory.create(coalition=coalition)
    for index, someone in enumerate((survivor, merged, other)):
        points_earn(till=till_a, member=someone, amount=Decimal("1000.00"), receipt=f"R{index}")
    members_merge(survivor=survivor, merged=merged, actor=staff, reason="Same person")
    support = client_for(staff_user("helpdesk", "Support"))

    # When Support follows the "Journals" link on the survivor's page
    page = support.get(reverse("admin:members_member_change", args=[survivor.pk]))
    link = page.context["history_ids"]
    journals = support.get(reverse("admin:coalition_journal_changelist"), {"member__in": link})

    # Then both members' earns and the merge are listed, and nobody else's
    assert journals.status_code == 200
    listed = {(j.kind, j.member_id) for j in journals.context["cl"].result_list}
    assert listed == {
        (JournalKind.EARN, survivor.pk),
        (JournalKind.EARN, merged.pk),
        (JournalKind.MERGE, merged.pk),
    }
