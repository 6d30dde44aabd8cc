from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Consent and privacy"

    def ready(self) -> None:
        from consent.audit import audit_register

        audit_register()
