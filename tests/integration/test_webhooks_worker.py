"""Webhooks through a real Celery worker, a real beat and a Redis broker: collect, POST, 500, backoff,
the retry picked up by beat's collector when due (no broker countdown), 200."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.review import decisions as review_decisions
from classifier.review import services as review_svc
from classifier.webhooks import services
from classifier.webhooks.models import WebhookDelivery
from classifier.webhooks.signing import signature_verify
from tests import factories
from tests.integration.conftest import wait_until, worker_env
from tests.integration.test_webhooks import Receiver

pytestmark = [pytest.mark.integration]

BEAT_COMMAND = [sys.executable, "-m", "celery", "-A", "fusionreview", "beat"]


@pytest.fixture
def worker_extra_env() -> dict[str, str]:
    return {"WEBHOOK_RETRY_BASE_SECONDS": "1", "WEBHOOK_MAX_ATTEMPTS": "3", "WEBHOOK_COLLECT_INTERVAL": "1"}


@pytest.fixture
def beat_process(
    celery_worker_process, worker_media_root, worker_cache, celery_broker, worker_extra_env, tmp_path
):
    """`celery beat` as production runs it (its schedule from settings), in its own process group."""
    from django.db import connection

    env = worker_env(
        db_name=connection.settings_dict["NAME"],
        media_root=worker_media_root,
        broker_url=celery_broker,
        cache_url=worker_cache,
        extra=worker_extra_env,
    )
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*BEAT_COMMAND, "-s", str(tmp_path / "beat-schedule"), "--loglevel=INFO"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if os.environ.get("SHOW_WORKER_LOG"):
            sys.stderr.write(log_path.read_text(errors="replace")[-8000:])


def test_a_worker_delivers_a_decision_retrying_after_a_500(celery_worker_process, beat_process, auditor):
    with Receiver([500, 200]) as receiver:
        endpoint = services.webhook_endpoint_create(name="erp", url=receiver.url, events=["review.decided"])
        task = factories.review_task()
        claimed = review_svc.review_claim_next(auditor=auditor)
        review_decisions.review_decide(
            auditor=auditor, task_id=task.pk, version=claimed.version, action="approve"
        )

        # Beat sends webhooks.collect every second (WEBHOOK_COLLECT_INTERVAL=1): it sends the first
        # attempt, and the retry once its 1 s backoff has passed.
        wait_until(
            lambda: WebhookDelivery.objects.filter(status="succeeded").exists(),
            timeout=60,
            what="the delivery to succeed (SHOW_WORKER_LOG=1 prints the worker's log)",
        )
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.last_status_code) == (2, 200)
    assert len(receiver.requests) == 2
    stamps = []
    for request in receiver.requests:
        header = request["headers"]["x-fusionreview-signature"]
        assert signature_verify(secret=endpoint.secret, body=request["body"], header=header)
        stamps.append(int(header.split(",")[0].removeprefix("t=")))
    assert stamps[1] >= stamps[0] + 1  # the retry waited for its backoff (1 s)
    assert beat_process.poll() is None
