"""The Celery application: one app, three named queues.

`inference` runs the fusion model (GPU workers where there are any), `training` runs
fine-tuning one job at a time, `default` takes everything light.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionreview.settings")


class Queue(StrEnum):
    INFERENCE = "inference"
    TRAINING = "training"
    DEFAULT = "default"


app = Celery("fusionreview")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_failure.connect
def _count_task_failure(sender: Any = None, **kwargs: Any) -> None:
    from fusionreview.metrics import task_event_count

    task_event_count(task=getattr(sender, "name", str(sender)), event="failure")


@signals.task_prerun.connect
def _log_context_enter(
    task_id: str = "", task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    # Structured logs carry the listing ids of the task being run (fusionreview.logging).
    from fusionreview.logging import bind_context

    ids = (kwargs or {}).get("listing_ids")
    if ids is None and args and isinstance(args[0], list | tuple):
        ids = list(args[0])
    bind_context(task=getattr(task, "name", ""), task_id=task_id, listing_ids=ids)


@signals.task_postrun.connect
def _log_context_leave(**_: Any) -> None:
    from fusionreview.logging import clear_context

    clear_context()
