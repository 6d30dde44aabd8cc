"""A marketing audience export: only the members who consent to the purpose at export time, as a
CSV for staff with the permission, recorded once in the personal data access log, never stored,
and never reachable by a tenant."""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.tests.admin_client import client_for, messages_of, staff_user
from coalition.tests.factories import CoalitionFactory
from consent.models import ConsentPurpose, DataAccess, DataAccessAction
from consent.services import consents_record
from consent.services.audience import (
    COLUMNS,
    AudienceFile,
    audience_export,
    audience_members,
)
from members.models import Identifier, IdentifierKind, Member, MemberStatus
from members.tests.factories import MemberFactory
from tenants.services import tenant_user_create

MARKETING = ConsentPurpose.MARKETING_MALL
PASSWORD = "correct horse battery"


def purpose(coalition, code: str) -> ConsentPurpose:
    return ConsentPurpose.objects.get(coalition=coalition, code=code)


def rows_of(export: AudienceFile) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(export.content.decode("utf-8")))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def refs(export: AudienceFile) -> set[str]:
    return {row["member_ref"] for row in rows_of(export)}


def with_perms(user: User, *codenames: str) -> User:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)  # a fresh instance: permissions are cached per instance


def marketer(username: str = "marketer") -> User:
    return with_perms(staff_user(username), "view_consentpurpose", "export_audience")


@pytest.fixture
def ago():
    """A moment well before now, for consent events with a known order."""
    start = timezone.now() - timedelta(days=30)
    return lambda days: start + timedelta(days=days)


@pytest.fixture
def people(coalition, ago):
    """Members of Phoenix in each state a marketing consent can be in, and one of another mall."""

    def enrol(name: str, email: str, coalition=coalition) -> Member:
        return MemberFactory.create(
            coalition=coalition, name=name, email=email, phone=None, now=ago(0)
        )

    def record(member: Member, given: bool, day: int, code: str = MARKETING) -> None:
        consents_record(member=member, consents={code: given}, at=ago(day))

    gave = enrol("Asha Gave", "asha@example.com")
    record(gave, True, 1)
    withdrew = enrol("Bina Withdrew", "bina@example.com")
    record(withdrew, True, 1)
    record(withdrew, False, 5)
    again = enrol("Chitra Again", "chitra@example.com")
    record(again, False, 1)
    record(again, True, 6)
    never = enrol("Dev Never", "dev@example.com")
    same_second = enrol("Esha Same Second", "esha@example.com")
    record(same_second, True, 7)
    record(same_second, False, 7)  # same instant: the later event (higher id) stands
    left = enrol("Farah Left", "farah@example.com")
    record(left, True, 1)
    consents_record(member=left, consents={ConsentPurpose.PROGRAMME: False}, at=ago(8))
    erased = enrol("Gita Erased", "gita@example.com")
    record(erased, True, 1)
    # The status alone must keep the member out, whatever the log says.
    Member.objects.filter(pk=erased.pk).update(status=MemberStatus.ERASED)
    other_mall = CoalitionFactory.create(slug="other", name="Other Mall")
    foreign = enrol("Hari Elsewhere", "hari@example.com", coalition=other_mall)
    record(foreign, True, 1)
    return {
        "gave": gave,
        "withdrew": withdrew,
        "again": again,
        "never": never,
        "same_second": same_second,
        "left": left,
        "erased": erased,
        "foreign": foreign,
    }


def test_only_members_who_consent_now_are_exported(coalition, people, staff):
    marketing = purpose(coalition, MARKETING)
    assert people["left"].status == MemberStatus.WITHDRAWN

    export = audience_export(purpose=marketing, actor=staff, why="November newsletter")

    assert refs(export) == {str(people["gave"].pk), str(people["again"].pk)}
    assert export.rows == 2
    assert export.filename.startswith("audience-phoenix-marketing_mall-")
    assert export.filename.endswith(".csv")
    by_ref = {row["member_ref"]: row for row in rows_of(export)}
    again = by_ref[str(people["again"].pk)]
    assert again["name"] == "Chitra Again"
    assert again["email"] == "chitra@example.com"
    assert again["phone"] == ""
    assert again["notice_version"] == "v1"
    given_event = people["again"].consent_events.get(purpose=marketing, given=True)
    assert again["consent_given_at"] == given_event.at.isoformat(timespec="seconds")


