"""The Celery application: one app, three named queues.

`inference` runs the fusion model (GPU workers where there are any), `training` runs
fine-tuning one job at a time, `default` takes everything light.
"""

from __future__ import annotations

import os
from enum import StrEnum

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionreview.settings")


class Queue(StrEnum):
    INFERENCE = "inference"
    TRAINING = "training"
    DEFAULT = "default"


app = Celery("fusionreview")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
