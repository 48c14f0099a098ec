"""Training jobs and first evaluations whose message was lost are sent again by the sweeper (issue 13).

On PostgreSQL with a real Redis broker: the send fails while the broker is down (the job stays
`queued`), the beat's training sweep puts exactly one message on the `training` queue once the job
is older than TRAINING_REDISPATCH_AFTER, not again while that message waits, and never for a job
that is running or finished; a re-sent message for a job someone already started does nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
import redis
from django.core.cache import cache
from django.utils import timezone

from classifier.models import ModelEvaluation, ModelVersion, TrainingJob
from classifier.registry.tasks import evaluate_model_version
from classifier.training.tasks import train_model_version, training_jobs_sweep, training_resend_lost
from fusionreview.dispatch import task_publish
from tests import factories
from tests.integration.conftest import _reset_connections

pytestmark = pytest.mark.integration


def _training_queue(broker_url: str) -> list[tuple[str, list]]:
    """(task name, args) of each message waiting on the broker's `training` queue."""
    client = redis.Redis.from_url(broker_url)
    messages = [json.loads(raw) for raw in client.lrange("training", 0, -1)]
    out = []
    for message in messages:
        body = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], body[0]))
    return out


def _age(model, pk: int, seconds: int) -> None:
    model.objects.filter(pk=pk).update(created_at=timezone.now() - dt.timedelta(seconds=seconds))


@pytest.fixture
def sweep_settings(settings):
    settings.TRAINING_REDISPATCH_AFTER = 60
    settings.EVALUATE_ON_REGISTER = True
    cache.clear()
    yield settings
    cache.clear()


def test_a_training_job_whose_send_failed_is_sent_again_once(
    transactional_db, worker_cache, celery_broker, sweep_settings
):
    from fusionreview.celery import app

    base = factories.model_version("sweep-base")
    ModelEvaluation.objects.create(candidate=base, eval_set="frozen", passed=True, margin_points=0.5)
    job = TrainingJob.objects.create(base_version=base, data_window_end=timezone.now(), epochs=1)

    # The broker is down when the job is started: the send fails, the job stays queued.
    dead = "redis://127.0.0.1:1/0"
    app.conf.update(broker_url=dead, result_backend=dead)
    _reset_connections(app)
    try:
        assert task_publish(train_model_version, args=[job.pk]) is False
        # The sweep cannot send either while the broker is down; it says so and tries next time.
        _age(TrainingJob, job.pk, 120)
        assert training_resend_lost()["unsent"] == 1
    finally:
        app.conf.update(broker_url=celery_broker, result_backend=celery_broker)
        _reset_connections(app)
    assert _training_queue(celery_broker) == []

    # The beat's sweep (the task itself) sends it once the broker is back...
    report = training_jobs_sweep.apply().get()
    assert report["jobs_resent"] == 1 and report["unsent"] == 0
    assert _training_queue(celery_broker) == [("classifier.tasks.train_model_version", [job.pk])]
    # ...and not again while that message waits behind other work on the training queue.
    assert training_resend_lost()["jobs_resent"] == 0
    assert len(_training_queue(celery_broker)) == 1
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.QUEUED


def test_running_finished_and_fresh_jobs_are_never_sent_again(
    transactional_db, worker_cache, celery_broker, sweep_settings
):
    base = factories.model_version("sweep-base")
    ModelEvaluation.objects.create(candidate=base, eval_set="frozen", passed=True, margin_points=0.5)
    now = timezone.now()
    for status in (TrainingJob.Status.SUCCEEDED, TrainingJob.Status.FAILED, TrainingJob.Status.CANCELLED):
        old = TrainingJob.objects.create(base_version=base, data_window_end=now, status=status)
        _age(TrainingJob, old.pk, 3600)
    running = TrainingJob.objects.create(
        base_version=base, data_window_end=now, status=TrainingJob.Status.RUNNING, heartbeat_at=now
    )
    _age(TrainingJob, running.pk, 3600)
    assert training_resend_lost() == {"jobs_resent": 0, "evaluations_resent": 0, "unsent": 0}
    assert _training_queue(celery_broker) == []

    # A message that arrives for a job already running (a re-send racing the first one) starts nothing.
    assert train_model_version.apply(args=[running.pk]).get() == TrainingJob.Status.RUNNING
    running.refresh_from_db()
    assert running.status == TrainingJob.Status.RUNNING and running.epoch == 0

    # A queued job younger than the bound is left to its own message.
    TrainingJob.objects.filter(pk=running.pk).update(status=TrainingJob.Status.SUCCEEDED)
    TrainingJob.objects.create(base_version=base, data_window_end=now)
    assert training_resend_lost()["jobs_resent"] == 0


def test_a_registered_version_never_evaluated_gets_its_evaluation_sent_again(
    transactional_db, worker_cache, celery_broker, sweep_settings
):
    evaluated = factories.model_version("sweep-evaluated")
    ModelEvaluation.objects.create(candidate=evaluated, eval_set="frozen", passed=True, margin_points=0.5)
    lost = factories.model_version("sweep-lost-evaluation")
    retired = factories.model_version("sweep-retired")
    ModelVersion.objects.filter(pk=retired.pk).update(status=ModelVersion.Status.RETIRED)
    for version in (evaluated, lost, retired):
        _age(ModelVersion, version.pk, 600)

    assert training_resend_lost()["evaluations_resent"] == 1
    assert _training_queue(celery_broker) == [("classifier.tasks.evaluate_model_version", [lost.pk, None])]
    assert training_resend_lost()["evaluations_resent"] == 0  # its message is waiting

    # The evaluation happened meanwhile (e.g. the first message was only late): the re-sent one stops.
    ModelEvaluation.objects.create(candidate=lost, eval_set="frozen", passed=True, margin_points=0.5)
    result = evaluate_model_version.apply(args=[lost.pk, None], kwargs={"if_unevaluated": True}).get()
    assert result is None and ModelEvaluation.objects.filter(candidate=lost).count() == 1


def test_an_evaluation_that_keeps_failing_is_sent_a_bounded_number_of_times(
    transactional_db, worker_cache, celery_broker, sweep_settings
):
    sweep_settings.TRAINING_EVALUATION_MAX_SENDS = 2
    broken = factories.model_version("sweep-broken")
    _age(ModelVersion, broken.pk, 600)
    sent = 0
    for _ in range(4):
        sent += training_resend_lost()["evaluations_resent"]
        cache.delete(f"training:sent:evaluation:{broken.pk}")  # as if TRAINING_REDISPATCH_AFTER passed
    assert sent == 2
    assert not ModelEvaluation.objects.filter(candidate=broken).exists()
