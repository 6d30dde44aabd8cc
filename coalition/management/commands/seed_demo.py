"""`manage.py seed_demo`: the demo mall `make run` loads, or just its logins when it is there."""

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from coalition.demo import DEMO_SLUG, demo_load


def _whole(smallest: int, largest: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not smallest <= value <= largest:
            raise ValueError(raw)
        return value

    parse.__name__ = f"whole number from {smallest} to {largest}"  # argparse shows the name
    return parse


class Command(BaseCommand):
    help = (
        "Load the demo mall (slug 'demo'): tenants, members and months of history posted "
        "through the services. Does nothing but print the staff logins if it is loaded already."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--members", type=_whole(20, 99_999), default=5000, help="Members (5000)."
        )
        # At most the 12-month expiry term: the sweep runs once, at the end, so a longer history
        # would spend points that should have expired on the way.
        parser.add_argument(
            "--months", type=_whole(1, 12), default=6, help="Months of history, 1 to 12 (6)."
        )
        parser.add_argument("--seed", type=int, default=42, help="Random seed (42).")
        parser.add_argument(
            "--workers",
            type=_whole(1, 32),
            # Forking is only the default where it is safe with the libraries loaded (Linux).
            default=min(os.cpu_count() or 1, 4) if sys.platform == "linux" else 1,
            help="Processes posting the histories side by side (Linux default: one per CPU, "
            "at most 4).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        result = demo_load(
            members=options["members"],
            months=options["months"],
            seed=options["seed"],
            workers=options["workers"],
            progress=self.stderr.write,  # stdout is the logins, which `make run` shows at the end
        )
        name = result.coalition.name
        if result.problems:
            listed = "\n".join(f"  {problem}" for problem in result.problems[:20])
            raise CommandError(
                f"The demo ledger does not verify ({len(result.problems)} problems):\n{listed}\n"
                "This is a bug in the services or in coalition/demo.py; please report it."
            )
        if result.created:
            members = result.coalition.members.count()
            seconds = time.monotonic() - started
            self.stdout.write(
                f"Demo mall {name!r} (slug {DEMO_SLUG}) loaded: {members:,} members, "
                f"ledger verified, in {seconds:.0f} s."
            )
        elif result.complete:
            self.stdout.write(f"Demo mall {name!r} (slug {DEMO_SLUG}) is already loaded.")
        else:
            self.stderr.write(
                f"Demo mall {name!r} is incomplete: an earlier load was interrupted or did not "
                "verify. To load it again, start from an empty database (e.g. `make clean-db`)."
            )
        staff = [login for login in result.logins if not login[1].startswith("tenant portal")]
        portal = [login for login in result.logins if login[1].startswith("tenant portal")]
        self.stdout.write("Staff logins, at /admin/ (demo only, password = username):")
        for username, role in staff:
            self.stdout.write(f"  {username} / {username}  ({role})")
        if portal:
            self.stdout.write("Tenant portal logins, at /portal/ (demo only, password = username):")
            for username, role in portal:
                self.stdout.write(
                    f"  {username} / {username}  ({role.removeprefix('tenant portal: ')})"
                )
        self.stdout.write("make run prints the web server's address.")
