"""`manage.py issue_till_key --tenant S --till T [--store CODE] [--rotate] [--coalition C]`."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import transaction

from coalition.cli import add_coalition_argument, coalition_for_command
from coalition.errors import InvalidRequest
from tenants.models import Tenant, Till
from tenants.services import till_create, till_key_issue, till_keys_revoke


class Command(BaseCommand):
    help = (
        "Issue a new API key for a till, creating the store and till if needed. Prints only the "
        "key, once: it is stored hashed and cannot be shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--till", required=True, help="The till's code, e.g. pos-1.")
        parser.add_argument(
            "--store", default="main", help="Store code for a new till (default: main)."
        )
        parser.add_argument(
            "--rotate", action="store_true", help="Also revoke the till's other live keys."
        )
        add_coalition_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        coalition = coalition_for_command(options["coalition"])
        tenant = Tenant.objects.filter(coalition=coalition, slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r} in {coalition.slug}.")
        for option in ("till", "store"):
            try:
                validate_slug(options[option])
            except ValidationError as exc:
                raise CommandError(f"--{option}: use letters, digits, '-' or '_'.") from exc
        with transaction.atomic():
            till = till_create(
                tenant=tenant, store_code=options["store"], till_code=options["till"]
            )
            try:
                key, raw = till_key_issue(till=till, name=f"{till.code} (command line)")
            except InvalidRequest as exc:
                raise CommandError(exc.detail) from exc
            if options["rotate"]:
                till_keys_revoke(tills=Till.objects.filter(pk=till.pk), reason="Rotated", keep=key)
        self.stdout.write(raw)
