"""Lots already earned under a sliding policy keep sliding: they carry their months from now on."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("coalition", "0008_lot_terms_liability_and_policy_migrations")]

    operations = [
        migrations.RunSQL(
            sql="""
                UPDATE coalition_lot l SET slide_months = c.expiry_months
                FROM coalition_coalition c
                WHERE l.coalition_id = c.id AND c.expiry_policy = 'sliding'
                    AND l.slide_months IS NULL;
                UPDATE coalition_coalition SET sliding_lots = true
                WHERE expiry_policy = 'sliding';
            """,
            reverse_sql="UPDATE coalition_lot SET slide_months = NULL;"
            "UPDATE coalition_coalition SET sliding_lots = false;",
        )
    ]
