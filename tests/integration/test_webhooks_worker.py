"""Webhooks through a real Celery worker and Redis broker: collect, POST, 500, backoff, retry, 200."""

from __future__ import annotations

import pytest

from classifier.services import review as review_svc
from classifier.webhooks import services
from classifier.webhooks.models import WebhookDelivery
from classifier.webhooks.signing import signature_verify
from classifier.webhooks.tasks import webhooks_collect
from tests import factories
from tests.integration.conftest import wait_until
from tests.integration.test_webhooks import Receiver

pytestmark = [pytest.mark.integration]


@pytest.fixture
def worker_extra_env() -> dict[str, str]:
    return {"WEBHOOK_RETRY_BASE_SECONDS": "1", "WEBHOOK_MAX_ATTEMPTS": "3"}


def test_a_worker_delivers_a_decision_retrying_after_a_500(celery_worker_process, auditor):
    with Receiver([500, 200]) as receiver:
        endpoint = services.webhook_endpoint_create(name="erp", url=receiver.url, events=["review.decided"])
        task = factories.review_task()
        claimed = review_svc.review_claim_next(auditor=auditor)
        review_svc.review_decide(auditor=auditor, task_id=task.pk, version=claimed.version, action="approve")

        webhooks_collect.delay()  # what beat sends every WEBHOOK_COLLECT_INTERVAL seconds
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
    assert stamps[1] >= stamps[0] + 1  # the retry waited for its countdown (1 s backoff)
