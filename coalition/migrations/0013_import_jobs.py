# Reserved for the imports helper (issue 7): filled with its models' operations.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("coalition", "0012_dashboard_figures"),
    ]

    operations: list[migrations.operations.base.Operation] = []
