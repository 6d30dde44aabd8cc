"""`manage.py create_tenant --slug S --name N --category C [--coalition C]`."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coalition.cli import add_coalition_argument, coalition_for_command
from tenants.models import Tenant, TenantCategory
from tenants.services import tenant_create


class Command(BaseCommand):
    help = (
        "Create a tenant that is active, may issue and redeem, and settles at the coalition's "
        "default rates. Prints only the slug."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True, help="Short name, e.g. apparel-co.")
        parser.add_argument("--name", required=True, help="The tenant's display name.")
        parser.add_argument(
            "--category",
            required=True,
            help=f"One of: {', '.join(TenantCategory.values)}.",
        )
        add_coalition_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        coalition = coalition_for_command(options["coalition"])
        slug, name = options["slug"].strip(), options["name"].strip()
        category = options["category"].strip().lower()
        if category not in TenantCategory.values:
            raise CommandError(
                f"--category {category!r}: use one of {', '.join(TenantCategory.values)}."
            )
        if Tenant.objects.filter(coalition=coalition, slug=slug).exists():
            raise CommandError(f"Tenant {slug!r} already exists in {coalition.slug}.")
        try:
            tenant = tenant_create(coalition=coalition, slug=slug, name=name, category=category)
        except ValidationError as exc:
            problems = "; ".join(f"--{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            raise CommandError(problems) from exc
        self.stdout.write(tenant.slug)
