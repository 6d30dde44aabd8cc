"""Members (shoppers) and the identifiers that find them across all tenants."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class MemberStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    MERGED = "merged", "Merged into another member"
    ERASED = "erased", "Erased"
    WITHDRAWN = "withdrawn", "Left (programme consent withdrawn)"


class Member(models.Model):
    """One person across all tenants of a coalition. The id is opaque and survives erasure."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    coalition = models.ForeignKey(
        "coalition.Coalition", on_delete=models.PROTECT, related_name="members"
    )
    name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(
        max_length=10, choices=MemberStatus.choices, default=MemberStatus.ACTIVE
    )
    adult_declared = models.BooleanField(
        default=False, help_text="The member declared being 18 or over at enrolment."
    )
    guardian_name = models.CharField(max_length=200, blank=True, default="")
    guardian_consent_at = models.DateTimeField(
        null=True, blank=True, help_text="When a guardian's verifiable consent was recorded."
    )
    enrolled_at = models.DateTimeField()
    enrolled_via = models.CharField(max_length=20, default="staff")
    enrolled_by_till = models.ForeignKey(
        "tenants.Till", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    enrolled_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_members"
    )
    last_activity_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-enrolled_at"]
        indexes = [
            models.Index(fields=["coalition", "status"]),
            # The staff member list is ordered newest first.
            models.Index(fields=["-enrolled_at"], name="member_enrolled_at_desc"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(adult_declared=True)
                | Q(guardian_consent_at__isnull=False)
                | ~Q(status="active"),
                name="member_adult_or_guardian_consent",
                violation_error_message=(
                    "A member is either an adult by declaration or has a guardian's consent."
                ),
            ),
            models.CheckConstraint(
                condition=Q(status="merged", merged_into__isnull=False)
                | (~Q(status="merged") & Q(merged_into__isnull=True)),
                name="member_merged_has_survivor",
            ),
        ]

    def __str__(self) -> str:
        return f"Member {str(self.id)[:8]}"


class IdentifierKind(models.TextChoices):
    CARD = "card", "Card number"
    PHONE = "phone", "Phone (E.164)"
    EMAIL = "email", "Email"


class Identifier(models.Model):
    """A card, phone (E.164) or email (case-folded). Each belongs to one member per coalition."""

    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="identifiers")
    kind = models.CharField(max_length=8, choices=IdentifierKind.choices)
    value = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the member left the programme: the identifier is free to enrol again.",
    )

    class Meta:
        ordering = ["kind", "value"]
        constraints = [
            models.UniqueConstraint(
                fields=["coalition", "kind", "value"],
                condition=Q(released_at__isnull=True),
                name="identifier_unique_per_coalition",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class MergeRecord(models.Model):
    """Audit of a merge: who merged which member into which, and what moved."""

    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    survivor = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    merged = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    journal = models.ForeignKey(
        "coalition.Journal", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    points_moved = models.BigIntegerField()
    pending_moved = models.BigIntegerField(default=0)
    lots_moved = models.PositiveIntegerField()
    identifiers_moved = models.PositiveIntegerField()
    reason = models.TextField()
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    merged_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Merge {self.merged_id} → {self.survivor_id}"
