"""A real Celery worker against the test's own PostgreSQL database and a private Redis broker.

Use it with `transactional_db` semantics (the fixture requests it): rows the test writes are
committed, so the worker process sees them, and the worker's rows are visible to the test.

    def test_something(celery_worker_process, api_client_ops):
        ...post listings...
        wait_until(lambda: Prediction.objects.count() == 3)
        celery_worker_process.stop(kill=True)   # SIGKILL the whole worker process group
        celery_worker_process.start()           # a fresh worker, same broker and database

Broker: redis db 14 (flushed at start). Entity cache: redis db 13 (flushed at start), shared
by the test process and the worker so both see the same knowledge version. A second test
session running at the same time gets the next free pair (12/11, 10/9, ...): see `redis_urls`. Media: a
temporary MEDIA_ROOT shared by both processes. The test process sends tasks to the same
broker (the Celery app's configuration is switched for the test and restored after).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import factories

REPO = Path(__file__).resolve().parents[2]
REDIS_BASE = os.environ.get("TEST_REDIS_BASE_URL", "redis://127.0.0.1:6379")
# (broker db, cache db) pairs; a test session takes the first pair no other session holds, so
# engineers running integration tests at the same time do not consume each other's tasks.
REDIS_DB_PAIRS = ((14, 13), (12, 11), (10, 9), (8, 7), (6, 5))
MODEL_DIR = REPO / "fusionreview" / "demo" / "model"


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def _flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


class WorkerProcess:
    """A `celery worker` subprocess in its own process group; `.stop(kill=True)` SIGKILLs it."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        log_dir: Path,
        queues: str = "inference,default,training",
        concurrency: int = 1,
    ) -> None:
        self.env = env
        self.concurrency = concurrency
        self.log_dir = log_dir
        self.queues = queues
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.node_name = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"worker-{self.starts}.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, *, timeout: float = 90.0) -> WorkerProcess:
        """Start a worker and wait until it answers a ping."""
        if self.proc and self.proc.poll() is None:
            return self
        self.starts += 1
        self.node_name = f"test-{uuid.uuid4().hex[:8]}@localhost"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fusionreview",
            "worker",
            "-Q",
            self.queues,
            "-c",
            str(self.concurrency),
            "-P",
            "prefork",
            "-n",
            self.node_name,
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        from fusionreview.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"celery worker exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}"
                )
            try:
                if app.control.ping(destination=[self.node_name], timeout=1.0):
                    return self
            except Exception:
                pass
            time.sleep(0.5)
        self.stop(kill=True)
        raise RuntimeError(
            f"celery worker did not answer a ping in {timeout:.0f}s:\n{self.log_text()[-4000:]}"
        )

    def stop(self, kill: bool = False, *, timeout: float = 30.0) -> None:
        """Warm shutdown (SIGTERM, then SIGKILL after `timeout`), or SIGKILL at once with kill=True."""
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            pgid = os.getpgid(self.proc.pid)
        except ProcessLookupError:
            return
        if kill:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
            return
        # SIGTERM to the main process only: a warm shutdown lets the pool child finish its task.
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        # Children of a prefork pool may outlive the parent for a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def worker_env(
    *, db_name: str, media_root: Path, broker_url: str, cache_url: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
            "CELERY_BROKER_URL": broker_url,
            "CELERY_RESULT_BACKEND": broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_VISIBILITY_TIMEOUT": "15",
            "REDIS_URL": cache_url,
            "MEDIA_ROOT": str(media_root),
            "FUSIONREVIEW_DEMO": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            # One CPU thread: the machine is shared, and the test only needs correctness.
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def redis_urls() -> Iterator[tuple[str, str]]:
    """(broker URL, cache URL) private to this test session (held with a lock file)."""
    import fcntl
    import tempfile

    for broker_db, cache_db in REDIS_DB_PAIRS:
        handle = open(Path(tempfile.gettempdir()) / f"fusionreview-test-redis-{broker_db}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield f"{REDIS_BASE}/{broker_db}", f"{REDIS_BASE}/{cache_db}"
        finally:
            handle.close()
        return
    pytest.fail(
        "every Redis db pair for integration tests is held by another test session on this machine:"
        " let it finish (or stop it), then run again"
    )


@pytest.fixture
def worker_media_root(tmp_path: Path, settings) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    settings.MEDIA_ROOT = media
    return media


@pytest.fixture
def worker_cache(settings, redis_urls) -> Iterator[str]:
    """Point the test process's cache at the worker's private Redis db."""
    cache_url = redis_urls[1]
    _flush_redis(cache_url)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": cache_url}
    }
    yield cache_url


