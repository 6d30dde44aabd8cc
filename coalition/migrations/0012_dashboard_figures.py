# Reserved for the dashboard helper (issue 7): filled with its models' operations.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("coalition", "0011_campaigns"),
    ]

    operations: list[migrations.operations.base.Operation] = []
