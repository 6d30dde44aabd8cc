"""`manage.py close_period --month YYYY-MM [--coalition C]`: close a month by hand (backfills)."""

from datetime import date, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coalition.cli import add_coalition_argument, coalition_for_command
from coalition.errors import DomainError
from settlement.services import CloseInProgress, period_close, reconciliations_verify_pending


def _month(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError as exc:
        raise CommandError(f"--month {value!r}: write it as YYYY-MM, e.g. 2026-10.") from exc


class Command(BaseCommand):
    help = (
        "Close a settlement month, and any earlier month still open, writing each tenant's "
        "statement. Closing a closed month changes nothing. Prints one line per tenant."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", required=True, help="The month to close, YYYY-MM.")
        add_coalition_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        coalition = coalition_for_command(options["coalition"])
        month = _month(options["month"])
        try:
            period = period_close(coalition, month)
        except DomainError as exc:
            raise CommandError(str(exc.detail)) from exc
        except CloseInProgress as exc:
            raise CommandError(f"{exc} Try again when it has finished.") from exc
        self.stdout.write(f"{coalition.name}: {period} closed ({period.journals} journals)")
        self.stdout.write("Checking the ledger (every entry ever written)...")
        reconciliations_verify_pending()
        found = period.reconciliations.order_by("-created_at").first()
        if found is not None:
            self.stdout.write(f"  Reconciliation: {found.verdict}")
            for problem in found.discrepancies:
                self.stdout.write(f"    {problem}")
        for statement in period.statements.select_related("tenant").order_by("tenant__name"):
            self.stdout.write(
                f"  {statement.tenant.name}: {statement.net_amount} "
                f"({statement.direction}), due {statement.due_on}"
            )
