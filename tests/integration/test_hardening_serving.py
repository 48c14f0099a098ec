"""Production serving as docker-compose runs it, with the same commands started directly.

Issue 13, fault 1: the image collected static files with DEBUG=true, so with DEBUG=false every
HTML page was a 500 ("Missing staticfiles manifest entry"); nothing served /media; the models
volume and FUSION_VERSIONS_DIR disagreed. Here the environment is read from
docker-compose.yml itself (and the Dockerfile's ENV), static files are collected the way the
image build does it, and gunicorn (the compose web command and config), a Celery worker and
beat run against a private database and Redis.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from classifier.models import Listing, Prediction
from tests.integration.conftest import REPO, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "fusionreview" / "deploy" / "Dockerfile"
TEST_SECRET = "compose-test-secret-" + "k3y-with-plenty-of-entropy-0123456789abcdefghijklmnopqrstuvwxyz"


def _substitute(value: str, given: dict[str, str]) -> str:
    """docker compose interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in given:
            return given[name]
        if op == ":?":
            raise AssertionError(f"compose requires {name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(:-|:\?)?([^}]*)\}", one, value)


def compose_service_env(service: str, given: dict[str, str]) -> dict[str, str]:
    """The environment compose gives `service`: the Dockerfile's ENV, then the compose file's."""
    env: dict[str, str] = {}
    dockerfile = DOCKERFILE.read_text()
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", dockerfile, flags=re.M):
        for key, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", block.replace("\\\n", " ")):
            env[key] = value
    spec = yaml.safe_load(COMPOSE.read_text())["services"][service]
    for key, value in (spec.get("environment") or {}).items():
        env[key] = _substitute(str(value), given)
    return env


def _base_env() -> dict[str, str]:
    # Nothing from the test process's settings (tests/settings.py sets demo defaults in os.environ).
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    )
    return env


