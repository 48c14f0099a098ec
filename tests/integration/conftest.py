"""A real Celery worker against the test's own PostgreSQL database and a private Redis broker.

Use it with `transactional_db` semantics (the fixture requests it): rows the test writes are
committed, so the worker process sees them, and the worker's rows are visible to the test.

    def test_something(celery_worker_process, api_client_ops):
        ...post listings...
        wait_until(lambda: Prediction.objects.count() == 3)
        celery_worker_process.stop(kill=True)   # SIGKILL the whole worker process group
        celery_worker_process.start()           # a fresh worker, same broker and database

Broker: redis db 14 (flushed at start). Entity cache: redis db 13 (flushed at start), shared
by the test process and the worker so both see the same knowledge version. Media: a
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

REPO = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
CACHE_URL = os.environ.get("TEST_WORKER_CACHE_URL", "redis://127.0.0.1:6379/13")
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
        self, *, env: dict[str, str], log_dir: Path, queues: str = "inference,default,training"
    ) -> None:
        self.env = env
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
            "1",
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
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        # Children of a prefork pool may outlive the parent for a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def worker_env(*, db_name: str, media_root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
            "CELERY_BROKER_URL": BROKER_URL,
            "CELERY_RESULT_BACKEND": BROKER_URL,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_VISIBILITY_TIMEOUT": "15",
            "REDIS_URL": CACHE_URL,
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


@pytest.fixture
def worker_media_root(tmp_path: Path, settings) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    settings.MEDIA_ROOT = media
    return media


@pytest.fixture
def worker_cache(settings) -> Iterator[None]:
    """Point the test process's cache at the worker's private Redis db."""
    _flush_redis(CACHE_URL)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    }
    yield


@pytest.fixture
def celery_broker(settings) -> Iterator[str]:
    """Send tasks from the test process to the private broker, for real (not eagerly)."""
    from fusionreview.celery import app

    _flush_redis(BROKER_URL)
    saved = {
        key: app.conf[key]
        for key in ("broker_url", "result_backend", "task_always_eager", "broker_transport_options")
    }
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.update(
        broker_url=BROKER_URL,
        result_backend=BROKER_URL,
        task_always_eager=False,
        broker_transport_options={"visibility_timeout": 15},
    )
    _reset_connections(app)
    yield BROKER_URL
    app.conf.update(saved)
    _reset_connections(app)


def _reset_connections(app) -> None:
    # Connections and producers opened with the old broker URL must not be reused.
    with contextlib.suppress(Exception):
        app.pool.force_close_all()
    app._pool = None
    with contextlib.suppress(Exception):
        app.amqp._producer_pool = None
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
        env=worker_env(db_name=db_name, media_root=worker_media_root, extra=worker_extra_env),
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
        pytest.skip(f"no trained demo model at {MODEL_DIR} yet (model.safetensors missing)")
    return MODEL_DIR
