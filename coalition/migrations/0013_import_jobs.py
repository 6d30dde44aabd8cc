# Import jobs (issue 7), and at most one opening balance per member and tenant.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# The journal model stays as it is (the ledger's own file): this index is the database's
# guarantee behind `points_open`'s check under the member lock. An earn's receipt index does not
# cover openings (they have no store), and a reference alone would not do: a second file, or a
# file with another reference, must not open the same member twice for one tenant either.
OPENING_ONCE = (
    "CREATE UNIQUE INDEX journal_opening_once_per_member_tenant ON coalition_journal "
    "(tenant_id, member_id) WHERE kind = 'opening'"
)


class Migration(migrations.Migration):
    dependencies = [
        ("coalition", "0012_dashboard_figures"),
        ("tenants", "0005_tenant_exit_on"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ImportJob",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("members", "Members (enrolment from a tenant's old programme)"),
                            ("transactions", "Historical transactions (earn and burn)"),
                            ("tenants", "Tenants"),
                            ("stores", "Stores"),
                            ("tills", "Tills"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "file",
                    models.FileField(
                        blank=True,
                        help_text="Kept under MEDIA_ROOT (where an erasure finds it) until the import is done or cancelled, then deleted.",
                        upload_to="imports/%Y/%m/",
                    ),
                ),
                ("file_name", models.CharField(max_length=255)),
                ("file_sha256", models.CharField(max_length=64)),
                ("file_size", models.BigIntegerField()),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Waiting for a worker"),
                            ("running", "Running"),
                            ("previewed", "Dry run done: waiting for confirmation"),
                            ("done", "Imported"),
                            ("failed", "Failed"),
                            ("cancelled", "Cancelled"),
                        ],
                        default="queued",
                        max_length=10,
                    ),
                ),
                (
                    "dry_run",
                    models.BooleanField(
                        default=True,
                        help_text="The current (or last) pass is the dry run, which writes nothing.",
                    ),
                ),
                ("rows_total", models.PositiveIntegerField(default=0)),
                ("rows_processed", models.PositiveIntegerField(default=0)),
                ("rows_created", models.PositiveIntegerField(default=0)),
                ("rows_skipped", models.PositiveIntegerField(default=0)),
                ("rows_errors", models.PositiveIntegerField(default=0)),
                (
                    "errors",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="The first row errors of the current pass: [{row, errors: {column: [...]}}].",
                    ),
                ),
                (
                    "preview",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text="The dry run's counts, kept once the import runs.",
                    ),
                ),
                ("failure", models.TextField(blank=True, default="")),
                ("created_at", models.DateTimeField()),
                ("confirmed_at", models.DateTimeField(blank=True, null=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                (
                    "progress_at",
                    models.DateTimeField(
                        blank=True, help_text="When a worker last recorded a chunk.", null=True
                    ),
                ),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "coalition",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, to="coalition.coalition"
                    ),
                ),
                (
                    "confirmed_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "tenant",
                    models.ForeignKey(
                        blank=True,
                        help_text="Members: the tenant whose old programme the file comes from; it funds the opening balances.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tenants.tenant",
                    ),
                ),
            ],
            options={
                "verbose_name": "import",
                "verbose_name_plural": "imports",
                "ordering": ["-created_at", "-id"],
                "permissions": [
                    (
                        "import_transactions",
                        "Can import ledger postings: historical transactions and opening balances",
                    )
                ],
            },
        ),
        migrations.AddIndex(
            model_name="importjob",
            index=models.Index(
                condition=models.Q(("status__in", ["queued", "running"])),
                fields=["status", "progress_at"],
                name="import_job_active",
            ),
        ),
        migrations.AddConstraint(
            model_name="importjob",
            constraint=models.CheckConstraint(
                condition=models.Q(("rows_processed__lte", models.F("rows_total"))),
                name="import_job_processed_within_total",
            ),
        ),
        migrations.RunSQL(
            OPENING_ONCE,
            reverse_sql="DROP INDEX IF EXISTS journal_opening_once_per_member_tenant",
        ),
    ]
