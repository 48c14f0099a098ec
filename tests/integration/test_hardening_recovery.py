"""Faults that used to lose or stall accepted listings, each healed by the sweeper or bounded retries.

Issue 13, faults 2-5: Redis restarted without persistence (queue lost), a worker killed with
-9, a PostgreSQL outage longer than the old retry budget, and ingest while Redis is down.
Every test ends with each listing classified exactly once.
"""

from __future__ import annotations

import csv
import io

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from classifier.models import Listing, Prediction
from tests.integration.conftest import WorkerProcess, _flush_redis, _reset_connections, wait_until, worker_env

pytestmark = pytest.mark.integration


def _api_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _post_catalogue_rows(client: APIClient, data_dir, n: int, *, source: str) -> list[int]:
    with open(data_dir / "catalogue.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"][:n]
    ids = []
    for row in rows:
        image = io.BytesIO((data_dir / row["image"]).read_bytes())
        image.name = "photo.jpg"
        response = client.post(
            "/api/listings/",
            {"image": image, "title": row["title"], "source": source, "external_id": row["id"]},
            format="multipart",
        )
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    return ids


def _exactly_one_prediction_each(ids: list[int]) -> None:
    per_listing = {i: Prediction.objects.filter(listing_id=i).count() for i in ids}
    assert set(per_listing.values()) == {1}, per_listing
    assert not Listing.objects.filter(pk__in=ids, status=Listing.Status.QUEUED).exists()


@pytest.fixture
def idle_worker(transactional_db, worker_media_root, worker_cache, celery_broker, tmp_path):
    """A worker on the private broker and database, not started yet (the test decides when)."""
    from django.db import connection

    worker = WorkerProcess(
        env=worker_env(
            db_name=connection.settings_dict["NAME"],
            media_root=worker_media_root,
            broker_url=celery_broker,
            cache_url=worker_cache,
        ),
        log_dir=tmp_path,
    )
    yield worker
    worker.stop(kill=True)


def test_listings_accepted_while_redis_was_down_are_classified_by_the_sweeper(
    idle_worker, ops_user, data_dir, seeded_knowledge, demo_model_dir, settings
):
    """Fault 5 (and 2): the API accepts while the broker is unreachable; nothing is lost."""
    from classifier.listings.services import listings_sweep
    from fusionreview.celery import app

    live_broker = app.conf.broker_url
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused
    app.conf.update(broker_url=dead, result_backend=dead)
    _reset_connections(app)
    try:
        ids = _post_catalogue_rows(_api_client(ops_user), data_dir, 3, source="redis-down")
    finally:
        app.conf.update(broker_url=live_broker, result_backend=live_broker)
        _reset_connections(app)
    assert Listing.objects.filter(pk__in=ids, status=Listing.Status.QUEUED).count() == 3

    idle_worker.start()
    report = listings_sweep(min_age=0)
    assert report.queued == 3 and report.unsent == 0
    wait_until(
        lambda: Prediction.objects.filter(listing_id__in=ids).count() == 3, timeout=240, what="classification"
    )
    _exactly_one_prediction_each(ids)
    # Sent once: a second sweep finds live "sent" marks (or nothing queued) and sends nothing.
    assert listings_sweep(min_age=0).sent_batches == 0


def test_a_redis_restart_without_persistence_loses_no_accepted_listing(
    idle_worker, ops_user, data_dir, seeded_knowledge, demo_model_dir, celery_broker, worker_cache
):
    """Fault 2: messages and cache marks vanish with Redis; the rows in PostgreSQL bring them back."""
    from classifier.listings.services import listings_sweep

    ids = _post_catalogue_rows(_api_client(ops_user), data_dir, 3, source="redis-restart")
    # What a Redis restart without persistence does: every queue and key is gone.
    _flush_redis(celery_broker)
    _flush_redis(worker_cache)
    idle_worker.start()
    assert listings_sweep(min_age=0).queued == 3
    wait_until(
        lambda: Prediction.objects.filter(listing_id__in=ids).count() == 3, timeout=240, what="classification"
    )
    _exactly_one_prediction_each(ids)


