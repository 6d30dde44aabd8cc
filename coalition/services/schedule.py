"""The beat schedule, kept in django-celery-beat's tables so staff can see and edit it.

`beat_schedule_sync` runs after every `migrate` (post_migrate): it creates the periodic tasks
that are missing and leaves ones staff edited alone.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask


@dataclass(frozen=True)
class Job:
    name: str
    task: str
    minute: str
    hour: str
    expire_seconds: int
    description: str


JOBS = (
    Job(
        name="Close settlement months due (hourly)",
        task="settlement.tasks.periods_close_due_task",
        minute="30",
        hour="*",
        expire_seconds=50 * 60,
        description="Closes every month that has ended in each coalition's time zone and is "
        "not closed yet, oldest first, writing the tenants' statements.",
    ),
    Job(
        name="Apply tenant arrears (daily)",
        task="settlement.tasks.arrears_apply_task",
        minute="0",
        hour="1",
        expire_seconds=6 * 60 * 60,
        description="A tenant owing money on a statement past its due date may not redeem "
        "until it pays or staff waive it; a tenant that has paid is let back in.",
    ),
    Job(
        name="Apply tenant exits (hourly)",
        task="tenants.tasks.tenants_exit_due_task",
        minute="10",
        hour="*",
        expire_seconds=50 * 60,
        description="A tenant whose exit date has come in its coalition's time zone leaves the "
        "programme: its keys are revoked (its tills are refused from that day in any case).",
    ),
    Job(
        name="Record and send expiry notices (daily)",
        task="coalition.tasks.expiry_notices_task",
        minute="10",
        hour="0",
        expire_seconds=6 * 60 * 60,
        description="One notice per member with points expiring within the notice window "
        "(30 days by default); the sweep expires a lot only a window after its notice.",
    ),
    Job(
        name="Send queued expiry notices (every 15 minutes)",
        task="coalition.tasks.expiry_notices_send_task",
        minute="*/15",
        hour="*",
        expire_seconds=14 * 60,
        description="Retries notices a channel failed to deliver (up to 5 attempts).",
    ),
    Job(
        name="Finish expiry policy migrations (every 15 minutes)",
        task="coalition.tasks.expiry_policy_migrations_task",
        minute="*/15",
        hour="*",
        expire_seconds=14 * 60,
        description="Applies an expiry policy staff asked to apply to existing lots, when the "
        "message that should have started it was lost or its worker stopped.",
    ),
    Job(
        name="Expire points due (daily)",
        task="coalition.tasks.lots_expire_task",
        minute="15",
        hour="0",
        expire_seconds=6 * 60 * 60,
        description="Expires what remains of lots past their last day, as of now.",
    ),
    Job(
        name="Release pending points (daily)",
        task="coalition.tasks.points_release_task",
        minute="5",
        hour="0",
        expire_seconds=6 * 60 * 60,
        description="Makes held-back points spendable once their holdback has ended.",
    ),
    Job(
        name="Resume till batch files (every 5 minutes)",
        task="coalition.tasks.batches_resume_task",
        minute="*/5",
        hour="*",
        expire_seconds=4 * 60,
        description="Queues again batch files whose message was lost or whose worker died.",
    ),
    Job(
        name="Resume import jobs (every 5 minutes)",
        task="coalition.tasks.import_jobs_resume_task",
        minute="*/5",
        hour="*",
        expire_seconds=4 * 60,
        description="Wakes a worker for staff's import jobs whose message was lost or whose "
        "worker died; the job resumes at the last chunk it recorded.",
    ),
    Job(
        name="Carry out automatic erasures (hourly)",
        task="consent.tasks.privacy_erasures_task",
        minute="20",
        hour="*",
        expire_seconds=50 * 60,
        description="Erases members who withdrew consent to the programme (the withdrawal "
        "wakes a worker at once; this catches up if that message was lost) and members whose "
        "retention warning has run out without new activity.",
    ),
    Job(
        name="Warn members inactive past the retention period (daily)",
        task="consent.tasks.retention_warn_task",
        minute="30",
        hour="2",
        expire_seconds=6 * 60 * 60,
        description="Members with no earn or burn for the coalition's retention period (3 "
        "years by default) get one warning and a retention erasure request; the hourly "
        "erasure job erases them once the warning window (30 days by default) has run out, "
        "unless they shopped in between.",
    ),
    Job(
        name="Refresh the dashboard's daily figures (hourly)",
        task="coalition.tasks.daily_figures_refresh_task",
        minute="45",
        hour="*",
        expire_seconds=50 * 60,
        description="Stores the figures of each ended day (by posting date, in each "
        "coalition's time zone) for the admin's dashboard; days it missed are caught up, and "
        "a day stored within 30 minutes of its end is computed again. Hourly, so that every "
        "time zone's midnight is followed within the hour; today is always computed live.",
    ),
    Job(
        name="Forget old idempotency keys (daily)",
        task="coalition.tasks.idempotency_records_purge_task",
        minute="40",
        hour="3",
        expire_seconds=6 * 60 * 60,
        description="Deletes stored till responses older than IDEMPOTENCY_RETENTION_DAYS (>= 7).",
    ),
)


@transaction.atomic
def beat_schedule_sync() -> list[PeriodicTask]:
    created = []
    for job in JOBS:
        if PeriodicTask.objects.filter(name=job.name).exists():
            continue
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=job.minute,
            hour=job.hour,
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        created.append(
            PeriodicTask.objects.create(
                name=job.name,
                task=job.task,
                crontab=crontab,
                expire_seconds=job.expire_seconds,
                description=job.description,
            )
        )
    return created
