"""How a notice reaches a member: a small pluggable channel interface.

A channel has a `name`, the identifier kind it sends to (an email, or a phone for SMS and
WhatsApp) and `send(recipient, subject, body, notice)`, which raises `ChannelError` on failure;
`notice` is the expiry notice being sent, or None for another message (a retention warning).
Email goes through Django's email backend (`EMAIL_URL`); SMS and WhatsApp through adapters, and
the ones shipped write to the `OutboxMessage` table (development, and a gateway process that
drains it). A project plugs its own adapter in with `NOTICE_ADAPTERS` (channel name → dotted
path of a class).
"""

from functools import cache
from smtplib import SMTPException
from typing import Protocol

from django.conf import settings
from django.core.mail import send_mail
from django.utils.module_loading import import_string

from coalition.models import ExpiryNotice, NoticeChannel, OutboxMessage
from members.models import IdentifierKind


class ChannelError(Exception):
    """A channel could not deliver a message; adapters raise it for any delivery failure."""


class Channel(Protocol):
    name: str  # a NoticeChannel value
    address_kind: str  # the identifier kind it sends to

    def send(
        self, recipient: str, subject: str, body: str, notice: ExpiryNotice | None = None
    ) -> None: ...


class EmailChannel:
    name = NoticeChannel.EMAIL
    address_kind = IdentifierKind.EMAIL

    def send(
        self, recipient: str, subject: str, body: str, notice: ExpiryNotice | None = None
    ) -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient])
        except (SMTPException, OSError) as exc:
            raise ChannelError(f"email not sent: {exc}") from exc


class OutboxChannel:
    """Writes the message to `OutboxMessage` instead of a gateway."""

    address_kind = IdentifierKind.PHONE

    def __init__(self, name: str) -> None:
        self.name = name

    def send(
        self, recipient: str, subject: str, body: str, notice: ExpiryNotice | None = None
    ) -> None:
        OutboxMessage.objects.create(
            channel=self.name, recipient=recipient, body=body, notice=notice
        )


class SmsOutboxChannel(OutboxChannel):
    def __init__(self) -> None:
        super().__init__(NoticeChannel.SMS)


class WhatsAppOutboxChannel(OutboxChannel):
    def __init__(self) -> None:
        super().__init__(NoticeChannel.WHATSAPP)


DEFAULT_ADAPTERS = {
    NoticeChannel.EMAIL: "coalition.channels.EmailChannel",
    NoticeChannel.SMS: "coalition.channels.SmsOutboxChannel",
    NoticeChannel.WHATSAPP: "coalition.channels.WhatsAppOutboxChannel",
}


@cache
def channel(name: str) -> Channel:
    adapters = {**DEFAULT_ADAPTERS, **getattr(settings, "NOTICE_ADAPTERS", {})}
    if name not in adapters:
        raise ValueError(f"No adapter for the notice channel {name!r}.")
    made: Channel = import_string(adapters[name])()
    return made


def channels_in_order() -> list[Channel]:
    """The channels to try, in `EXPIRY_NOTICE_CHANNELS` order."""
    return [channel(name) for name in settings.EXPIRY_NOTICE_CHANNELS]