def test_check_deploy_is_clean_with_the_compose_environment():
    env = _base_env()
    env.update(compose_service_env("web", {"SECRET_KEY": TEST_SECRET}))
    assert env["DEBUG"] == "false" and env["FUSION_VERSIONS_DIR"] == "/models"
    # The models volume is where FUSION_VERSIONS_DIR points, in every app service.
    spec = yaml.safe_load(COMPOSE.read_text())
    for name in ("web", "inference-worker", "training-worker"):
        service = spec["services"][name]
        volumes = service.get("volumes") or spec["x-app"]["volumes"]
        assert "models:/models" in volumes, name
        assert "media:/app/var/media" in volumes, name
    env["DATABASE_URL"] = (
        "postgres://postgres@127.0.0.1:5432/postgres"  # `check` needs none; no host "postgres" here
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Http:
    """Requests to gunicorn as the proxy in front of it sends them (X-Forwarded-Proto: https)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def request(self, path: str, *, data: bytes | None = None, headers: dict[str, str] | None = None):
        req = urllib.request.Request(
            self.base + path,
            data=data,
            headers={"X-Forwarded-Proto": "https", "Host": "localhost", **(headers or {})},
        )
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----fusionreviewtest7d3b"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, content) in files.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
        )
        out.write(content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_gunicorn_worker_and_beat_serve_classify_static_and_media_as_compose_runs_them(
    transactional_db,
    worker_media_root,
    worker_cache,
    celery_broker,
    seeded_knowledge,
    demo_model_dir,
    data_dir,
    tmp_path,
    ops_user,
):
    from django.db import connection

    from classifier.listings.services import listing_ingest

    port = _free_port()
    env = _base_env()
    env.update(compose_service_env("web", {"SECRET_KEY": TEST_SECRET, "ALLOWED_HOSTS": "localhost"}))
    env.update(
        {
            # Only what cannot be the same on this machine: hosts, ports, private dbs, temp dirs.
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
            "CELERY_BROKER_URL": celery_broker,
            "CELERY_RESULT_BACKEND": celery_broker,
            "REDIS_URL": worker_cache,
            "MEDIA_ROOT": str(worker_media_root),
            "STATIC_ROOT": str(tmp_path / "staticfiles"),
            "FUSION_VERSIONS_DIR": str(tmp_path / "models"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "DJANGO_SETTINGS_MODULE": "fusionreview.settings",
            # The sweeper every 5 s, so the test sees beat's work quickly.
            "SWEEP_INTERVAL": "5",
            "SWEEP_MIN_AGE": "1",
            "METRICS_TOKEN": "scraper-token-for-the-test",
        }
    )
    # What the image build runs (fusionreview/deploy/Dockerfile): collectstatic, production settings.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=300,
    )
    assert (tmp_path / "staticfiles" / "staticfiles.json").exists()

    web_log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "fusionreview.wsgi", "-c", "fusionreview/deploy/gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        stdout=web_log,
        stderr=subprocess.STDOUT,
    )
    beat_log = open(tmp_path / "beat.log", "wb")  # noqa: SIM115
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fusionreview",
            "beat",
            "-s",
            str(tmp_path / "celerybeat-schedule"),
            "--loglevel",
            "INFO",
        ],
        cwd=REPO,
        env=env,
        stdout=beat_log,
        stderr=subprocess.STDOUT,
    )
    worker = WorkerProcess(env=env, log_dir=tmp_path)
    http = Http(f"http://127.0.0.1:{port}")
    try:
        worker.start()

        def web_up() -> bool:
            try:
                return http.request("/healthz")[0] == 200
            except OSError:
                return False

        wait_until(web_up, timeout=90, what="gunicorn to answer /healthz")

        # An HTML page under DEBUG=false links hashed static files that WhiteNoise serves.
        status, _, body = http.request("/accounts/login/")
        assert status == 200, body[:500]
        hashed = re.findall(r'(?:href|src)="(/static/[^"]+\.[0-9a-f]{12}\.(?:css|js))"', body.decode())
        assert hashed, body.decode()[:2000]
        status, headers, _ = http.request(hashed[0])
        assert status == 200 and "max-age=315360000" in headers.get("Cache-Control", "")

        # A listing through gunicorn (the test users' passwords use the tests' fast hasher, which
        # production settings do not list: the token is made here).
        from rest_framework.authtoken.models import Token

        auth = {"Authorization": f"Token {Token.objects.get_or_create(user=ops_user)[0].key}"}
        image = (data_dir / "images" / sorted(os.listdir(data_dir / "images"))[0]).read_bytes()
        payload, content_type = _multipart(
            {"title": "Puma Men Blue Sports Shoes", "source": "compose", "external_id": "c-1"},
            {"image": ("photo.jpg", image)},
        )
        status, _, body = http.request(
            "/api/listings/", data=payload, headers={**auth, "Content-Type": content_type}
        )
        assert status == 201, body
        posted = json.loads(body)
        # A listing whose message was never sent: only beat's sweeper can get it classified.
        unsent, _ = listing_ingest(
            source="compose",
            external_id="c-2",
            title="Nike Women Black Shoes",
            image_file=image,
            dispatch=False,
        )
        wait_until(
            lambda: Prediction.objects.filter(listing_id__in=[posted["id"], unsent.pk]).count() == 2,
            timeout=300,
            what="both listings classified (the posted one, and the unsent one via beat's sweeper)",
        )
        assert not Listing.objects.filter(
            pk__in=[posted["id"], unsent.pk], status=Listing.Status.QUEUED
        ).exists()

        # The photo, through the permission-checked media view: with the token yes, anonymous no.
        media_path = "/" + posted["image_url"].split("://", 1)[-1].split("/", 1)[1]
        status, headers, body = http.request(media_path, headers=auth)
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        assert http.request(media_path)[0] == 302

        # Metrics from this machine; JSON logs carry the listing ids.
        assert http.request("/metrics")[0] == 403
        status, _, body = http.request(
            "/metrics", headers={"Authorization": "Bearer scraper-token-for-the-test"}
        )
        assert status == 200, body
        assert (
            b"fusion_listings{" in body
            and b"fusion_model_version{" in body
            and b"fusion_queue_depth{" in body
        )
        lines = []
        for line in worker.log_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        lines = [line for line in lines if isinstance(line, dict)]
        assert any(posted["id"] in (line.get("listing_ids") or []) for line in lines), lines[-5:]
        # On a fast machine the worker's batch can take the unsent listing before beat's first
        # sweep is due (every 5 s here): wait for beat to send it rather than assume it already has.
        wait_until(
            lambda: "listings-sweep" in (tmp_path / "beat.log").read_text(),
            timeout=60,
            what="beat sends the listings sweeper on its schedule",
        )
    finally:
        _stop(beat)
        _stop(web)
        worker.stop(kill=True)
        web_log.close()
        beat_log.close()
        if os.environ.get("SHOW_WORKER_LOG"):
            sys.stderr.write((tmp_path / "gunicorn.log").read_text()[-5000:])
            sys.stderr.write((tmp_path / "beat.log").read_text()[-5000:])
            sys.stderr.write(worker.log_text()[-10000:])