def test_the_audience_as_of_an_earlier_moment_uses_the_log_up_to_then(coalition, people, ago):
    marketing = purpose(coalition, MARKETING)
    # On day 2 Bina had given and not yet withdrawn; Chitra had withdrawn and not yet given.
    then = audience_members(purpose=marketing, at=ago(2))
    assert set(then.values_list("pk", flat=True)) == {
        people["gave"].pk,
        people["withdrew"].pk,
    }


def test_consent_is_read_at_export_time(coalition, people, staff):
    marketing = purpose(coalition, MARKETING)
    first = audience_export(purpose=marketing, actor=staff, why="October newsletter")
    assert str(people["gave"].pk) in refs(first)

    # When Asha withdraws after the first export
    consents_record(member=people["gave"], consents={MARKETING: False})

    # Then the next export leaves her out, and each export has its own record
    second = audience_export(purpose=marketing, actor=staff, why="November newsletter")
    assert refs(second) == {str(people["again"].pk)}
    assert list(
        DataAccess.objects.filter(action=DataAccessAction.AUDIENCE_EXPORT)
        .order_by("at", "id")
        .values_list("why", "rows")
    ) == [("October newsletter", 2), ("November newsletter", 1)]


def test_one_access_record_per_export_and_no_copy_kept(coalition, people, staff):
    marketing = purpose(coalition, MARKETING)
    now = timezone.now()

    export = audience_export(
        purpose=marketing, actor=staff, why="  Diwali offers, sent by the mall  ", now=now
    )

    record = DataAccess.objects.get()
    assert (record.action, record.user, record.purpose, record.member) == (
        DataAccessAction.AUDIENCE_EXPORT,
        staff,
        marketing,
        None,
    )
    assert (record.at, record.rows, record.what) == (now, 2, "name, phone, email")
    assert record.why == "Diwali offers, sent by the mall"
    assert export.rows == record.rows
    # The personal data access log holds the reason and the count, not the list.
    assert "asha@example.com" not in str(
        list(DataAccess.objects.values_list("what", "why", "rows"))
    )


@pytest.mark.parametrize("why", ["", "   "])
def test_a_blank_reason_is_refused(coalition, people, staff, why):
    with pytest.raises(InvalidRequest) as refused:
        audience_export(purpose=purpose(coalition, MARKETING), actor=staff, why=why)
    assert refused.value.field == "why"
    assert not DataAccess.objects.exists()


@pytest.mark.parametrize("code", [ConsentPurpose.PROGRAMME, ConsentPurpose.ANALYTICS])
def test_programme_and_analytics_have_no_audience(coalition, people, staff, code):
    with pytest.raises(InvalidRequest) as refused:
        audience_export(purpose=purpose(coalition, code), actor=staff, why="Newsletter")
    assert refused.value.field == "purpose"
    assert "not a marketing purpose" in refused.value.detail
    assert not DataAccess.objects.exists()


