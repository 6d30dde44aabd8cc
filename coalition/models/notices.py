"""Expiry notices: expiry is never silent (`domain.md`).

One notice per member and run lists the points about to expire and their dates; each lot it
covers points to it (`Lot.notice`), and the sweep expires a lot only once its notice was
recorded at least the coalition's notice window ago. A member without a contact channel gets a
notice record marked "no channel", which lets the sweep proceed as well.

SMS and WhatsApp go through adapters; the development ones write to `OutboxMessage`.
"""

from django.db import models
from django.db.models import Q


class NoticeChannel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    NONE = "none", "No contact channel"


class NoticeStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (retries exhausted)"
    NO_CHANNEL = "no_channel", "No channel: recorded, not sent"


class ExpiryNotice(models.Model):
    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    member = models.ForeignKey(
        "members.Member", on_delete=models.PROTECT, related_name="expiry_notices"
    )
    created_at = models.DateTimeField(
        help_text="When the notice was recorded: the sweep waits the notice window from here."
    )
    points = models.BigIntegerField(help_text="Points expiring, as the notice was recorded.")
    first_expiry = models.DateField(help_text="The earliest last day among its lots.")
    lots = models.JSONField(
        default=list, help_text='Points per last day: [{"expires_on": "YYYY-MM-DD", "points": N}].'
    )
    channel = models.CharField(max_length=10, choices=NoticeChannel.choices)
    status = models.CharField(
        max_length=12, choices=NoticeStatus.choices, default=NoticeStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"], condition=Q(status="queued"), name="notice_queued"),
        ]

    def __str__(self) -> str:
        return f"{self.points} points from {self.first_expiry}: {self.get_status_display()}"


class OutboxMessage(models.Model):
    """A message the development SMS and WhatsApp adapters "send": written here, sent nowhere."""

    channel = models.CharField(max_length=10, choices=NoticeChannel.choices)
    recipient = models.CharField(max_length=254)
    body = models.TextField()
    notice = models.ForeignKey(
        ExpiryNotice, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} at {self.created_at:%Y-%m-%d %H:%M}"
