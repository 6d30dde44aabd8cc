"""Every purpose gets an English text for the notice version in force, so each consent event
points at wording that exists. Staff replace it with their own by publishing a new version."""

from django.db import migrations

DEFAULT_TEXTS = {
    "programme": (
        "I join the mall's loyalty programme: the operator keeps my identifiers and my purchases at "
        "its tenants to give and redeem points, and shares no personal data with tenants."
    ),
    "marketing_mall": "The mall may send me offers and news about the mall and its events.",
    "analytics": (
        "The operator may analyse my purchases to personalise offers and to give tenants "
        "aggregate figures (never about me alone)."
    ),
}
GENERIC = "The operator processes my data for this purpose as described at the desk."


def forwards(apps, schema_editor):
    ConsentPurpose = apps.get_model("consent", "ConsentPurpose")
    ConsentNotice = apps.get_model("consent", "ConsentNotice")
    for purpose in ConsentPurpose.objects.all():
        ConsentNotice.objects.get_or_create(
            purpose=purpose,
            version=purpose.notice_version,
            language="en",
            defaults={"text": DEFAULT_TEXTS.get(purpose.code, GENERIC)},
        )


class Migration(migrations.Migration):
    dependencies = [("consent", "0003_consent_notice_texts")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
