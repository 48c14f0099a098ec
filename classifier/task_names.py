"""The Celery task names of the classifier app, in one place.

Services queue work by name (`fusionreview.dispatch.task_dispatch(task_signature(...))`) and the
tasks modules register under the same names: a task module imports its services, never the other
way round. The names are the ones queued messages, routes and the beat schedule already use.
"""

from __future__ import annotations

from celery import current_app
from celery.canvas import Signature

CLASSIFY_LISTINGS = "classifier.tasks.classify_listings"
LISTINGS_SWEEP = "classifier.tasks.listings_sweep"
REVIEW_RELEASE_EXPIRED = "classifier.tasks.review.review_release_expired"
TRAIN_MODEL_VERSION = "classifier.tasks.train_model_version"
EVALUATE_MODEL_VERSION = "classifier.tasks.evaluate_model_version"
TRAINING_JOBS_SWEEP = "classifier.tasks.training_jobs_sweep"
DRIFT_CHECK = "classifier.tasks.drift_check"


def task_signature(name: str) -> Signature:
    """The task registered as `name`, to send (its module is imported when the app starts)."""
    return current_app.signature(name)
