"""`manage.py create_coalition --slug S --name N`: the one step a fresh database needs."""

from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import IntegrityError

from coalition.models import Coalition
from coalition.services import coalition_create

SLUG_MAX = Coalition._meta.get_field("slug").max_length or 50
NAME_MAX = Coalition._meta.get_field("name").max_length or 200


class Command(BaseCommand):
    help = (
        "Create a coalition (a mall's programme) with the defaults of domain.md: 1 point per "
        "100.00 spent, a point worth 1.00. Prints only the slug."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True, help="Short name used in URLs, e.g. phoenix.")
        parser.add_argument("--name", required=True, help="The programme's display name.")
        parser.add_argument("--currency", default="INR", help="ISO 4217 code (default INR).")
        parser.add_argument(
            "--time-zone",
            default="Asia/Kolkata",
            help="IANA zone for local dates and the monthly close (default Asia/Kolkata).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug, name = options["slug"].strip(), options["name"].strip()
        currency, time_zone = options["currency"].strip(), options["time_zone"].strip()
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"--slug {slug!r}: use letters, digits, '-' or '_'.") from exc
        if len(slug) > SLUG_MAX:
            raise CommandError(f"--slug is at most {SLUG_MAX} characters.")
        if not name or len(name) > NAME_MAX:
            raise CommandError(f"--name must be 1 to {NAME_MAX} characters.")
        if len(currency) != 3 or not currency.isalpha():
            raise CommandError(f"--currency {currency!r}: give a three-letter ISO 4217 code.")
        if Coalition.objects.filter(slug=slug).exists():
            raise CommandError(f"A coalition with slug {slug!r} already exists.")
        try:
            coalition = coalition_create(
                slug=slug, name=name, currency=currency, time_zone=time_zone
            )
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CommandError(
                f"--time-zone {time_zone!r} is not a known IANA time zone (e.g. Asia/Kolkata)."
            ) from exc
        except IntegrityError as exc:  # created by someone else since the check above
            raise CommandError(f"A coalition with slug {slug!r} already exists.") from exc
        self.stdout.write(coalition.slug)
