from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge graph"

    def ready(self) -> None:
        # The knowledge app owns its periodic tasks: added in place to the settings' beat schedule
        # (the same dict object Celery reads), without overriding an entry a deployment set.
        from django.conf import settings

        from knowledge.tasks import BEAT_SCHEDULE

        schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None)
        if isinstance(schedule, dict):
            for name, entry in BEAT_SCHEDULE.items():
                schedule.setdefault(name, entry)
