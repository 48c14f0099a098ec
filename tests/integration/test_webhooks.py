"""Webhooks against a real local HTTP receiver: HMAC signatures, retries with backoff, giving up."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.utils import timezone

from classifier.audit import audit_record
from classifier.models import AuditEvent, ModelVersion
from classifier.registry import services as training_svc
from classifier.review import decisions as review_decisions
from classifier.review import services as review_svc
from classifier.webhooks import services
from classifier.webhooks.models import WebhookDelivery, WebhookEvent
from classifier.webhooks.signing import signature_header, signature_verify
from classifier.webhooks.tasks import webhooks_collect
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


class Receiver:
    """An HTTP server in a thread that records each POST and answers with the next scripted status."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                # HTTP header names are case-insensitive (urllib sends "X-fusionreview-event").
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append({"headers": headers, "body": body, "path": self.path})
                code = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"boom")

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/fusion"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0  # retries due at once: the next collection sends them
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    factories.review_cache_reset()


def _decide_approve(auditor):
    task = factories.review_task()
    claimed = review_svc.review_claim_next(auditor=auditor)
    assert claimed.pk == task.pk
    return review_decisions.review_decide(
        auditor=auditor, task_id=task.pk, version=claimed.version, action="approve"
    )


def _collect_and_send(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        webhooks_collect.apply()


def test_signatures_verify_and_refuse_tampering_and_old_timestamps():
    body = b'{"id":"evt_1"}'
    header = signature_header(secret="whsec_x", body=body, timestamp=1_000_000)
    assert signature_verify(secret="whsec_x", body=body, header=header, now=1_000_010)
    assert not signature_verify(secret="whsec_x", body=body + b" ", header=header, now=1_000_010)
    assert not signature_verify(secret="whsec_other", body=body, header=header, now=1_000_010)
    assert not signature_verify(secret="whsec_x", body=body, header=header, now=1_000_000 + 301)
    assert not signature_verify(secret="whsec_x", body=body, header="garbage", now=1_000_000)


def test_a_review_decision_is_delivered_signed_and_retried_after_a_500(
    auditor, django_capture_on_commit_callbacks
):
    with Receiver([500, 200]) as receiver:
        endpoint = services.webhook_endpoint_create(name="erp", url=receiver.url, events=["review.decided"])
        outcome = _decide_approve(auditor)
        _collect_and_send(django_capture_on_commit_callbacks)
        # The 500 leaves the delivery pending; the retry is the collector's, not a broker countdown.
        assert len(receiver.requests) == 1
        assert WebhookDelivery.objects.get().status == "pending"
        _collect_and_send(django_capture_on_commit_callbacks)  # beat's next WEBHOOK_COLLECT_INTERVAL tick

    assert len(receiver.requests) == 2  # the 500, then the retry that succeeded
    first, second = receiver.requests
    assert first["body"] == second["body"]  # the same event, byte for byte
    for request in receiver.requests:
        assert request["path"] == "/hooks/fusion"
        assert request["headers"]["x-fusionreview-event"] == "review.decided"
        assert signature_verify(
            secret=endpoint.secret,
            body=request["body"],
            header=request["headers"]["x-fusionreview-signature"],
        )
    event = json.loads(second["body"])
    assert event["type"] == "review.decided" and event["id"].startswith("evt_")
    assert event["data"]["action"] == "approve" and event["data"]["auditor"] == "audrey"
    assert event["data"]["decision_id"] == outcome.decision.pk
    assert event["data"]["category"] == "Apparel > Topwear > Tshirts"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)

    # Collecting and sending again changes nothing: one event, one delivery, no third POST.
    with Receiver([200]) as again:
        WebhookDelivery.objects.update()  # no-op; the endpoint still points at the old port
        _collect_and_send(django_capture_on_commit_callbacks)
        assert services.webhook_delivery_attempt(delivery_id=delivery.pk).retry_in is None
    assert again.requests == [] and WebhookEvent.objects.count() == 1 and WebhookDelivery.objects.count() == 1


