"""The evaluation gate on the `training` queue."""

from __future__ import annotations

import contextlib
import logging

from celery import shared_task
from django.contrib.auth import get_user_model
from django.core.cache import cache

from classifier.registry.evaluation import model_version_evaluate
from classifier.registry.models import ModelEvaluation, ModelVersion

log = logging.getLogger(__name__)

EVALUATING_KEY = "training:evaluating:{id}"


# Longer than a gate run takes; a worker killed mid-run frees the version for a new run after this.
EVALUATION_LOCK_SECONDS = 1800


@shared_task(name="classifier.tasks.evaluate_model_version", acks_late=True)
def evaluate_model_version(
    version_id: int, actor_id: int | None = None, if_unevaluated: bool = False
) -> bool | None:
    """Run the evaluation gate for a version again (e.g. after production changed).

    `if_unevaluated` (the sweeper's re-send of a registration's first evaluation): do nothing when the
    version already has an evaluation. Two messages for one version never run at the same time (a lock
    in the cache while it runs), so a re-sent message finds the first one's result and stops.
    """

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        log.warning("model version %s vanished; nothing to evaluate", version_id)
        return None
    lock = EVALUATING_KEY.format(id=version_id)
    try:
        locked = cache.add(lock, 1, timeout=EVALUATION_LOCK_SECONDS)
    except Exception:  # the cache is down: run unguarded rather than not at all
        locked = None
    if locked is False:
        log.info("model version %s is being evaluated by another task; this message stops", version_id)
        return None
    try:
        if if_unevaluated and ModelEvaluation.objects.filter(candidate_id=version_id).exists():
            return None
        actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
        return model_version_evaluate(version=version, actor=actor).passed
    finally:
        if locked:
            with contextlib.suppress(Exception):
                cache.delete(lock)
