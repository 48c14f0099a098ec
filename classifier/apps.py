from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _bootstrap_roles(sender, **kwargs) -> None:
    # Permissions exist only after migrate's own post_migrate handler ran; ours runs after it.
    from fusionreview.roles import roles_bootstrap

    roles_bootstrap()


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = "Classification and review"

    def ready(self) -> None:
        post_migrate.connect(_bootstrap_roles, sender=self, dispatch_uid="classifier_roles_bootstrap")
        # The knowledge graph's hooks: publish re-routes the review queue; facts about listings.
        from classifier.reroute.wiring import connect

        connect()
        # Celery's autodiscovery looks for `<app>.tasks`; the tasks live in their feature packages.
        from classifier.listings import tasks as listings_tasks
        from classifier.registry import tasks as registry_tasks
        from classifier.review import tasks as review_tasks
        from classifier.training import tasks as training_tasks

        del listings_tasks, registry_tasks, review_tasks, training_tasks
