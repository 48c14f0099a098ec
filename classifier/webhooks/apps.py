from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Signed HTTP callbacks to integrators: listing classified, review decided, model promoted."""

    name = "classifier.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"
