"""Journals and entries are append-only in the database itself, and each entry carries a digest
set by the database on insert so that `ledger_verify` can prove no entry changed afterwards.

TRUNCATE stays possible for the table owner (test database flushes); production revokes it from
the application role along with UPDATE and DELETE (see README, operations).
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION ledger_entry_digest(
    id bigint, journal_id bigint, account_id bigint, points bigint, value numeric,
    balance_before bigint, balance_after bigint
) RETURNS varchar LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws('|', id, journal_id, account_id, points,
        value::numeric(18, 4), coalesce(balance_before::text, '-'),
        coalesce(balance_after::text, '-')), 'UTF8')), 'hex')
$$;

CREATE FUNCTION ledger_entry_set_digest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.digest := ledger_entry_digest(NEW.id, NEW.journal_id, NEW.account_id, NEW.points,
        NEW.value, NEW.balance_before, NEW.balance_after);
    RETURN NEW;
END
$$;

CREATE FUNCTION ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER coalition_entry_digest BEFORE INSERT ON coalition_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_set_digest();
CREATE TRIGGER coalition_entry_append_only BEFORE UPDATE OR DELETE ON coalition_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER coalition_journal_append_only BEFORE UPDATE OR DELETE ON coalition_journal
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
"""

BACKWARD = r"""
DROP TRIGGER coalition_journal_append_only ON coalition_journal;
DROP TRIGGER coalition_entry_append_only ON coalition_entry;
DROP TRIGGER coalition_entry_digest ON coalition_entry;
DROP FUNCTION ledger_reject_change();
DROP FUNCTION ledger_entry_set_digest();
DROP FUNCTION ledger_entry_digest(bigint, bigint, bigint, bigint, numeric, bigint, bigint);
"""


class Migration(migrations.Migration):
    dependencies = [("coalition", "0002_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
