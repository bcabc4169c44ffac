from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "HCV diagnosis"
    default_auto_field = "django.db.models.BigAutoField"
