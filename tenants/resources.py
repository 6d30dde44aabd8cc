"""Tenants, their stores and tills, to and from CSV (the Import and Export buttons on each list,
and the background import job). Foreign keys are named by slug and code, never by id, so a
file exported from one installation reads into another.

    tenants: slug,name,legal_name,category
    stores:  tenant,code,name,unit
    tills:   tenant,store,code

Import creates; it never changes what exists (names, rates and status are edited in the admin):
a row whose tenant slug, store code or till code already exists in the programme is skipped, so
the same file twice creates nothing twice, and an export read back is all skipped rows. Tenants
are created by `tenant_create` (which opens their ledger accounts) and tills by `till_create`.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from import_export.results import Result
from tablib import Dataset

from coalition.errors import DomainError
from coalition.models import Coalition
from coalition.resources import FileCheckedResource, column, columns_refusal, refusal
from tenants.models import Store, Tenant, TenantCategory, Till
from tenants.services import tenant_create, till_create

TENANT_COLUMNS = ("slug", "name", "legal_name", "category")
STORE_COLUMNS = ("tenant", "code", "name", "unit")
TILL_COLUMNS = ("tenant", "store", "code")


class ProgrammeResource(FileCheckedResource):
    """Rows of one programme (`coalition=`, chosen on the import form or the job)."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, *, coalition: Coalition | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coalition = coalition
        self._tenants: dict[str, Tenant | None] = {}

    def header_refusal(self, headers: list[str]) -> str | None:
        if self.coalition is None:
            return "Choose the programme."
        return columns_refusal(headers, self.COLUMNS)

    def _tenant(self, slug: str) -> Tenant | None:
        if slug not in self._tenants:
            self._tenants[slug] = Tenant.objects.filter(coalition=self.coalition, slug=slug).first()
        return self._tenants[slug]

    def import_instance(self, instance: Any, row: Any, **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = {key: list(messages) for key, messages in exc.message_dict.items()}
        for name in self.COLUMNS:
            optional = name in errors or name in ("legal_name", "unit")
            if not optional and not getattr(instance, self.fields[name].attribute):
                errors[name] = ["This column is required."]
        self.row_check(instance, errors)
        if errors:
            raise ValidationError(errors)

    def row_check(self, instance: Any, errors: dict[str, list[str]]) -> None:
        """Check the row's references, adding to `errors`."""

    def import_data(self, dataset: Dataset, **kwargs: Any) -> Result:
        self._tenants = {}  # a tenant created by an earlier file (or chunk) is found again
        return super().import_data(dataset, **kwargs)


class TenantResource(ProgrammeResource):
    COLUMNS = TENANT_COLUMNS
    slug = column("slug")
    name = column("name")
    legal_name = column("legal_name")
    category = column("category")

    class Meta:
        model = Tenant
        fields = TENANT_COLUMNS
        import_order = export_order = TENANT_COLUMNS
        force_init_instance = True
        use_transactions = True
        report_skipped = True

    def row_check(self, instance: Tenant, errors: dict[str, list[str]]) -> None:
        instance.category = instance.category.lower()
        if instance.category and instance.category not in TenantCategory.values:
            errors["category"] = [f"One of {', '.join(TenantCategory.values)}."]

    def skip_row(
        self, instance: Tenant, original: Any, row: Any, import_validation_errors: Any = None
    ) -> bool:
        return not import_validation_errors and self._tenant(instance.slug) is not None

    def save_instance(self, instance: Tenant, is_create: bool, row: Any, **kwargs: Any) -> None:
        assert self.coalition is not None
        if self._is_dry_run(kwargs) and not self._is_using_transactions(kwargs):
            return
        try:
            tenant = tenant_create(
                coalition=self.coalition,
                slug=instance.slug,
                name=instance.name,
                legal_name=instance.legal_name,
                category=instance.category,
            )
        except DomainError as exc:
            raise refusal(exc, TENANT_COLUMNS) from exc
        instance.pk, instance.coalition, instance._state.adding = tenant.pk, self.coalition, False
        self._tenants[tenant.slug] = tenant

    def get_queryset(self) -> QuerySet[Tenant]:
        return Tenant.objects.order_by("coalition_id", "slug")


class StoreResource(ProgrammeResource):
    COLUMNS = STORE_COLUMNS
    tenant = column("tenant", attribute="file_tenant")
    code = column("code")
    name = column("name")
    unit = column("unit")

    class Meta:
        model = Store
        fields = STORE_COLUMNS
        import_order = export_order = STORE_COLUMNS
        force_init_instance = True
        use_transactions = True
        report_skipped = True

    def dehydrate_tenant(self, store: Store) -> str:
        return store.tenant.slug

    def row_check(self, instance: Store, errors: dict[str, list[str]]) -> None:
        slug = instance.file_tenant  # type: ignore[attr-defined]
        tenant = self._tenant(slug) if slug else None
        if slug and tenant is None:
            errors["tenant"] = ["No tenant with this slug in the programme."]
        if tenant is not None:
            instance.tenant = tenant

    def skip_row(
        self, instance: Store, original: Any, row: Any, import_validation_errors: Any = None
    ) -> bool:
        if import_validation_errors:
            return False
        return Store.objects.filter(tenant=instance.tenant, code=instance.code).exists()

    def save_instance(self, instance: Store, is_create: bool, row: Any, **kwargs: Any) -> None:
        # A store has no service of its own: its fields are checked like the admin's form.
        instance.full_clean()
        super().save_instance(instance, is_create, row, **kwargs)

    def get_queryset(self) -> QuerySet[Store]:
        return Store.objects.select_related("tenant").order_by("tenant__slug", "code")


class TillResource(ProgrammeResource):
    COLUMNS = TILL_COLUMNS
    tenant = column("tenant", attribute="file_tenant")
    store = column("store", attribute="file_store")
    code = column("code")

    class Meta:
        model = Till
        fields = TILL_COLUMNS
        import_order = export_order = TILL_COLUMNS
        force_init_instance = True
        use_transactions = True
        report_skipped = True

    def dehydrate_tenant(self, till: Till) -> str:
        return till.tenant.slug

    def dehydrate_store(self, till: Till) -> str:
        return till.store.code

    def row_check(self, instance: Till, errors: dict[str, list[str]]) -> None:
        slug = instance.file_tenant  # type: ignore[attr-defined]
        tenant = self._tenant(slug) if slug else None
        if slug and tenant is None:
            errors["tenant"] = ["No tenant with this slug in the programme."]
        store_code = instance.file_store  # type: ignore[attr-defined]
        if tenant is not None:
            instance.tenant = tenant
            store = Store.objects.filter(tenant=tenant, code=store_code).first()
            if store_code and store is None:
                errors["store"] = ["No store with this code at this tenant (import stores first)."]
            if store is not None:
                instance.store = store

    def skip_row(
        self, instance: Till, original: Any, row: Any, import_validation_errors: Any = None
    ) -> bool:
        if import_validation_errors:
            return False
        return Till.objects.filter(tenant=instance.tenant, code=instance.code).exists()

    def save_instance(self, instance: Till, is_create: bool, row: Any, **kwargs: Any) -> None:
        if self._is_dry_run(kwargs) and not self._is_using_transactions(kwargs):
            return
        try:
            till = till_create(
                tenant=instance.tenant, store_code=instance.store.code, till_code=instance.code
            )
        except DomainError as exc:
            raise refusal(exc, TILL_COLUMNS) from exc
        instance.pk, instance._state.adding = till.pk, False

    def get_queryset(self) -> QuerySet[Till]:
        return Till.objects.select_related("tenant", "store").order_by("tenant__slug", "code")
