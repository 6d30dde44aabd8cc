"""The consent log is append-only in the database: a change of mind is a new row."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial"), ("coalition", "0003_ledger_immutability")]

    operations = [
        migrations.RunSQL(
            "CREATE TRIGGER consent_consentevent_append_only BEFORE UPDATE OR DELETE "
            "ON consent_consentevent FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();",
            "DROP TRIGGER consent_consentevent_append_only ON consent_consentevent;",
        )
    ]
