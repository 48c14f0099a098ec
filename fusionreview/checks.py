"""System checks for settings that only make sense together (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.compatibility, deploy=True)
def timing_agrees(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Visibility timeout > hard time limit + retry delay; redispatch mark > hard time limit."""
    problems: list[checks.CheckMessage] = []
    held = settings.CLASSIFY_TIME_LIMIT + settings.CLASSIFY_RETRY_MAX_DELAY
    if settings.CELERY_BROKER_URL and held >= settings.CELERY_VISIBILITY_TIMEOUT:
        problems.append(
            checks.Warning(
                f"CELERY_VISIBILITY_TIMEOUT ({settings.CELERY_VISIBILITY_TIMEOUT}s) must exceed "
                f"CLASSIFY_TIME_LIMIT + CLASSIFY_RETRY_MAX_DELAY ({held}s)",
                hint="Otherwise Redis hands a running (or waiting-to-retry) task to a second worker.",
                id="fusionreview.W001",
            )
        )
    if settings.CLASSIFY_REDISPATCH_AFTER <= settings.CLASSIFY_TIME_LIMIT:
        problems.append(
            checks.Warning(
                f"CLASSIFY_REDISPATCH_AFTER ({settings.CLASSIFY_REDISPATCH_AFTER}s) must exceed "
                f"CLASSIFY_TIME_LIMIT ({settings.CLASSIFY_TIME_LIMIT}s)",
                hint="Otherwise the sweeper sends a batch again while it is still running.",
                id="fusionreview.W002",
            )
        )
    if settings.CLASSIFY_SOFT_TIME_LIMIT >= settings.CLASSIFY_TIME_LIMIT:
        problems.append(
            checks.Warning(
                "CLASSIFY_SOFT_TIME_LIMIT must be below CLASSIFY_TIME_LIMIT",
                hint="The soft limit lets a batch give its listings back before the hard kill.",
                id="fusionreview.W003",
            )
        )
    return problems
