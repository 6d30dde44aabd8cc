# Reserved for the per-key rate limit (issue 8); the helper that owns it fills in the operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tenants", "0005_tenant_exit_on")]

    operations: list = []
