"""Compute the dashboard's daily rows on demand: every day due, or every day from --since."""

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coalition.models import Coalition
from coalition.services.figures import daily_figures_refresh


class Command(BaseCommand):
    help = (
        "Store the dashboard's daily figures of every ended day not stored yet (all coalitions, "
        "or --coalition SLUG); with --since YYYY-MM-DD, compute every day from then again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--coalition", help="The coalition's slug (default: all).")
        parser.add_argument("--since", help="Recompute every day from this date (YYYY-MM-DD).")

    def handle(self, *args: Any, **options: Any) -> None:
        coalitions = Coalition.objects.order_by("pk")
        if options["coalition"]:
            coalitions = coalitions.filter(slug=options["coalition"])
            if not coalitions.exists():
                raise CommandError(f"No coalition {options['coalition']!r}.")
        try:
            since = date.fromisoformat(options["since"]) if options["since"] else None
        except ValueError as exc:
            raise CommandError("--since is a date, YYYY-MM-DD.") from exc
        for coalition in coalitions:
            written = daily_figures_refresh(coalition=coalition, since=since)
            self.stdout.write(f"{coalition.slug}: {written} days written")