def test_only_current_identifiers_and_formula_cells_quoted(coalition, staff, ago):
    marketing = purpose(coalition, MARKETING)
    sly = MemberFactory.create(
        coalition=coalition,
        name='=HYPERLINK("http://evil.example","x")',
        email="-sly@example.com",
        phone="+919812345678",
        consents={ConsentPurpose.PROGRAMME: True, MARKETING: True},
    )
    # An old phone and email given up: not in the file.
    for kind, value in ((IdentifierKind.PHONE, "+919800000001"), (IdentifierKind.EMAIL, "o@x.in")):
        Identifier.objects.create(
            coalition=coalition, member=sly, kind=kind, value=value, released_at=ago(1)
        )

    export = audience_export(purpose=marketing, actor=staff, why="Newsletter")

    (row,) = rows_of(export)
    assert row["member_ref"] == str(sly.pk)
    assert row["name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert row["email"] == "'-sly@example.com"
    assert row["phone"] == "+919812345678"  # E.164 as it is: digits cannot carry a formula
    assert b"+919800000001" not in export.content and b"o@x.in" not in export.content


def test_a_tenant_purpose_has_its_own_audience(coalition, people, till_a, staff):
    tenant_marketing = ConsentPurpose.objects.create(
        coalition=coalition,
        code="marketing_apparel",
        name="Offers from Apparel Co",
        tenant=till_a.tenant,
    )
    consents_record(member=people["never"], consents={"marketing_apparel": True})

    export = audience_export(purpose=tenant_marketing, actor=staff, why="Apparel sale")

    assert refs(export) == {str(people["never"].pk)}


# The admin page


@pytest.fixture
def tenant_purpose(coalition, till_a) -> ConsentPurpose:
    return ConsentPurpose.objects.create(
        coalition=coalition,
        code="marketing_apparel",
        name="Offers from Apparel Co",
        tenant=till_a.tenant,
    )


def audience_url(one: ConsentPurpose) -> str:
    return reverse("admin:consent_consentpurpose_audience", args=[one.pk])


def test_without_the_permission_no_button_and_403(coalition, people):
    marketing = purpose(coalition, MARKETING)
    # Sees and edits purposes, but may not export an audience
    client = client_for(
        with_perms(staff_user("editor"), "view_consentpurpose", "change_consentpurpose")
    )

    page = client.get(reverse("admin:consent_consentpurpose_change", args=[marketing.pk]))
    assert page.status_code == 200
    assert b"Publish a new notice version" in page.content
    assert audience_url(marketing).encode() not in page.content
    assert b"Export the audience" not in page.content

    assert client.get(audience_url(marketing)).status_code == 403
    refused = client.post(audience_url(marketing), {"why": "Newsletter"})
    assert refused.status_code == 403
    assert str(people["gave"].pk).encode() not in refused.content
    assert not DataAccess.objects.exists()


def test_with_the_permission_the_button_the_form_and_the_download(coalition, people):
    marketing = purpose(coalition, MARKETING)
    user = marketer()
    client = client_for(user)

    page = client.get(reverse("admin:consent_consentpurpose_change", args=[marketing.pk]))
    assert audience_url(marketing).encode() in page.content
    assert "Export the audience…" in page.content.decode()

    form = client.get(audience_url(marketing))
    assert form.status_code == 200
    html = form.content.decode()
    assert '<strong id="audience-size">2 members</strong>' in html
    assert 'name="why"' in html
    assert "tenant-warning" not in html  # the mall's own marketing
    assert str(people["gave"].pk) not in html  # the page shows a count, not the list

    blank = client.post(audience_url(marketing), {"why": "  "})
    assert blank.status_code == 200 and b"This field is required" in blank.content
    assert not DataAccess.objects.exists()

    download = client.post(audience_url(marketing), {"why": "November newsletter"})
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv; charset=utf-8"
    assert download["Content-Disposition"].startswith(
        'attachment; filename="audience-phoenix-marketing_mall-'
    )
    assert "no-store" in download["Cache-Control"]
    body = download.content.decode()
    assert body.splitlines()[0] == ",".join(COLUMNS)
    assert {line.split(",")[0] for line in body.splitlines()[1:]} == {
        str(people["gave"].pk),
        str(people["again"].pk),
    }
    record = DataAccess.objects.get()
    assert (record.user, record.why, record.rows) == (user, "November newsletter", 2)


def test_no_button_and_no_export_for_a_purpose_that_is_not_marketing(coalition, people):
    analytics = purpose(coalition, ConsentPurpose.ANALYTICS)
    client = client_for(marketer())

    page = client.get(reverse("admin:consent_consentpurpose_change", args=[analytics.pk]))
    assert page.status_code == 200 and b"Export the audience" not in page.content

    refused = client.post(audience_url(analytics), {"why": "Newsletter"}, follow=True)
    assert any("not a marketing purpose" in message for message in messages_of(refused))
    assert not DataAccess.objects.exists()


def test_a_tenant_purpose_page_says_the_mall_sends_and_the_tenant_gets_no_list(tenant_purpose):
    client = client_for(marketer())

    page = client.get(reverse("admin:consent_consentpurpose_change", args=[tenant_purpose.pk]))
    assert audience_url(tenant_purpose).encode() in page.content

    html = client.get(audience_url(tenant_purpose)).content.decode()
    assert 'id="tenant-warning"' in html
    assert "the mall sends these\n  messages on behalf of Apparel Co" in html
    assert "The list must not be given to\n  Apparel Co or to any other tenant" in html
    assert '<strong id="audience-size">0 members</strong>' in html


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tenant_portal_user_cannot_reach_the_export(tenant_purpose, people, method):
    consents_record(member=people["gave"], consents={"marketing_apparel": True})
    tenant_user_create(
        tenant=tenant_purpose.tenant, username="a-manager", role="manager", password=PASSWORD
    )
    client = Client()
    assert client.login(username="a-manager", password=PASSWORD)

    response = getattr(client, method)(audience_url(tenant_purpose), {"why": "Our own list"})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert "Content-Disposition" not in response
    assert str(people["gave"].pk).encode() not in response.content
    assert not DataAccess.objects.exists()
