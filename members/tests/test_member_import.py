"""Member import through the admin's own pages: upload and preview (a dry run), then confirm.

Every member is enrolled by member_enrol with the import channel; a refused row shows in the
preview and nothing is written; a second import of the same file enrols nobody; the uploaded file
waits under MEDIA_ROOT until the import is confirmed."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from coalition.models import AccountKind, Coalition, Journal, JournalKind, Lot
from coalition.tests.admin_client import client_for, messages_of, staff_user
from consent.models import ConsentChannel, ConsentEvent
from members.models import Identifier, Member
from members.tests.factories import MemberFactory
from tenants.models import Tenant, Till

IMPORT = "admin:members_member_import"
PROCESS = "admin:members_member_process_import"
CHANGELIST = "admin:members_member_changelist"

GOOD = (
    "phone,email,card,name,adult,marketing_mall,analytics\n"
    "98123 45678, Asha.R@Example.COM ,,Asha R,yes,yes,\n"
    "+91 99876-54321,,7000 1111 2222 3333,Vikram,TRUE,no,1\n"
)


@pytest.fixture
def support(db: Any) -> Any:
    """Support staff (who enrol members) also allowed to bring opening balances, which are
    ledger postings (`coalition.import_transactions`)."""
    user = staff_user("helpdesk", "Support")
    user.user_permissions.add(Permission.objects.get(codename="import_transactions"))
    return user


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def upload(client: Client, coalition: Coalition, text: str, tenant: Tenant | None = None) -> Any:
    """The upload form posted as the browser does; the response is the preview page."""
    return client.post(
        reverse(IMPORT),
        {
            "resource": "0",
            "coalition": str(coalition.pk),
            "tenant": str(tenant.pk) if tenant else "",
            "format": "0",
            "import_file": SimpleUploadedFile("old-programme.csv", text.encode(), "text/csv"),
        },
    )


def confirm(client: Client, preview: Any) -> Any:
    form = preview.context["confirm_form"]
    # As the browser sends the hidden fields: an empty one (no tenant) as an empty string.
    data = {name: form[name].value() for name in form.fields}
    return client.post(reverse(PROCESS), {k: "" if v is None else v for k, v in data.items()})


def waiting_files(media: Path) -> list[Path]:
    return sorted(p for p in media.rglob("*") if p.is_file())


def test_a_good_file_is_previewed_then_enrols_members_through_the_service(
    coalition: Coalition, support: Any, media: Path
) -> None:
    client = client_for(support)

    preview = upload(client, coalition, GOOD)

    assert preview.status_code == 200
    result = preview.context["result"]
    assert not result.has_errors() and not result.has_validation_errors()
    assert [row.import_type for row in result.rows] == ["new", "new"]
    assert b"+919812345678" in preview.content  # the preview shows the normalised phone
    assert Member.objects.count() == 0  # a dry run writes nothing
    assert ConsentEvent.objects.count() == 0
    # The file waits for the confirmation under MEDIA_ROOT, where an erasure can find it.
    name = preview.context["confirm_form"]["import_file_name"].value()
    assert waiting_files(media) == [media / "django-import-export" / name]
    assert b"Asha R" in waiting_files(media)[0].read_bytes()

    done = confirm(client, preview)

    assert done.status_code == 302 and done.url == reverse(CHANGELIST)
    assert messages_of(done) == [
        "Import finished: 2 new, 0 updated, 0 deleted and 0 skipped members."
    ]
    assert waiting_files(media) == []  # deleted once imported
    logged = LogEntry.objects.filter(action_flag=ADDITION, user=support)
    assert sorted(logged.values_list("object_repr", flat=True)) == sorted(
        str(member) for member in Member.objects.all()
    )
    asha = Member.objects.get(identifiers__value="+919812345678")
    assert (asha.coalition, asha.name, asha.adult_declared) == (coalition, "Asha R", True)
    assert (asha.enrolled_via, asha.enrolled_by_user) == ("import", support)
    identifiers = dict(asha.identifiers.values_list("kind", "value"))
    assert identifiers["email"] == "asha.r@example.com"
    assert len(identifiers["card"]) == 16 and identifiers["card"].startswith("7")  # generated
    vikram = Member.objects.get(name="Vikram")
    assert dict(vikram.identifiers.values_list("kind", "value")) == {
        "phone": "+919987654321",
        "card": "7000111122223333",
    }
    events = {
        (event.member.name, event.purpose.code): (event.given, event.channel, event.by_user)
        for event in ConsentEvent.objects.select_related("member", "purpose")
    }
    assert events == {
        # Programme consent is implied by being in the file; a blank cell records nothing.
        ("Asha R", "programme"): (True, ConsentChannel.IMPORT, support),
        ("Asha R", "marketing_mall"): (True, ConsentChannel.IMPORT, support),
        ("Vikram", "programme"): (True, ConsentChannel.IMPORT, support),
        ("Vikram", "marketing_mall"): (False, ConsentChannel.IMPORT, support),
        ("Vikram", "analytics"): (True, ConsentChannel.IMPORT, support),
    }


def test_a_bad_row_is_shown_in_the_preview_and_nothing_is_written(
    coalition: Coalition, support: Any, media: Path
) -> None:
    client = client_for(support)
    text = (
        "phone,email,card,name,adult,marketing_mall,analytics\n"
        "9812345678,,,Good,yes,no,no\n"
        "12,,,Bad phone,yes,no,no\n"
        "9812345679,,,Minor,no,no,no\n"
        "9812345670,,,Unsure,maybe,no,no\n"
    )

    preview = upload(client, coalition, text)

    assert preview.status_code == 200
    assert "confirm_form" not in preview.context  # nothing to confirm
    result = preview.context["result"]
    refused = {row.number: row.error_dict for row in result.invalid_rows}
    assert refused == {
        2: {"phone": ["Not a valid phone number."]},
        3: {"adult": ["A member under 18 is enrolled by staff with a guardian's consent."]},
        4: {"adult": ["Write yes or no, not 'maybe'."]},
    }
    assert b"Some rows failed to validate" in preview.content
    assert b"Not a valid phone number." in preview.content
    # The good row was enrolled inside the dry run only: rolled back with the rest.
    assert Member.objects.count() == 0
    assert Identifier.objects.count() == 0
    assert ConsentEvent.objects.count() == 0


def test_a_file_with_wrong_columns_is_refused_as_a_whole(
    coalition: Coalition, support: Any, media: Path
) -> None:
    preview = upload(client_for(support), coalition, "mobile,name,adult\n9812345678,A,yes\n")

    result = preview.context["result"]
    assert [str(error.error) for error in result.base_errors] == [
        "The header row must name exactly the columns phone, email, card, name, adult, "
        "marketing_mall, analytics (missing columns: phone, email, card, marketing_mall, "
        "analytics; unknown columns: mobile)."
    ]
    assert result.rows == [] and "confirm_form" not in preview.context
    assert Member.objects.count() == 0


def test_importing_the_same_file_twice_enrols_nobody_twice(
    coalition: Coalition, support: Any, media: Path
) -> None:
    client = client_for(support)
    confirm(client, upload(client, coalition, GOOD))
    assert Member.objects.count() == 2
    before = set(Identifier.objects.values_list("member_id", "kind", "value"))
    events = ConsentEvent.objects.count()

    again = upload(client, coalition, GOOD)

    result = again.context["result"]
    assert not result.has_validation_errors()
    assert [row.import_type for row in result.rows] == ["skip", "skip"]
    assert again.content.count(b"Skipped") == 2
    done = confirm(client, again)
    assert messages_of(done) == [
        "Import finished: 0 new, 0 updated, 0 deleted and 2 skipped members."
    ]
    assert Member.objects.count() == 2
    assert set(Identifier.objects.values_list("member_id", "kind", "value")) == before
    assert ConsentEvent.objects.count() == events


def test_a_row_naming_an_enrolled_identifier_is_skipped_not_merged(
    coalition: Coalition, support: Any, media: Path
) -> None:
    known = MemberFactory.create(coalition=coalition, phone="+919812345678", email="a@x.in")
    client = client_for(support)
    text = (
        "phone,email,card,name,adult,marketing_mall,analytics\n"
        "098123 45678,new@example.com,,Known by phone,yes,yes,yes\n"
        ",b@example.com,,New,yes,,\n"
    )

    preview = upload(client, coalition, text)
    assert [row.import_type for row in preview.context["result"].rows] == ["skip", "new"]
    confirm(client, preview)

    assert Member.objects.count() == 2
    # The skipped row changed nothing about the member it names.
    assert dict(known.identifiers.values_list("kind", "value"))["email"] == "a@x.in"
    assert not Identifier.objects.filter(value="new@example.com").exists()
    assert Member.objects.exclude(pk=known.pk).get().name == "New"


def test_staff_without_add_member_cannot_import(
    coalition: Coalition, support: Any, media: Path
) -> None:
    manager = client_for(staff_user("manager", "Programme manager"))  # views members only

    assert manager.get(reverse(IMPORT)).status_code == 403
    assert upload(manager, coalition, GOOD).status_code == 403
    refused = manager.post(
        reverse(PROCESS),
        {
            "import_file_name": "x",
            "original_file_name": "x.csv",
            "format": "0",
            "coalition": str(coalition.pk),
        },
    )
    assert refused.status_code == 403
    assert Member.objects.count() == 0
    assert waiting_files(media) == []
    import_url = reverse(IMPORT).encode()
    assert import_url not in manager.get(reverse(CHANGELIST)).content
    # Support (members.add_member) sees the button on the member list.
    assert import_url in client_for(support).get(reverse(CHANGELIST)).content


def test_the_import_page_offers_the_programme_and_csv_only(
    coalition: Coalition, support: Any
) -> None:
    page = client_for(support).get(reverse(IMPORT))

    assert page.status_code == 200
    form = page.context["form"]
    assert form["coalition"].value() == coalition.pk  # the only coalition, chosen already
    assert [label for _, label in form.fields["format"].choices] == ["csv"]
    assert page.context["fields_list"][0][1] == [
        "phone",
        "email",
        "card",
        "name",
        "adult",
        "marketing_mall",
        "analytics",
        "opening_balance",
        "opening_expires_on",
    ]


def test_a_row_refused_at_confirmation_rolls_back_the_whole_file(
    coalition: Coalition, support: Any, media: Path
) -> None:
    client = client_for(support)
    preview = upload(client, coalition, GOOD)
    assert [row.import_type for row in preview.context["result"].rows] == ["new", "new"]
    # After the preview, the programme's region changes: row 1's local number is no longer valid.
    Coalition.objects.filter(pk=coalition.pk).update(phone_region="US")

    done = confirm(client, preview)

    assert done.status_code == 302 and done.url == reverse(IMPORT)
    assert messages_of(done) == [
        "Nothing was imported: row 1 was refused since the preview. Upload the file again to "
        "see why."
    ]
    assert Member.objects.count() == 0  # row 2 was valid, and rolled back with row 1
    assert ConsentEvent.objects.count() == 0


OPENING = (
    "phone,email,card,name,adult,marketing_mall,analytics,opening_balance,opening_expires_on\n"
    "9812345678,,,Asha,yes,yes,,120,\n"
    ",v@example.com,,Vikram,yes,,,0,\n"
    "9812345679,,,Old points,yes,,,75,2099-12-31\n"
)


def balance(member: Member) -> int:
    return member.accounts.get(kind=AccountKind.MEMBER_POINTS).balance


def test_opening_balances_become_lots_funded_by_the_old_programmes_tenant(
    coalition: Coalition, till_a: Till, support: Any, media: Path, assert_ledger_clean: Any
) -> None:
    client = client_for(support)
    preview = upload(client, coalition, OPENING, tenant=till_a.tenant)
    assert [row.import_type for row in preview.context["result"].rows] == ["new"] * 3
    assert not Journal.objects.exists()  # the dry run wrote nothing

    confirm(client, preview)

    asha = Member.objects.get(name="Asha")
    assert balance(asha) == 120
    assert balance(Member.objects.get(name="Vikram")) == 0
    lots = {
        lot.member.name: (lot.points, lot.funding_tenant, lot.expires_on)
        for lot in Lot.objects.select_related("member", "funding_tenant")
    }
    assert lots["Old points"][:2] == (75, till_a.tenant)
    assert str(lots["Old points"][2]) == "2099-12-31"
    assert lots["Asha"][:2] == (120, till_a.tenant)
    journal = Journal.objects.get(member=asha)
    assert (journal.kind, journal.tenant, journal.created_by) == (
        JournalKind.OPENING,
        till_a.tenant,
        support,
    )
    assert journal.receipt.startswith("admin import ") and journal.receipt.endswith(" row 1")
    assert_ledger_clean(coalition)

    # The same file again: nobody is enrolled twice, no balance is opened twice.
    again = upload(client, coalition, OPENING, tenant=till_a.tenant)
    assert [row.import_type for row in again.context["result"].rows] == ["skip"] * 3
    confirm(client, again)
    assert Member.objects.count() == 3
    assert Journal.objects.filter(kind=JournalKind.OPENING).count() == 2
    assert balance(asha) == 120


def test_a_member_already_enrolled_gets_the_balance_of_another_tenants_programme(
    coalition: Coalition, till_a: Till, till_b: Till, support: Any, media: Path
) -> None:
    client = client_for(support)
    confirm(client, upload(client, coalition, OPENING, tenant=till_a.tenant))
    food = (
        "phone,email,card,name,adult,marketing_mall,analytics,opening_balance\n"
        "+91 98123 45678,,,Asha at the food court,yes,no,,30\n"
    )

    preview = upload(client, coalition, food, tenant=till_b.tenant)

    assert [row.import_type for row in preview.context["result"].rows] == ["update"]
    confirm(client, preview)
    asha = Member.objects.get(name="Asha")  # not renamed, consents untouched
    assert balance(asha) == 150
    assert Member.objects.count() == 3
    assert set(Lot.objects.filter(member=asha).values_list("funding_tenant__slug", "points")) == {
        ("apparel", 120),
        ("food-court", 30),
    }


def test_a_refused_opening_balance_leaves_no_half_member(
    coalition: Coalition, till_a: Till, support: Any, media: Path
) -> None:
    client = client_for(support)
    text = (
        "phone,email,card,name,adult,marketing_mall,analytics,opening_balance,opening_expires_on\n"
        "9812345678,,,Expired,yes,yes,,50,2001-01-01\n"
        "9812345679,,,No tenant,yes,yes,,-5,\n"
    )

    preview = upload(client, coalition, text, tenant=till_a.tenant)

    refused = {row.number: row.error_dict for row in preview.context["result"].invalid_rows}
    assert refused == {
        1: {
            "opening_expires_on": [
                "These points expired on 2001-01-01: there is nothing to bring in."
            ]
        },
        2: {"opening_balance": ["A whole number of points (0 or more), not '-5'."]},
    }
    # Row 1 was enrolled inside the dry run, then its opening refused: the row rolled back whole.
    assert Member.objects.count() == 0
    assert Identifier.objects.count() == 0
    assert ConsentEvent.objects.count() == 0


def test_opening_balances_need_the_tenant_that_funds_them(
    coalition: Coalition, support: Any, media: Path
) -> None:
    preview = upload(client_for(support), coalition, OPENING)

    refused = {row.number: row.error_dict for row in preview.context["result"].invalid_rows}
    assert sorted(refused) == [1, 3]  # the row with 0 points needs no tenant
    assert refused[1] == {
        "opening_balance": [
            "Opening balances need the tenant whose old programme the file comes from (it "
            "funds them), chosen by staff who may import ledger postings."
        ]
    }
    assert Member.objects.count() == 0


def test_a_big_file_is_sent_to_the_imports_page(
    coalition: Coalition, support: Any, media: Path, settings: Any
) -> None:
    rows = "".join(f"98{index:08d},,,M{index},yes,,\n" for index in range(2001))

    page = upload(client_for(support), coalition, GOOD.splitlines()[0] + "\n" + rows)

    assert page.status_code == 200 and "result" not in page.context
    assert "This file has 2,001 rows" in str(page.context["form"].non_field_errors())
    assert waiting_files(media) == []
    assert Member.objects.count() == 0


def test_opening_balances_need_the_ledger_postings_permission(coalition, till_a):
    # Support alone enrols members, but cannot choose a tenant to fund opening balances
    plain = client_for(staff_user("desk", "Support"))
    page = plain.get(reverse("admin:members_member_import"))
    assert page.status_code == 200
    assert "tenant" not in page.context["form"].fields
    # And the background import refuses it too
    from coalition.errors import InvalidRequest
    from coalition.services.imports import import_job_create

    with pytest.raises(InvalidRequest, match="permission to import ledger postings"):
        import_job_create(
            coalition=coalition,
            kind="members",
            upload=SimpleUploadedFile("old.csv", b"phone,email,card,name,adult\n,a@b.c,,A,yes\n"),
            user=User.objects.get(username="desk"),
            tenant=till_a.tenant,
        )
