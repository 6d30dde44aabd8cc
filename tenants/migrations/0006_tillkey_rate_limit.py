# A till key's own rate limit (issue 8): null keeps the programme's default, TILL_RATE_LIMIT.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tenants", "0005_tenant_exit_on")]

    operations = [
        migrations.AddField(
            model_name="tillkey",
            name="rate_limit_per_minute",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Requests per minute this key may make. Empty: the programme's default "
                "(TILL_RATE_LIMIT); 0: no limit. Kept when the key is rotated.",
                null=True,
            ),
        ),
    ]
