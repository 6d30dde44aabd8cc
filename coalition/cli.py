"""What every management command that acts on one coalition shares: choosing it."""

from django.core.management.base import CommandError, CommandParser

from coalition.models import Coalition


def add_coalition_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--coalition", help="The coalition's slug; may be left out when there is only one."
    )


def coalition_for_command(slug: str | None) -> Coalition:
    """The coalition named by `--coalition`, or the only one there is."""
    if slug:
        coalition = Coalition.objects.filter(slug=slug).first()
        if coalition is None:
            raise CommandError(f"No coalition with slug {slug!r}.")
        return coalition
    coalitions = list(Coalition.objects.order_by("slug")[:2])
    if not coalitions:
        raise CommandError("There is no coalition yet: run create_coalition first.")
    if len(coalitions) > 1:
        raise CommandError("There are several coalitions: name one with --coalition.")
    return coalitions[0]
