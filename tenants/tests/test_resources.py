"""Tenants, stores and tills to and from CSV: created through the services (a tenant gets its
ledger accounts), foreign keys by slug and code, existing rows skipped, exports read back."""

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from tablib import Dataset

from coalition.models import Account, AccountKind, Coalition
from coalition.tests.admin_client import client_for, messages_of, staff_user
from tenants.models import Store, Tenant, Till
from tenants.resources import StoreResource, TenantResource, TillResource

TENANTS = (
    "slug,name,legal_name,category\n"
    "apparel,Apparel Co,Apparel Co Pvt Ltd,apparel\n"
    "cinema,Big Screen,,ENTERTAINMENT\n"
)
STORES = "tenant,code,name,unit\napparel,main,Apparel main,G-12\ncinema,hall,Cinema,3F\n"
TILLS = "tenant,store,code\napparel,main,a1\napparel,main,a2\ncinema,hall,c1\n"


def run(resource: Any, text: str, dry_run: bool = False) -> Any:
    dataset = Dataset().load(text, format="csv")
    return resource.import_data(dataset, dry_run=dry_run, use_transactions=True)


def types(result: Any) -> list[str]:
    return [row.import_type for row in result.rows]


def test_tenants_stores_and_tills_are_created_once(coalition: Coalition) -> None:
    assert types(run(TenantResource(coalition=coalition), TENANTS, dry_run=True)) == ["new"] * 2
    assert not Tenant.objects.exists()

    assert types(run(TenantResource(coalition=coalition), TENANTS)) == ["new", "new"]
    assert types(run(StoreResource(coalition=coalition), STORES)) == ["new", "new"]
    assert types(run(TillResource(coalition=coalition), TILLS)) == ["new"] * 3

    cinema = Tenant.objects.get(slug="cinema")
    assert (cinema.name, cinema.legal_name, cinema.category, cinema.coalition) == (
        "Big Screen",
        "Big Screen",
        "entertainment",
        coalition,
    )
    # tenant_create opened its ledger accounts.
    assert set(Account.objects.filter(tenant=cinema).values_list("kind", flat=True)) == {
        AccountKind.TENANT_ISSUED,
        AccountKind.TENANT_REDEEMED,
    }
    assert Store.objects.get(tenant=cinema).unit == "3F"
    assert sorted(Till.objects.values_list("tenant__slug", "store__code", "code")) == [
        ("apparel", "main", "a1"),
        ("apparel", "main", "a2"),
        ("cinema", "hall", "c1"),
    ]

    for resource, text in (
        (TenantResource, TENANTS),
        (StoreResource, STORES),
        (TillResource, TILLS),
    ):
        assert set(types(run(resource(coalition=coalition), text))) == {"skip"}
    assert (Tenant.objects.count(), Store.objects.count(), Till.objects.count()) == (2, 2, 3)


def test_an_export_reads_back_as_skipped_rows(coalition: Coalition) -> None:
    for resource, text in (
        (TenantResource, TENANTS),
        (StoreResource, STORES),
        (TillResource, TILLS),
    ):
        run(resource(coalition=coalition), text)

    exported = TillResource().export()

    assert exported.headers == ["tenant", "store", "code"]
    assert exported.csv.replace("\r\n", "\n") == TILLS
    assert types(run(TillResource(coalition=coalition), exported.csv)) == ["skip"] * 3
    assert TenantResource().export().dict[1] == {
        "slug": "cinema",
        "name": "Big Screen",
        "legal_name": "Big Screen",
        "category": "entertainment",
    }


def test_rows_naming_what_does_not_exist_are_refused(coalition: Coalition) -> None:
    run(TenantResource(coalition=coalition), TENANTS)

    tenants = run(
        TenantResource(coalition=coalition), "slug,name,legal_name,category\nx y,,,shoes\n"
    )
    stores = run(StoreResource(coalition=coalition), "tenant,code,name,unit\nnope,main,M,\n")
    tills = run(TillResource(coalition=coalition), "tenant,store,code\napparel,nope,a9\n")

    assert {row.number: row.error_dict for row in tenants.invalid_rows} == {
        1: {
            "name": ["This column is required."],
            "category": [
                "One of apparel, footwear, food, grocery, entertainment, electronics, beauty, "
                "pharmacy, home, jewellery, books, services."
            ],
        }
    }
    assert {row.number: row.error_dict for row in stores.invalid_rows} == {
        1: {"tenant": ["No tenant with this slug in the programme."]}
    }
    assert {row.number: row.error_dict for row in tills.invalid_rows} == {
        1: {"store": ["No store with this code at this tenant (import stores first)."]}
    }
    assert (Tenant.objects.count(), Store.objects.count(), Till.objects.count()) == (2, 0, 0)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def test_the_tenant_list_imports_and_exports_csv(coalition: Coalition, media: Path) -> None:
    manager = client_for(staff_user("pm", "Programme manager"))
    preview = manager.post(
        reverse("admin:tenants_tenant_import"),
        {
            "resource": "0",
            "coalition": str(coalition.pk),
            "format": "0",
            "import_file": SimpleUploadedFile("tenants.csv", TENANTS.encode(), "text/csv"),
        },
    )
    assert types(preview.context["result"]) == ["new", "new"]
    form = preview.context["confirm_form"]

    done = manager.post(
        reverse("admin:tenants_tenant_process_import"),
        {name: form[name].value() for name in form.fields},
    )

    assert messages_of(done) == [
        "Import finished: 2 new, 0 updated, 0 deleted and 0 skipped tenants."
    ]
    assert Tenant.objects.count() == 2
    exported = manager.post(
        reverse("admin:tenants_tenant_export"),
        {"format": "0", "resource": "0", **{f"tenantresource_{c}": "on" for c in TENANT_COLS}},
    )
    assert exported.status_code == 200
    assert exported.content.decode().splitlines()[0] == "slug,name,legal_name,category"
    finance = client_for(staff_user("money", "Finance"))  # views tenants, adds none
    assert finance.get(reverse("admin:tenants_tenant_import")).status_code == 403


TENANT_COLS = ("slug", "name", "legal_name", "category")
