from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge graph"
    # The knowledge app's periodic tasks (activation sweep, suggestions) are in the one beat
    # schedule, settings.CELERY_BEAT_SCHEDULE, with every other periodic job.
