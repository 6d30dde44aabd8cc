"""Consent, per member and purpose, as an append-only log (DPDP Act 2023, GDPR)."""

from django.conf import settings
from django.db import models
from django.db.models import Q


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
        permissions = [
            (
                "export_audience",
                "Can export a marketing audience (members who consent to the purpose now)",
            )
        ]
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


class PrivacyRequestKind(models.TextChoices):
    ACCESS = "access", "Access (a copy of everything held)"
    ERASURE = "erasure", "Erasure"


class PrivacyRequestSource(models.TextChoices):
    MEMBER = "member", "Asked by the member"
    WITHDRAWAL = "withdrawal", "Programme consent withdrawn"
    RETENTION = "retention", "Inactive past the retention period"


class PrivacyRequestStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    VERIFIED = "verified", "Verified"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class PrivacyRequest(models.Model):
    """A shopper's right exercised through staff, from receipt to done, with its due date.

    An erasure started by a withdrawal of programme consent or by the retention job needs no
    identity check: it is created verified. Notes are staff's words; an erasure scrubs the
    member's values out of them too.
    """

    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    member = models.ForeignKey(
        "members.Member", on_delete=models.PROTECT, related_name="privacy_requests"
    )
    kind = models.CharField(max_length=10, choices=PrivacyRequestKind.choices)
    source = models.CharField(
        max_length=12, choices=PrivacyRequestSource.choices, default=PrivacyRequestSource.MEMBER
    )
    status = models.CharField(
        max_length=10, choices=PrivacyRequestStatus.choices, default=PrivacyRequestStatus.RECEIVED
    )
    received_at = models.DateTimeField()
    due_on = models.DateField(help_text="The day the answer is due (the coalition's deadline).")
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(
        blank=True,
        default="",
        help_text="How the request came and how identity was checked. No phone numbers or "
        "emails: the member's id is enough.",
    )
    outcome = models.JSONField(
        default=dict, blank=True, help_text="What was done, in counts (never personal data)."
    )

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["status", "due_on"])]
        constraints = [
            # One open request of a kind per member: a second ask is the same request.
            models.UniqueConstraint(
                fields=["member", "kind"],
                condition=Q(status__in=["received", "verified"]),
                name="privacy_request_one_open_per_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display().split(' (')[0]} request {self.pk}"


class DataAccessAction(models.TextChoices):
    VIEW = "view", "Viewed personal data"
    ACCESS_EXPORT = "access_export", "Exported for an access request"
    AUDIENCE_EXPORT = "audience_export", "Exported a marketing audience"
    ERASURE = "erasure", "Erased"


class DataAccess(models.Model):
    """Who saw or took a member's personal data, when, what and why: the records the audit log
    library cannot make, because a read changes no row. Append-only (a trigger enforces it);
    only an erasure may scrub a member's values out of `why`."""

    at = models.DateTimeField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=16, choices=DataAccessAction.choices)
    member = models.ForeignKey(
        "members.Member", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    purpose = models.ForeignKey(
        ConsentPurpose, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    request = models.ForeignKey(
        PrivacyRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    what = models.CharField(max_length=200, help_text="Which data, e.g. name, phone, email.")
    why = models.TextField()
    rows = models.PositiveIntegerField(
        null=True, blank=True, help_text="Members in an export (an audience)."
    )

    class Meta:
        verbose_name = "personal data access"
        verbose_name_plural = "personal data accesses"
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["member", "-at"]), models.Index(fields=["-at"])]

    def __str__(self) -> str:
        return f"{self.get_action_display()} at {self.at:%Y-%m-%d %H:%M}"
