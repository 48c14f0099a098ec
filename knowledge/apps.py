from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge graph"
    # The knowledge app's periodic tasks (activation sweep, suggestions) are in the one beat
    # schedule, settings.CELERY_BEAT_SCHEDULE, with every other periodic job.

    def ready(self) -> None:
        # Celery's autodiscovery looks for `<app>.tasks`; the tasks live in their feature packages.
        from knowledge.suggestions import tasks as suggestions_tasks
        from knowledge.versions import tasks as versions_tasks

        del suggestions_tasks, versions_tasks