def test_retries_back_off_and_then_give_up(auditor, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    with Receiver([500]) as receiver:
        services.webhook_endpoint_create(name="erp", url=receiver.url, events=["review.decided"])
        _decide_approve(auditor)
        _collect_and_send(django_capture_on_commit_callbacks)
        delivery = WebhookDelivery.objects.get()
        # One attempt: the next is not due for 10 s, so collecting again now sends nothing.
        _collect_and_send(django_capture_on_commit_callbacks)
        assert len(receiver.requests) == 1 and delivery.status == "pending" and delivery.attempts == 1
        assert timedelta(seconds=9) < delivery.next_attempt_at - timezone.now() <= timedelta(seconds=10)

        later = timezone.now() + timedelta(seconds=11)
        result = services.webhook_delivery_attempt(delivery_id=delivery.pk, now=later)
        assert result.retry_in == 30  # 10 s, then 3 x 10 s
        later += timedelta(seconds=31)
        assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=later).retry_in == 90
        later += timedelta(seconds=91)
        final = services.webhook_delivery_attempt(delivery_id=delivery.pk, now=later)
        assert final.retry_in is None and not final.delivered
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 4, 500)
    assert len(receiver.requests) == 4
    # An admin sends it again: due now, attempts start over.
    assert services.webhook_delivery_retry_now(delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 0


def test_an_unreachable_endpoint_is_retried_not_lost(auditor, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 60
    receiver = Receiver([200])  # never started: connection refused
    port_url = receiver.url
    receiver.server.server_close()
    services.webhook_endpoint_create(name="down", url=port_url, events=["review.decided"])
    _decide_approve(auditor)
    _collect_and_send(django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.last_status_code is None
    assert "Connection refused" in delivery.last_error or "URLError" in delivery.last_error


def test_events_go_only_to_endpoints_that_want_them_and_existed_then(
    auditor, admin_user, tmp_path: Path, django_capture_on_commit_callbacks
):
    from classifier.registry.artifacts import file_sha256

    with Receiver([200]) as models_rx, Receiver([200]) as listings_rx:
        services.webhook_endpoint_create(name="models", url=models_rx.url, events=["model.promoted"])
        services.webhook_endpoint_create(name="listings", url=listings_rx.url, events=["listing.classified"])
        _decide_approve(auditor)  # nobody subscribes to review.decided

        directory = tmp_path / "v9"
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(b"weights")
        version = ModelVersion.objects.create(
            name="v9", artifact_dir=str(directory), checksum=file_sha256(directory / "model.safetensors")
        )
        training_svc.model_version_promote(version=version, actor=admin_user, rollback=True)

        task = factories.review_task()
        audit_record(
            actor=None,
            verb="listing.auto_accept",
            obj=task.listing,
            data={"prediction": task.prediction_id, "confidence": 0.99, "threshold": 0.9},
        )
        _collect_and_send(django_capture_on_commit_callbacks)

    (promoted,) = [json.loads(r["body"]) for r in models_rx.requests]
    assert promoted["type"] == "model.promoted"
    assert promoted["data"]["name"] == "v9" and promoted["data"]["rollback"] is True
    (classified,) = [json.loads(r["body"]) for r in listings_rx.requests]
    assert classified["data"]["listing_id"] == task.listing_id
    assert classified["data"]["outcome"] == "accepted"
    assert classified["data"]["category"] == "Apparel > Topwear > Tshirts"
    assert classified["data"]["model_version"] == "test-v1"

    # An endpoint added later does not receive what happened before it existed.
    late = services.webhook_endpoint_create(name="late", url=models_rx.url, events=["model.promoted"])
    AuditEvent.objects.filter(verb="model.rollback").update(created_at=late.created_at - timedelta(seconds=1))
    _collect_and_send(django_capture_on_commit_callbacks)
    assert not WebhookDelivery.objects.filter(endpoint=late).exists()


def test_the_collector_hands_each_due_delivery_out_once_per_lease(
    auditor, settings, django_capture_on_commit_callbacks
):
    """Retries are sent by the beat collector when due (no countdown a broker could redeliver early);
    a delivery handed out is not sent again while its message waits, and is when that message is lost."""
    settings.WEBHOOK_RETRY_BASE_SECONDS = 3600  # the longest backoff: far beyond any visibility timeout
    with Receiver([500]) as receiver:
        services.webhook_endpoint_create(name="erp", url=receiver.url, events=["review.decided"])
        _decide_approve(auditor)
        services.webhook_events_collect()
        delivery = WebhookDelivery.objects.get()
        now = timezone.now()
        assert services.webhook_deliveries_due(now=now) == [delivery.pk]
        assert (
            services.webhook_deliveries_due(now=now + timedelta(seconds=5)) == []
        )  # leased: its message waits
        # The message was lost (Redis restarted): after the lease the collector hands it out again.
        assert services.webhook_deliveries_due(now=now + services.DISPATCH_LEASE + timedelta(seconds=1)) == [
            delivery.pk
        ]
        result = services.webhook_delivery_attempt(delivery_id=delivery.pk)
        assert result.retry_in == 3600 and len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.locked_until is None
    due = delivery.next_attempt_at
    assert services.webhook_deliveries_due(now=due - timedelta(seconds=1)) == []  # not early
    assert services.webhook_deliveries_due(now=due) == [delivery.pk]  # on time, by the collector
    # An admin's "send again now" is due at once, lease or not.
    assert services.webhook_delivery_retry_now(delivery=delivery)
    assert services.webhook_deliveries_due() == [delivery.pk]


def test_bad_endpoints_are_refused():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Unknown event type"):
        services.webhook_endpoint_create(name="x", url="https://example.org/h", events=["listing.deleted"])
    with pytest.raises(ValidationError, match="https://"):
        services.webhook_endpoint_create(name="x", url="ftp://example.org/h", events=["review.decided"])


def test_admins_add_endpoints_in_the_django_admin_and_ops_cannot(admin_user, ops_user, client):
    from classifier.webhooks.models import WebhookEndpoint

    for user in (admin_user, ops_user):
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    client.force_login(ops_user)
    assert client.get("/admin/webhooks/webhookendpoint/add/").status_code == 403
    client.force_login(admin_user)
    response = client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {
            "name": "ERP",
            "url": "https://erp.example.org/hooks",
            "events": ["review.decided"],
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_") and len(endpoint.secret) > 40
    assert endpoint.events == ["review.decided"] and endpoint.created_by == admin_user
    assert (
        endpoint.secret
        in client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/").content.decode()
    )
