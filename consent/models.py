"""Consent, per member and purpose, as an append-only log (DPDP Act 2023, GDPR)."""

from django.conf import settings
from django.db import models


class ConsentPurpose(models.Model):
    """Why the operator processes a member's data. `programme` is required to be a member."""

    PROGRAMME = "programme"
    MARKETING_MALL = "marketing_mall"
    ANALYTICS = "analytics"

    coalition = models.ForeignKey(
        "coalition.Coalition", on_delete=models.PROTECT, related_name="consent_purposes"
    )
    code = models.SlugField(max_length=60)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    required = models.BooleanField(default=False, help_text="Required to be a member.")
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Marketing by this named tenant (sent by the mall on its behalf).",
    )
    notice_version = models.CharField(
        max_length=20, default="v1", help_text="Version of the notice text now in force."
    )

    class Meta:
        ordering = ["coalition", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["coalition", "code"], name="purpose_code_per_coalition"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ConsentNotice(models.Model):
    """The text a member is shown for a purpose, per version and language. Rows are history:
    a new wording is a new version, and every consent event records the version in force."""

    purpose = models.ForeignKey(ConsentPurpose, on_delete=models.PROTECT, related_name="notices")
    version = models.CharField(max_length=20)
    language = models.CharField(
        max_length=10, default="en", help_text="A language code: en, hi, mr, ta ..."
    )
    text = models.TextField()
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["purpose", "-published_at", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "version", "language"], name="notice_text_per_version_language"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose.code} {self.version} ({self.language})"


class ConsentChannel(models.TextChoices):
    TILL = "till", "At a till"
    STAFF = "staff", "By mall staff"
    IMPORT = "import", "Imported"
    BATCH = "batch", "Till batch file"


class ConsentEvent(models.Model):
    """One giving or withdrawal of consent. Rows are never changed (a trigger enforces it)."""

    member = models.ForeignKey(
        "members.Member", on_delete=models.PROTECT, related_name="consent_events"
    )
    purpose = models.ForeignKey(ConsentPurpose, on_delete=models.PROTECT, related_name="events")
    given = models.BooleanField()
    at = models.DateTimeField()
    channel = models.CharField(max_length=10, choices=ConsentChannel.choices)
    notice_version = models.CharField(max_length=20)
    by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    by_till = models.ForeignKey(
        "tenants.Till", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["member", "at", "id"]
        indexes = [models.Index(fields=["member", "purpose", "-at", "-id"])]

    def __str__(self) -> str:
        return f"{'Gave' if self.given else 'Withdrew'} {self.purpose_id} at {self.at:%Y-%m-%d}"
