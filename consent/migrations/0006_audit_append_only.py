"""The audit trail is append-only in the database, like the ledger: the library's change log
(auditlog_logentry) and our records of views and exports (consent_dataaccess).

One exception, and only inside an erasure's transaction: `member_erase` sets the transaction-local
setting `coalition.erasure` to 'on' and may then UPDATE rows to scrub a member's values. Nothing
may DELETE a row, so the trail is kept for as long as the database is (at least the year the
programme promises).
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('coalition.erasure', true) = 'on' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'rows of % are append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER auditlog_logentry_append_only BEFORE UPDATE OR DELETE ON auditlog_logentry
    FOR EACH ROW EXECUTE FUNCTION audit_guard();
CREATE TRIGGER consent_dataaccess_append_only BEFORE UPDATE OR DELETE ON consent_dataaccess
    FOR EACH ROW EXECUTE FUNCTION audit_guard();
"""

BACKWARD = r"""
DROP TRIGGER consent_dataaccess_append_only ON consent_dataaccess;
DROP TRIGGER auditlog_logentry_append_only ON auditlog_logentry;
DROP FUNCTION audit_guard();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0005_privacy_requests_and_data_access"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
