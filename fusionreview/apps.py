from django.apps import AppConfig


class FusionReviewConfig(AppConfig):
    """The project itself as an app: its system checks (timing that must agree)."""

    name = "fusionreview"
    verbose_name = "FusionReview"

    def ready(self) -> None:
        from fusionreview import checks  # noqa: F401 - registers the checks