def test_a_worker_killed_with_sigkill_leaves_nothing_stuck(
    idle_worker, ops_user, data_dir, seeded_knowledge, demo_model_dir, settings
):
    """Fault 3: the listing a killed worker held is sent again once its "sent" mark expires."""
    from classifier.listings.services import SENT_KEY, listings_sweep

    idle_worker.start()
    ids = _post_catalogue_rows(_api_client(ops_user), data_dir, 4, source="kill-9")
    # Kill while the first batch is being worked on (the model load alone takes seconds).
    wait_until(
        lambda: "classifier.tasks.classify_listings" in idle_worker.log_text(), timeout=120, what="a task"
    )
    idle_worker.stop(kill=True)
    done_at_kill = Prediction.objects.filter(listing_id__in=ids).count()

    # The dead worker's marks expire after CLASSIFY_REDISPATCH_AFTER; here: expire them now.
    cache.delete_many([SENT_KEY.format(id=i) for i in ids])
    idle_worker.start()
    report = listings_sweep(min_age=0)
    # Messages the dead worker had not taken may already be running on the new one.
    assert report.queued <= len(ids) - done_at_kill and report.unsent == 0
    wait_until(
        lambda: Prediction.objects.filter(listing_id__in=ids).count() == len(ids),
        timeout=240,
        what="every listing classified after the kill",
    )
    _exactly_one_prediction_each(ids)


def test_a_database_outage_longer_than_the_old_retry_budget_does_not_fail_listings(
    transactional_db,
    worker_media_root,
    worker_cache,
    celery_broker,
    tmp_path,
    seeded_knowledge,
    demo_model_dir,
    make_catalogue_listings,
):
    """Fault 4: retries are bounded by time, not count; after the outage the batch completes."""
    from django.db import connection

    from classifier.listings.tasks import classify_listings
    from tests.faults.proxy import TcpProxy

    proxy = TcpProxy(target=("127.0.0.1", int(connection.settings_dict.get("PORT") or 5432))).start()
    env = worker_env(
        db_name=connection.settings_dict["NAME"],
        media_root=worker_media_root,
        broker_url=celery_broker,
        cache_url=worker_cache,
        # Short back-off so the test sees many retries (>5, the old budget) in a 25 s outage.
        extra={"CLASSIFY_RETRY_MAX_DELAY": "3", "DATABASE_CONN_MAX_AGE": "0"},
    )
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{proxy.port}/{connection.settings_dict['NAME']}"
    worker = WorkerProcess(env=env, log_dir=tmp_path)
    try:
        worker.start()
        listings = make_catalogue_listings(2)
        ids = [listing.pk for listing in listings]
        proxy.cut()
        classify_listings.delay(ids)
        wait_until(lambda: worker.log_text().count("retry in") >= 6, timeout=120, what="six retries")
        proxy.restore()
        wait_until(
            lambda: Prediction.objects.filter(listing_id__in=ids).count() == 2,
            timeout=240,
            what="classification after the outage",
        )
        _exactly_one_prediction_each(ids)
        assert not Listing.objects.filter(pk__in=ids, status=Listing.Status.FAILED).exists()
    finally:
        worker.stop(kill=True)
        proxy.stop()


@pytest.fixture
def black_hole_broker():
    """A TCP port that accepts connections and never answers: a hung Redis."""
    import socket

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


@pytest.mark.timeout(120)
def test_ingest_returns_while_the_broker_hangs(
    transactional_db, worker_media_root, worker_cache, celery_broker, black_hole_broker, ops_user, data_dir
):
    """Fault 5: without socket timeouts a send to a hung Redis blocks the request forever.

    With them the listing is accepted (201, queued) and the failed send is left to the sweeper;
    pytest-timeout fails this test if any request hangs.
    """
    from fusionreview.celery import app

    live, live_options = app.conf.broker_url, app.conf.broker_transport_options
    # The production transport options (the worker fixture keeps only a short visibility timeout).
    app.conf.update(
        broker_url=black_hole_broker,
        result_backend=black_hole_broker,
        broker_transport_options=dict(django_settings.CELERY_BROKER_TRANSPORT_OPTIONS),
    )
    _reset_connections(app)
    try:
        ids = _post_catalogue_rows(_api_client(ops_user), data_dir, 2, source="redis-hung")
    finally:
        app.conf.update(broker_url=live, result_backend=live, broker_transport_options=live_options)
        _reset_connections(app)
    assert Listing.objects.filter(pk__in=ids, status=Listing.Status.QUEUED).count() == 2
