"""Prometheus metrics.

Two kinds:

- **Process counters** (`DISPATCH_FAILURES`, `INGEST_SECONDS`, `TASK_EVENTS`): incremented
  where the event happens. Under gunicorn with several workers set `PROMETHEUS_MULTIPROC_DIR`
  (prometheus-client's multiprocess mode) so `/metrics` adds them up over processes.
- **State read at scrape time** (`FusionCollector`): queue depth, listings by status, review
  rate, stage latencies, task failures (counted in Redis by the workers), the serving model.
  These come from PostgreSQL and Redis, so any web process answers for the whole system.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

# Multiprocess mode writes one file per process there; `manage.py migrate` runs before gunicorn
# (which empties it at start, fusionreview/deploy/gunicorn.conf.py), so it may not exist yet.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

DISPATCH_FAILURES = Counter(
    "fusion_dispatch_failures_total",
    "Task sends that failed (broker down); the sweeper sends the work again",
    ["task"],
)
INGEST_SECONDS = Histogram(
    "fusion_ingest_seconds",
    "Time to accept one listing through the API (validation, storage, commit, dispatch)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Task outcomes are counted in Redis (one hash) so that workers on other machines show up in
# the web's /metrics; a Redis outage loses a few increments, never a task.
TASK_EVENTS_KEY = "fusion:metrics:task_events"


def task_event_count(*, task: str, event: str) -> None:
    """Count a task failure/retry in Redis; silent when Redis is down."""
    from django.conf import settings

    url = settings.REDIS_URL
    if not url:
        return
    with contextlib.suppress(Exception):
        _redis(url).hincrby(TASK_EVENTS_KEY, f"{task}|{event}", 1)


_clients: dict[str, Any] = {}


def _redis(url: str) -> Any:
    import redis

    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        _clients[url] = client
    return client


class FusionCollector:
    """Reads the system's state at scrape time (see the module docstring)."""

    def collect(self) -> Iterator[Metric]:
        for part in (self._listings, self._queues, self._review, self._latency, self._tasks, self._model):
            try:
                yield from part()
            except Exception:  # one backing service down must not hide the other metrics
                log.warning("metrics: %s unavailable", part.__name__, exc_info=True)

    def _listings(self) -> Iterator[Metric]:
        from classifier.listings.selectors import listing_status_counts

        gauge = GaugeMetricFamily("fusion_listings", "Listings by status", labels=["status"])
        counts = listing_status_counts()
        from classifier.models import Listing

        for status in Listing.Status.values:
            gauge.add_metric([status], counts.get(status, 0))
        yield gauge

    def _queues(self) -> Iterator[Metric]:
        from django.conf import settings

        from fusionreview.celery import Queue

        broker = settings.CELERY_BROKER_URL
        if not broker.startswith("redis"):
            return
        client = _redis(broker)
        gauge = GaugeMetricFamily(
            "fusion_queue_depth", "Messages waiting in each broker queue", labels=["queue"]
        )
        for queue in Queue:
            gauge.add_metric([queue.value], client.llen(queue.value))
        yield gauge
        unacked = GaugeMetricFamily(
            "fusion_queue_unacked", "Messages delivered to a worker and not yet acknowledged"
        )
        unacked.add_metric([], client.zcard("unacked_index"))
        yield unacked

    def _review(self) -> Iterator[Metric]:
        from datetime import timedelta

        from django.db.models import Count
        from django.utils import timezone

        from classifier.models import ReviewTask

        open_tasks = GaugeMetricFamily("fusion_review_open", "Open review tasks", labels=["status"])
        rows = (
            ReviewTask.objects.exclude(status=ReviewTask.Status.DONE)
            .values("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        counts = {row["status"]: row["n"] for row in rows}
        for status in (ReviewTask.Status.PENDING, ReviewTask.Status.CLAIMED):
            open_tasks.add_metric([status.value], counts.get(status.value, 0))
        yield open_tasks
        since = timezone.now() - timedelta(hours=1)
        decided = ReviewTask.objects.filter(status=ReviewTask.Status.DONE, decided_at__gte=since).count()
        rate = GaugeMetricFamily("fusion_review_decisions_per_hour", "Review decisions in the last hour")
        rate.add_metric([], decided)
        yield rate

    def _latency(self) -> Iterator[Metric]:
        """p50/p95 per stage over the predictions of the last 15 minutes."""
        from django.db import connection

        if connection.vendor != "postgresql":
            return
        sql = """
            SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM p.created_at - l.created_at)),
                   percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY p.latency_ms / 1000.0),
                   count(*)
            FROM classifier_prediction p JOIN classifier_listing l ON l.id = p.listing_id
            WHERE p.created_at >= now() - interval '15 minutes' AND NOT p.is_shadow
        """
        with connection.cursor() as cursor:
            cursor.execute(sql)
            end_to_end, inference, n = cursor.fetchone()
        gauge = GaugeMetricFamily(
            "fusion_stage_latency_seconds",
            "Latency per stage over the last 15 minutes (end_to_end: accepted -> prediction stored)",
            labels=["stage", "quantile"],
        )
        for stage, values in (("end_to_end", end_to_end), ("inference", inference)):
            for q, value in zip(("0.5", "0.95"), values or (None, None), strict=True):
                if value is not None:
                    gauge.add_metric([stage, q], float(value))
        yield gauge
        count = GaugeMetricFamily("fusion_predictions_recent", "Predictions stored in the last 15 minutes")
        count.add_metric([], n)
        yield count

    def _tasks(self) -> Iterator[Metric]:
        from django.conf import settings

        if not settings.REDIS_URL:
            return
        raw = _redis(settings.REDIS_URL).hgetall(TASK_EVENTS_KEY)
        failures = CounterMetricFamily(
            "fusion_task_events", "Task failures and retries counted by the workers", labels=["task", "event"]
        )
        for key, value in sorted(raw.items()):
            task, _, event = key.decode().partition("|")
            failures.add_metric([task, event], int(value))
        yield failures

    def _model(self) -> Iterator[Metric]:
        from classifier.models import ModelVersion

        info = GaugeMetricFamily("fusion_model_version", "The promoted model version (1)", labels=["name"])
        for name in ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).values_list(
            "name", flat=True
        ):
            info.add_metric([name], 1)
        yield info


def registry_for_scrape() -> CollectorRegistry:
    """The registry /metrics renders: process counters (multiprocess-aware) plus the state collector."""
    from prometheus_client import REGISTRY

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    if not getattr(registry, "_fusion_collector", False):
        registry.register(FusionCollector())
        registry._fusion_collector = True  # type: ignore[attr-defined]
    return registry
