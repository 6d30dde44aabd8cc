"""Reads about tenants: the rates in force on a date, and whether a tenant may issue or redeem."""

from datetime import date, datetime
from decimal import Decimal
from functools import cache
from zoneinfo import ZoneInfo

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from coalition.models import Coalition
from coalition.rows import fetch_one, instance, select_list, width
from tenants.models import Tenant, TenantRate, TenantStatus, Till, TillKey


def tenant_rates_on(tenant: Tenant, day: date) -> tuple[Decimal, Decimal]:
    """(price per point issued, reimbursement per point honoured) in force on `day`.

    Without a rate row of its own, a tenant settles at the coalition's default rates.
    """
    rate = fetch_one(TENANT_RATE_SQL, {"tenant": tenant.pk, "day": day})
    return rates_or_defaults(tenant, rate)


# The rate row in force, for `%(tenant)s` on `%(day)s`: written out (`coalition.rows`), because
# every posting reads it, and `coalition.services.ledger.posting_lock` reads it as a subquery.
TENANT_RATE_SQL = (
    "SELECT price_per_point, reimbursement_per_point "  # noqa: S608 (a table name from metadata)
    f"FROM {TenantRate._meta.db_table} "
    "WHERE tenant_id = %(tenant)s AND effective_from <= %(day)s "
    "ORDER BY effective_from DESC LIMIT 1"
)


def rates_or_defaults(
    tenant: Tenant, rate: tuple[Decimal | None, Decimal | None] | None
) -> tuple[Decimal, Decimal]:
    """A rate row's (price, reimbursement), or the coalition's defaults without one."""
    if rate is not None and rate[0] is not None and rate[1] is not None:
        return rate[0], rate[1]
    coalition = tenant.coalition
    return coalition.default_price_per_point, coalition.default_reimbursement_per_point


def tenant_in_arrears(tenant: Tenant) -> bool:
    """A statement the tenant owes is unpaid past its due date (`settlement.services`,
    `arrears_apply`, keeps the flag; reading it costs no query on the till path)."""
    return tenant.arrears_since is not None


def tenant_has_left(tenant: Tenant, now: datetime | None = None) -> bool:
    """Exited, or its exit date has come in the coalition's time zone (before the daily job
    `tenants_exit_due` has marked it)."""
    if tenant.status == TenantStatus.EXITED:
        return True
    if tenant.exit_on is None:
        return False
    zone = ZoneInfo(tenant.coalition.time_zone)
    return tenant.exit_on <= (now or timezone.now()).astimezone(zone).date()


def tenant_can_issue(tenant: Tenant) -> bool:
    return tenant.status == TenantStatus.ACTIVE and tenant.may_issue and not tenant_has_left(tenant)


def tenant_can_redeem(tenant: Tenant) -> bool:
    """Redeem only while active, allowed to, not in arrears (no free riders) and not gone."""
    return (
        tenant.status == TenantStatus.ACTIVE
        and tenant.may_redeem
        and not tenant_in_arrears(tenant)
        and not tenant_has_left(tenant)
    )


def till_for_key(raw_key: str) -> Till | None:
    """The active till a live key belongs to, with its tenant and coalition, in one query;
    None for an unknown, revoked, expired or malformed key."""
    key = till_key_for_key(raw_key)
    return key.till if key is not None else None


def till_key_for_key(raw_key: str) -> TillKey | None:
    """The live key `raw_key` is, with its till, tenant and coalition, in one query; None for an
    unknown, revoked, expired or malformed key, or one of an inactive till or a departed tenant.

    Every till request starts here, so the query is written out (`coalition.rows`) rather than
    compiled by the ORM each time; the hash check is the library's own. The key's own rate limit
    comes with it, so limiting per key costs no query. Nothing here is cached: a key revoked a
    moment ago is refused by the very next request.
    """
    prefix, dot, _ = raw_key.partition(".")
    if not dot or not prefix:
        return None
    row = fetch_one(_till_key_for_key_sql(), [prefix])
    if row is None:
        return None
    key_end = width(TillKey)
    till_end = key_end + width(Till)
    tenant_end = till_end + width(Tenant)
    key = instance(TillKey, row[:key_end])
    if key.expiry_date is not None and key.expiry_date < timezone.now():
        return None
    if not TillKey.objects.key_generator.verify(raw_key, key.hashed_key):
        return None
    till = instance(Till, row[key_end:till_end])
    tenant = instance(Tenant, row[till_end:tenant_end])
    tenant.coalition = instance(Coalition, row[tenant_end:])
    till.tenant = tenant
    key.till = till
    return key


@cache
def _till_key_for_key_sql() -> str:
    # Column names come from model metadata, never from input: nothing here is user-supplied.
    return f"""
        SELECT {select_list(TillKey, "k")}, {select_list(Till, "t")},
               {select_list(Tenant, "n")}, {select_list(Coalition, "c")}
        FROM tenants_tillkey k
        JOIN tenants_till t ON t.id = k.till_id
        JOIN tenants_tenant n ON n.id = t.tenant_id
        JOIN coalition_coalition c ON c.id = n.coalition_id
        WHERE k.prefix = %s AND NOT k.revoked AND t.is_active
            AND (n.exit_on IS NULL OR n.exit_on > (now() AT TIME ZONE c.time_zone)::date)
    """  # noqa: S608


# What the tenant portal reads: always through the signed-in tenant, so another tenant's till
# or key is not found (404), never forbidden.


def tills_for_tenant(tenant: Tenant) -> QuerySet[Till]:
    return Till.objects.filter(tenant=tenant).select_related("store").order_by("code")


def till_get_for_tenant(tenant: Tenant, till_id: int) -> Till:
    found = tills_for_tenant(tenant).filter(pk=till_id).first()
    if found is None:
        raise Http404("No such till.")
    return found


def till_key_get_for_tenant(tenant: Tenant, key_id: str) -> TillKey:
    found = TillKey.objects.select_related("till").filter(pk=key_id, till__tenant=tenant).first()
    if found is None:
        raise Http404("No such key.")
    return found
