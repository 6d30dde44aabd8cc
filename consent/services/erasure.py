"""Erasure: a member's name, phone, email and card leave every copy we made of them; the ledger
keeps its entries under the member's opaque id so every account still adds up.

`member_erase` is one transaction, under the member's account lock (no posting runs half before
and half after it). It forfeits what is left of the balance by a ledger journal, withdraws every
consent, frees the identifiers, and scrubs the copies: audit-log diffs, stored idempotent
responses, batch lines, the notice outbox, staff's free-text notes and files in the media folder
(import uploads). Celery keeps no task results (`CELERY_RESULT_BACKEND = None`) and task
arguments are ids, so the broker holds nothing to scrub.

Running it again finds nothing left to do and changes nothing (idempotent).

Not scrubbed, by design: journal reasons, which are part of the append-only ledger (staff are
asked never to type a phone or email into a reason).
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from auditlog.context import disable_auditlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from coalition.api.problems import problem_type
from coalition.models import AccountKind, JournalKind
from coalition.services.ledger import (
    Leg,
    coalition_account,
    journal_at_nominal,
    journal_post,
    lots_consume,
    member_accounts_lock,
    open_lots,
)
from consent.models import (
    DataAccess,
    DataAccessAction,
    PrivacyRequest,
    PrivacyRequestKind,
    PrivacyRequestStatus,
)
from consent.selectors import consent_state
from members.models import Identifier, IdentifierKind, Member, MemberStatus
from members.selectors import member_history_ids

ERASED = "[erased]"
WHAT = "name, phone, email, card"

# Staff's free text that may quote a member: (table, column). Journal reasons are not here: the
# journal is append-only, part of the accounts the law makes us keep.
FREE_TEXT = (
    ("coalition_adjustmentrequest", "reason"),
    ("coalition_expirynotice", "error"),
    ("members_mergerecord", "reason"),
    ("consent_privacyrequest", "note"),
    ("consent_dataaccess", "why"),
    ("django_admin_log", "object_repr"),
    ("django_admin_log", "change_message"),
)


@dataclass
class Erasure:
    """What one erasure did, in counts: kept on the request, never a personal value."""

    points_forfeited: int = 0
    pending_forfeited: int = 0
    identifiers_freed: int = 0
    consents_withdrawn: int = 0
    audit_entries_scrubbed: int = 0
    stored_responses_scrubbed: int = 0
    batch_lines_scrubbed: int = 0
    outbox_messages_scrubbed: int = 0
    notes_scrubbed: int = 0
    files_deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _values(member_ids: Sequence[UUID]) -> tuple[list[str], list[tuple[str, str]]]:
    """The personal values to hunt for (names, identifiers, a phone's national digits) and the
    identifiers as (kind, value)."""
    identifiers = list(
        Identifier.objects.filter(member_id__in=member_ids).values_list("kind", "value")
    )
    values = {value for _, value in identifiers}
    for kind, value in identifiers:
        if kind == IdentifierKind.PHONE:
            digits = re.sub(r"\D", "", value)
            values.add(digits[-10:])  # the national number, however staff or a till wrote it
    for name, guardian in Member.objects.filter(pk__in=member_ids).values_list(
        "name", "guardian_name"
    ):
        values.update(value.strip() for value in (name, guardian))
    # Too short a value would match unrelated text (a one-letter name): names under 3
    # characters are blanked in their own fields but not hunted for elsewhere.
    return sorted(value for value in values if len(value) >= 3), identifiers


def _regex(values: Iterable[str]) -> str:
    return "|".join(re.escape(value) for value in values)


def _execute(sql: str, params: Sequence[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _forfeit(member: Member, actor: Any, now: datetime) -> tuple[int, int]:
    """Forfeit the balance and pending points to the coalition's forfeit account by one journal,
    emptying the lots they stand on. The member's accounts are locked by the caller."""
    accounts = member_accounts_lock(member.pk)[member.pk]
    points, pending = accounts.points.balance, accounts.pending.balance
    if not points and not pending:
        return 0, 0
    coalition = member.coalition
    nominal = coalition.point_value
    forfeit = coalition_account(coalition.pk, AccountKind.FORFEIT)
    journal = journal_at_nominal(
        coalition=coalition,
        kind=JournalKind.FORFEIT,
        points=abs(points) + abs(pending),
        at=now,
        member=member,
        reason="Erasure of the member's personal data.",
        created_by=actor,
    )
    journal_post(
        journal,
        [
            Leg(accounts.points, -points, -points * nominal),
            Leg(accounts.pending, -pending, -pending * nominal),
            Leg(forfeit, points + pending, (points + pending) * nominal),
        ],
    )
    for pending_lots in (False, True):
        lots = open_lots(member.pk, pending=pending_lots)
        lots_consume(lots, sum(lot.remaining for lot in lots), journal)
    return points, pending


def _scrub_audit_log(member_ids: Sequence[UUID], identifier_ids: Sequence[int], regex: str) -> int:
    """Empty the diffs of every change-log row about the member or its identifiers, or that
    quotes one of its values anywhere. The row stays: who changed which object, when."""
    return _execute(
        """
        UPDATE auditlog_logentry e
        SET changes = NULL, changes_text = '', serialized_data = NULL, object_repr = %s,
            additional_data = '{"erased": true}'::jsonb
        FROM django_content_type ct
        WHERE ct.id = e.content_type_id AND (
            (ct.app_label = 'members' AND ct.model = 'member' AND e.object_pk = ANY(%s))
            OR (ct.app_label = 'members' AND ct.model = 'identifier' AND e.object_pk = ANY(%s))
            OR (%s <> '' AND concat_ws(' ', e.changes::text, e.changes_text, e.object_repr,
                e.serialized_data::text, e.additional_data::text) ~* %s)
        )
        """,
        [
            ERASED,
            [str(pk) for pk in member_ids],
            [str(pk) for pk in identifier_ids],
            regex,
            regex or "^$",
        ],
    )


def _scrub_stored_responses(member_ids: Sequence[UUID], regex: str) -> int:
    """A till retrying a request after the erasure is told the member is not found; the response
    that named the member is gone."""
    body = (
        b'{"type":"' + problem_type("member-not-found").encode() + b'","title":"No such member",'
        b'"status":404,"detail":"This member was erased."}'
    )
    return _execute(
        """
        UPDATE coalition_idempotencyrecord SET status = 404,
            content_type = 'application/problem+json', body = %s
        WHERE (member_id = ANY(%s) OR (%s <> '' AND encode(body, 'escape') ~* %s))
            AND body <> %s
        """,
        [body, list(member_ids), regex, regex or "^$", body],
    )


def _scrub_batch_lines(member_ids: Sequence[UUID], identifiers: Sequence[tuple[str, str]]) -> int:
    """Lines posted to the member, and rejected lines that named one of its identifiers in
    whatever format the till wrote it."""
    cards = [value for kind, value in identifiers if kind == IdentifierKind.CARD]
    emails = [value.lower() for kind, value in identifiers if kind == IdentifierKind.EMAIL]
    phones = [
        re.sub(r"\D", "", value)[-10:]
        for kind, value in identifiers
        if kind == IdentifierKind.PHONE
    ]
    return _execute(
        """
        UPDATE coalition_batchline b SET card = '', phone = '', email = ''
        WHERE (b.card <> '' OR b.phone <> '' OR b.email <> '') AND (
            b.journal_id IN (SELECT id FROM coalition_journal WHERE member_id = ANY(%s))
            OR b.card = ANY(%s) OR lower(b.email) = ANY(%s)
            OR (b.phone <> '' AND right(regexp_replace(b.phone, '\\D', '', 'g'), 10) = ANY(%s))
        )
        """,
        [list(member_ids), cards, emails, phones],
    )


def _scrub_outbox(member_ids: Sequence[UUID], regex: str) -> int:
    return _execute(
        """
        UPDATE coalition_outboxmessage o SET recipient = '', body = %s
        WHERE o.body <> %s AND (
            o.notice_id IN (SELECT id FROM coalition_expirynotice WHERE member_id = ANY(%s))
            OR (%s <> '' AND (o.recipient ~* %s OR o.body ~* %s))
        )
        """,
        [ERASED, ERASED, list(member_ids), regex, regex or "^$", regex or "^$"],
    )


def _scrub_free_text(regex: str) -> int:
    if not regex:
        return 0
    scrubbed = 0
    for table, column in FREE_TEXT:
        scrubbed += _execute(
            f"UPDATE {table} SET {column} = regexp_replace({column}, %s, %s, 'gi') "  # noqa: S608
            f"WHERE {column} ~* %s",
            [regex, ERASED, regex],
        )
    return scrubbed


def _files_mentioning(values: Sequence[str]) -> list[Path]:
    """Uploads in the media folder that mention the member: an import file left behind by a
    preview that was never confirmed, say."""
    root = Path(settings.MEDIA_ROOT)
    if not values or not root.is_dir():
        return []
    # A phone is matched on its digits alone: a file keeps the cell as typed ("98123 45678").
    digits = [value.encode() for value in values if value.isdigit()]
    needles = [value.lower().encode() for value in values if not value.isdigit()]
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        content = path.read_bytes().lower()
        if any(needle in content for needle in needles) or any(
            number in re.sub(rb"\D", b"", content) for number in digits
        ):
            found.append(path)
    return found


def _files_delete(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


@transaction.atomic
def member_erase(
    *,
    member: Member,
    actor: Any,
    why: str,
    request: PrivacyRequest | None = None,
    now: datetime | None = None,
) -> Erasure:
    """Erase a member's personal data everywhere we copied it. Idempotent: a second run finds
    nothing left and changes nothing but the request it is given."""
    from consent.services import consents_record  # consent.services imports this module

    now = now or timezone.now()
    # The member's lock first: a posting that started before waits for nothing from us, one
    # that starts after sees the member erased (`member_lock_active`).
    member_accounts_lock(member.pk)
    member.refresh_from_db()
    # Allows this transaction, and only it, to rewrite rows of the append-only audit tables.
    _execute("SELECT set_config('coalition.erasure', 'on', true)", [])

    done = Erasure()
    member_ids = member_history_ids(member)
    values, identifiers = _values(member_ids)
    regex = _regex(values)
    identifier_ids = list(
        Identifier.objects.filter(member_id__in=member_ids).values_list("pk", flat=True)
    )

    done.points_forfeited, done.pending_forfeited = _forfeit(member, actor, now)
    given = [code for code, state in consent_state(member).items() if state]
    if given:
        consents_record(member=member, consents=dict.fromkeys(given, False), by_user=actor, at=now)
    done.consents_withdrawn = len(given)

    with disable_auditlog():  # the log would copy the values we are removing
        Member.objects.filter(pk__in=member_ids).update(name="", guardian_name="")
        Member.objects.filter(pk=member.pk).update(status=MemberStatus.ERASED)
        done.identifiers_freed = Identifier.objects.filter(pk__in=identifier_ids).delete()[0]
    member.status, member.name, member.guardian_name = MemberStatus.ERASED, "", ""

    done.audit_entries_scrubbed = _scrub_audit_log(member_ids, identifier_ids, regex)
    done.stored_responses_scrubbed = _scrub_stored_responses(member_ids, regex)
    done.batch_lines_scrubbed = _scrub_batch_lines(member_ids, identifiers)
    done.outbox_messages_scrubbed = _scrub_outbox(member_ids, regex)
    done.notes_scrubbed = _scrub_free_text(regex)
    files = _files_mentioning(values)
    done.files_deleted = len(files)
    # Deleted whole, once the erasure is committed (a rollback must not lose them half-way).
    transaction.on_commit(lambda: _files_delete(files))

    DataAccess.objects.create(
        at=now,
        user=actor,
        action=DataAccessAction.ERASURE,
        member=member,
        request=request,
        what=WHAT,
        why=why,
    )
    if request is not None:
        PrivacyRequest.objects.filter(pk=request.pk).update(
            status=PrivacyRequestStatus.DONE, done_at=now, done_by=actor, outcome=done.as_dict()
        )
        request.refresh_from_db()
    # Other open requests of the member are answered by this erasure: another erasure is
    # done, an access request is moot (nothing is left to give).
    others = PrivacyRequest.objects.filter(
        member=member, status__in=[PrivacyRequestStatus.RECEIVED, PrivacyRequestStatus.VERIFIED]
    )
    if request is not None:
        others = others.exclude(pk=request.pk)
    others.filter(kind=PrivacyRequestKind.ERASURE).update(
        status=PrivacyRequestStatus.DONE, done_at=now, done_by=actor, outcome=done.as_dict()
    )
    others.filter(kind=PrivacyRequestKind.ACCESS).update(
        status=PrivacyRequestStatus.CANCELLED, done_at=now, done_by=actor
    )
    return done
