"""Every task reaches its queue through settings.CELERY_TASK_ROUTES (issue 14: no warnings in a clean run).

A task's own `queue=` attribute makes Celery print "The 'queue' task attribute is deprecated" when the
app binds it (and Celery 6 ignores it), so the queues are chosen in one place, the routes.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from celery.exceptions import CDeprecationWarning

from fusionreview.celery import app

ROUTING_ATTRIBUTES = ("queue", "exchange", "exchange_type", "routing_key", "delivery_mode", "priority")
EXPECTED_QUEUES = {
    "classifier.tasks.classify_listings": "inference",
    "classifier.tasks.train_model_version": "training",
    "classifier.tasks.evaluate_model_version": "training",
    "classifier.tasks.listings_sweep": "default",
    "classifier.tasks.training_jobs_sweep": "default",
    "classifier.tasks.drift_check": "default",
    "classifier.tasks.review.review_release_expired": "default",
    "knowledge.tasks.knowledge_snapshot_push": "default",
    "knowledge.tasks.knowledge_activation_sweep": "default",
    "knowledge.tasks.knowledge_suggestions_refresh": "default",
    "knowledge.tasks.knowledge_reroute": "default",
    "knowledge.tasks.knowledge_reroute_sweep": "default",
    "webhooks.collect": "default",
    "webhooks.deliver": "default",
}


def _project_tasks() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CDeprecationWarning)  # binding a task with `queue=` would raise here
        app.loader.import_default_modules()
        return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_task_is_routed_to_its_queue_by_the_settings():
    tasks = _project_tasks()
    assert set(EXPECTED_QUEUES) <= set(tasks), set(EXPECTED_QUEUES) - set(tasks)
    router = app.amqp.router
    for name in tasks:
        queue = router.route({}, name)["queue"].name
        assert queue == EXPECTED_QUEUES.get(name, "default"), f"{name} goes to {queue}"


def test_no_task_declares_a_deprecated_routing_attribute():
    for name, task in _project_tasks().items():
        # Binding sets `priority` to the configured default (None) on every task class; a value
        # of its own is what the task's author declared.
        declared = [attr for attr in ROUTING_ATTRIBUTES if type(task).__dict__.get(attr) is not None]
        assert not declared, f"{name} declares {declared}: route it in CELERY_TASK_ROUTES instead"


def test_the_worker_commands_consume_every_routed_queue():
    root = Path(__file__).resolve().parents[2]
    compose = (root / "docker-compose.yml").read_text()
    consumed = {
        q
        for group in re.findall(r"celery -A fusionreview worker -Q (\S+)", compose)
        for q in group.split(",")
    }
    assert set(EXPECTED_QUEUES.values()) <= consumed, consumed
    conftest = (root / "tests" / "integration" / "conftest.py").read_text()
    default = re.search(r'queues: str = "([^"]+)"', conftest).group(1)
    assert set(EXPECTED_QUEUES.values()) <= set(default.split(",")), default
