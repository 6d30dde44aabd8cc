"""Tenants of the mall, their stores and tills, and the rates they settle points at."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from rest_framework_api_key.models import AbstractAPIKey


class TenantCategory(models.TextChoices):
    APPAREL = "apparel", "Apparel"
    FOOTWEAR = "footwear", "Footwear"
    FOOD = "food", "Food court & restaurants"
    GROCERY = "grocery", "Grocery"
    ENTERTAINMENT = "entertainment", "Entertainment"
    ELECTRONICS = "electronics", "Electronics"
    BEAUTY = "beauty", "Beauty & personal care"
    PHARMACY = "pharmacy", "Pharmacy"
    HOME = "home", "Home & living"
    JEWELLERY = "jewellery", "Jewellery & accessories"
    BOOKS = "books", "Books, toys & gifts"
    SERVICES = "services", "Services"


class TenantStatus(models.TextChoices):
    ONBOARDING = "onboarding", "Onboarding"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    EXITED = "exited", "Exited"


class Tenant(models.Model):
    coalition = models.ForeignKey(
        "coalition.Coalition", on_delete=models.PROTECT, related_name="tenants"
    )
    slug = models.SlugField()
    name = models.CharField(max_length=200)
    legal_name = models.CharField(max_length=200, blank=True, default="")
    category = models.CharField(max_length=20, choices=TenantCategory.choices)
    status = models.CharField(
        max_length=12, choices=TenantStatus.choices, default=TenantStatus.ONBOARDING
    )
    may_issue = models.BooleanField(default=True)
    may_redeem = models.BooleanField(default=True)
    redeem_only_allowed = models.BooleanField(
        default=False,
        help_text="Staff allow this tenant to honour points without issuing any (free rider).",
    )
    arrears_since = models.DateField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set by the daily arrears job while a statement it owes is unpaid past its due "
        "date: its tills may not redeem. Cleared by payment or a waiver.",
    )
    exit_on = models.DateField(
        null=True,
        blank=True,
        editable=False,
        help_text="The first day the tenant is out of the programme (the coalition's time zone): "
        "from then its tills are refused and its keys revoked; its portal stays, read only.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["coalition", "slug"], name="tenant_slug_per_coalition"),
            models.CheckConstraint(
                condition=Q(may_redeem=False) | Q(may_issue=True) | Q(redeem_only_allowed=True),
                name="tenant_no_redeem_without_issue_unless_allowed",
                violation_error_message=(
                    "A tenant that redeems must also issue, unless staff explicitly allow it."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TenantRate(models.Model):
    """Settlement rates in force from `effective_from` (in the coalition's time zone) onwards.

    A posting uses the rates in force on its occurred date and records them; a later rate never
    rewrites history.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="rates")
    effective_from = models.DateField()
    price_per_point = models.DecimalField(
        max_digits=10, decimal_places=4, help_text="What the tenant pays per point it issues."
    )
    reimbursement_per_point = models.DecimalField(
        max_digits=10, decimal_places=4, help_text="What the tenant is paid per point it honours."
    )

    class Meta:
        ordering = ["tenant", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "effective_from"], name="tenant_rate_one_per_date"
            ),
            models.CheckConstraint(
                condition=Q(price_per_point__gte=Decimal("0"))
                & Q(reimbursement_per_point__gte=Decimal("0")),
                name="tenant_rate_nonnegative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} from {self.effective_from}"


class Store(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="stores")
    code = models.SlugField(max_length=40)
    name = models.CharField(max_length=200)
    unit = models.CharField(max_length=40, blank=True, default="", help_text="Unit in the mall.")

    class Meta:
        ordering = ["tenant", "code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="store_code_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} — {self.name}"


class Till(models.Model):
    """A point of sale. It belongs to one store of one tenant; the tenant is denormalised so the
    ledger and the API can scope by tenant without a join."""

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="tills")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="tills")
    code = models.SlugField(max_length=40)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["tenant", "code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="till_code_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.code}"


class TillKey(AbstractAPIKey):
    """A till's API key. Only a SHA-512 hash is stored (djangorestframework-api-key); the key
    itself is shown once when it is made. Revoking is final; rotating makes a new key and
    revokes the old one. Each key is rate limited on its own (`coalition.api.auth`)."""

    till = models.ForeignKey(Till, on_delete=models.PROTECT, related_name="keys")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True, default="")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute this key may make. Empty: the programme's default "
        "(TILL_RATE_LIMIT); 0: no limit. Kept when the key is rotated.",
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "till key"
        verbose_name_plural = "till keys"
        indexes = [models.Index(fields=["till", "revoked"])]


class PortalRole(models.TextChoices):
    MANAGER = "manager", "Manager"  # everything, and the tills' keys
    FINANCE = "finance", "Finance"  # statements and transactions
    VIEWER = "viewer", "Viewer"  # statements and transactions, read only


class TenantUser(models.Model):
    """A login to the tenant portal: one user, one tenant, one role. Portal users are never
    staff; staff log into the admin."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_user"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="users")
    role = models.CharField(max_length=10, choices=PortalRole.choices, default=PortalRole.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.tenant})"
