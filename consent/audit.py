"""What the audit log library (django-auditlog) records: every change to the programme's
settings, tenants, rates, tills and keys, consent purposes, staff accounts and members, with the
staff user who made it (`AuditlogMiddleware`).

A change to a member or an identifier carries personal data in its diff; an erasure scrubs those
diffs (`consent.services.erasure`). Reads change no row, so views and exports of personal data
are our own records (`consent.models.DataAccess`). Both tables are append-only in the database
(migration `consent` 0006): only an erasure, inside its transaction, may rewrite a row.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from auditlog.context import auditlog_value, set_extra_data
from auditlog.registry import auditlog
from django.apps import apps
from django.contrib.auth import get_user_model

# model label -> fields never written to the log (secrets, hashes, noise)
AUDITED: dict[str, list[str]] = {
    "coalition.Coalition": ["closed_through", "sliding_lots"],
    "coalition.Campaign": ["awarded"],
    "tenants.Tenant": [],
    "tenants.TenantRate": [],
    "tenants.Store": [],
    "tenants.Till": [],
    "tenants.TillKey": ["hashed_key", "id"],
    "tenants.TenantUser": [],
    "consent.ConsentPurpose": [],
    "consent.ConsentNotice": [],
    "consent.PrivacyRequest": [],
    "members.Member": [],
    "members.Identifier": [],
}


def audit_register() -> None:
    for label, exclude in AUDITED.items():
        model = apps.get_model(label)
        if not auditlog.contains(model):
            auditlog.register(model, exclude_fields=exclude)
    group = apps.get_model("auth.Group")
    if not auditlog.contains(group):
        auditlog.register(group, m2m_fields={"permissions"})
    user = get_user_model()
    if not auditlog.contains(user):
        auditlog.register(user, exclude_fields=["password", "last_login"], m2m_fields={"groups"})


@contextmanager
def audit_why(why: str) -> Iterator[None]:
    """Attach `why` to every change-log row written inside (with the request's actor, which
    the middleware set). The library's context replaces the middleware's, so the outer one is
    put back afterwards or the middleware could not disconnect its own receiver."""
    try:
        outer = auditlog_value.get()
    except LookupError:
        outer = None
    with set_extra_data(context_data={**(outer or {}), "additional_data": {"why": why}}):
        yield
    if outer is not None:
        auditlog_value.set(outer)