@pytest.fixture
def celery_broker(settings, redis_urls) -> Iterator[str]:
    """Send tasks from the test process to the private broker, for real (not eagerly)."""
    from fusionreview.celery import app

    broker_url = redis_urls[0]
    _flush_redis(broker_url)
    saved = {
        key: app.conf[key]
        for key in ("broker_url", "result_backend", "task_always_eager", "broker_transport_options")
    }
    settings.CELERY_BROKER_URL = broker_url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.update(
        broker_url=broker_url,
        result_backend=broker_url,
        task_always_eager=False,
        broker_transport_options={"visibility_timeout": 15},
    )
    _reset_connections(app)
    yield broker_url
    app.conf.update(saved)
    _reset_connections(app)


def _reset_connections(app) -> None:
    # Drop the app's handles on pools made for the old broker URL (as Celery does after a fork);
    # kombu keeps pools per URL, so closing them would break the next user of that URL.
    app._pool = None
    with contextlib.suppress(AttributeError, KeyError):
        app.__dict__["amqp"]._producer_pool = None
    app.__dict__.pop("backend", None)
    with contextlib.suppress(Exception):
        app._local.__dict__.clear()


@pytest.fixture
def worker_extra_env() -> dict[str, str]:
    """Override in a test module to pass more environment to the worker (e.g. INFERENCE_BATCH_SIZE)."""
    return {}


@pytest.fixture
def celery_worker_process(
    transactional_db, worker_media_root, worker_cache, celery_broker, worker_extra_env, tmp_path
) -> Iterator[WorkerProcess]:
    """A running worker on the test database; stopped (SIGKILL if it must) at teardown."""
    from django.db import connection

    db_name = connection.settings_dict["NAME"]
    worker = WorkerProcess(
        env=worker_env(
            db_name=db_name,
            media_root=worker_media_root,
            broker_url=celery_broker,
            cache_url=worker_cache,
            extra=worker_extra_env,
        ),
        log_dir=tmp_path,
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        if os.environ.get("SHOW_WORKER_LOG"):
            sys.stderr.write(worker.log_text()[-20000:])


@pytest.fixture
def demo_model_dir() -> Path:
    if not (MODEL_DIR / "model.safetensors").exists():
        pytest.fail(
            f"the bundled model is missing: {MODEL_DIR}/model.safetensors (restore it with"
            " `git checkout -- fusionreview/demo/model`)"
        )
    return MODEL_DIR


@pytest.fixture
def seeded_knowledge(transactional_db, worker_cache, data_dir):
    """The knowledge graph mined from the catalogue's train+val rows, published (v1) to DB and cache."""
    from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
    from knowledge.importexport.services import graph_import_snapshot
    from knowledge.versions.publish import knowledge_publish

    snapshot = snapshot_from_catalogue(str(data_dir / "catalogue.csv"), splits=("train", "val"))
    graph_import_snapshot(snapshot=snapshot)
    return knowledge_publish(reason="test seed")


@pytest.fixture
def make_catalogue_listings(data_dir, worker_media_root):
    """Ingest the first n rows of a catalogue split (no classification queued); returns the listings."""
    import csv

    from classifier.listings.services import listing_ingest

    def make(n: int, *, split: str = "test", source: str = "catalogue") -> list:
        with open(data_dir / "catalogue.csv", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row["split"] == split][:n]
        listings = []
        for row in rows:
            listing, _ = listing_ingest(
                source=source,
                external_id=row["id"],
                title=row["title"],
                image_file=(data_dir / row["image"]).read_bytes(),
                dispatch=False,
            )
            listings.append(listing)
        return listings

    return make


@pytest.fixture
def review_pages(settings) -> Iterator[None]:
    """Review pages render without a static manifest, from a review cache no other test filled."""
    factories.plain_static_storage(settings)
    factories.review_cache_reset()
    yield
    factories.review_cache_reset()
