"""Shopper-rights requests, from receipt to done: open, verify, erase (or export), cancel.

A request a member makes waits for the privacy officer to verify who is asking. An erasure that
follows a withdrawal of programme consent, or the retention period, is verified by its cause and
runs by itself (`privacy_erasures_run`, woken on commit and every hour by beat).
"""

from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.services.programme import local_date
from coalition.wake import worker_wake_on_commit
from consent.models import (
    PrivacyRequest,
    PrivacyRequestKind,
    PrivacyRequestSource,
    PrivacyRequestStatus,
)
from consent.services.erasure import member_erase
from members.models import Member, MemberStatus

ERASURES_TASK = "consent.tasks.privacy_erasures_task"
OPEN = (PrivacyRequestStatus.RECEIVED, PrivacyRequestStatus.VERIFIED)
WHY_AUTOMATIC: dict[str, str] = {
    PrivacyRequestSource.WITHDRAWAL: "The member withdrew consent to the programme.",
    PrivacyRequestSource.RETENTION: "No activity for longer than the retention period.",
}


@transaction.atomic
def privacy_request_open(
    *,
    member: Member,
    kind: str,
    actor: Any = None,
    note: str = "",
    source: str = PrivacyRequestSource.MEMBER,
    due_in_days: int | None = None,
    now: datetime | None = None,
) -> PrivacyRequest:
    """Record a request. Asking again while one of that kind is open returns the open one."""
    now = now or timezone.now()
    if kind not in PrivacyRequestKind.values:
        raise InvalidRequest("Choose access or erasure.", field="kind")
    if member.status == MemberStatus.ERASED:
        raise InvalidRequest("This member is erased already: nothing is left to give or erase.")
    coalition = member.coalition
    automatic = source != PrivacyRequestSource.MEMBER
    status = PrivacyRequestStatus.VERIFIED if automatic else PrivacyRequestStatus.RECEIVED
    days = coalition.privacy_request_days if due_in_days is None else due_in_days
    try:
        with transaction.atomic():  # a savepoint: the unique index decides a race
            return PrivacyRequest.objects.create(
                coalition=coalition,
                member=member,
                kind=kind,
                source=source,
                status=status,
                received_at=now,
                received_by=actor,
                verified_at=now if automatic else None,
                due_on=local_date(coalition, now) + timedelta(days=days),
                note=note.strip() or WHY_AUTOMATIC.get(source, ""),
            )
    except IntegrityError:
        return PrivacyRequest.objects.get(member=member, kind=kind, status__in=OPEN)


def _open_request(request: PrivacyRequest) -> PrivacyRequest:
    """The request, re-read under a row lock, refused unless it is still open."""
    locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status not in OPEN:
        raise InvalidRequest(f"This request is {locked.get_status_display().lower()} already.")
    return locked


@transaction.atomic
def privacy_request_verify(
    *, request: PrivacyRequest, actor: Any, note: str, now: datetime | None = None
) -> PrivacyRequest:
    """The privacy officer checked the requester is the member (how goes in the note)."""
    request = _open_request(request)
    if request.status == PrivacyRequestStatus.VERIFIED:
        return request
    if not note.strip():
        raise InvalidRequest("Say how the requester's identity was checked.", field="note")
    request.status = PrivacyRequestStatus.VERIFIED
    request.verified_at, request.verified_by = now or timezone.now(), actor
    request.note = f"{request.note}\n{note.strip()}".strip()
    request.save(update_fields=["status", "verified_at", "verified_by", "note"])
    return request


@transaction.atomic
def privacy_request_cancel(
    *, request: PrivacyRequest, actor: Any, note: str, now: datetime | None = None
) -> PrivacyRequest:
    request = _open_request(request)
    if not note.strip():
        raise InvalidRequest("Say why the request is cancelled.", field="note")
    request.status = PrivacyRequestStatus.CANCELLED
    request.done_at, request.done_by = now or timezone.now(), actor
    request.note = f"{request.note}\n{note.strip()}".strip()
    request.save(update_fields=["status", "done_at", "done_by", "note"])
    return request


@transaction.atomic
def privacy_request_erase(
    *, request: PrivacyRequest, actor: Any, now: datetime | None = None
) -> PrivacyRequest:
    """Carry out a verified erasure request."""
    request = _open_request(request)
    if request.kind != PrivacyRequestKind.ERASURE:
        raise InvalidRequest("This is not an erasure request.")
    if request.status != PrivacyRequestStatus.VERIFIED:
        raise InvalidRequest("Verify the requester's identity first.")
    why = WHY_AUTOMATIC.get(request.source, "The member asked to be erased.")
    member_erase(member=request.member, actor=actor, why=why, request=request, now=now)
    request.refresh_from_db()
    return request


@transaction.atomic
def privacy_request_complete(
    *, request: PrivacyRequest, actor: Any, now: datetime | None = None
) -> PrivacyRequest:
    """An access request is done once the officer has produced the member's file."""
    request = _open_request(request)
    if request.kind != PrivacyRequestKind.ACCESS:
        raise InvalidRequest("An erasure request is done by erasing.")
    if request.status != PrivacyRequestStatus.VERIFIED:
        raise InvalidRequest("Verify the requester's identity first.")
    request.status = PrivacyRequestStatus.DONE
    request.done_at, request.done_by = now or timezone.now(), actor
    request.save(update_fields=["status", "done_at", "done_by"])
    return request


def privacy_erasures_run(*, now: datetime | None = None) -> int:
    """Carry out the automatic erasures that are due, one transaction each: a withdrawal of
    programme consent at once, the retention period once its warning has run out, unless the
    member was active since the warning (then the request is cancelled). Safe to run twice and
    concurrently: each request is claimed under its row lock. Returns how many were erased."""
    now = now or timezone.now()
    erased = 0
    due = PrivacyRequest.objects.filter(
        kind=PrivacyRequestKind.ERASURE,
        status=PrivacyRequestStatus.VERIFIED,
        source__in=list(WHY_AUTOMATIC),
        # No time zone is a day ahead of UTC: requests due later are not even read (a retention
        # request waits its warning window); the local day is checked below.
        due_on__lte=(now + timedelta(days=1)).date(),
    ).select_related("coalition", "member")
    for request in list(due.order_by("due_on", "pk")):
        if request.due_on > local_date(request.coalition, now):
            continue
        with transaction.atomic():
            try:
                claimed = _open_request(request)
            except InvalidRequest:
                continue  # done by another run meanwhile
            member = claimed.member
            if (
                claimed.source == PrivacyRequestSource.RETENTION
                and member.last_activity_at is not None
                and member.last_activity_at > claimed.received_at
            ):
                privacy_request_cancel(
                    request=claimed, actor=None, note="The member was active again.", now=now
                )
                continue
            privacy_request_erase(request=claimed, actor=None, now=now)
            erased += 1
    return erased


def privacy_erasures_wake() -> None:
    """Wake a worker after this transaction commits (the request row is the work; beat picks
    it up too if the message is lost)."""
    worker_wake_on_commit(ERASURES_TASK, left_to="the privacy_erasures beat job")
