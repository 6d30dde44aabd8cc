from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate


def _after_migrate(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    # The beat schedule and the staff groups (with exactly their declared permissions) exist
    # after every migrate (and after a test database flush).
    from coalition.services.schedule import beat_schedule_sync
    from coalition.services.staff import staff_groups_sync

    beat_schedule_sync()
    staff_groups_sync(using=using)


class CoalitionConfig(AppConfig):
    name = "coalition"
    verbose_name = "Programme and ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, sender=self, dispatch_uid="coalition.after_migrate")
