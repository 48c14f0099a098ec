"""Settings fail at start, naming the variable, when a value is wrong."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from fusionreview.env import env_bool, env_float, env_int

ROOT = Path(__file__).resolve().parents[2]


def test_env_int_names_the_variable(monkeypatch):
    monkeypatch.setenv("INFERENCE_BATCH_SIZE", "lots")
    with pytest.raises(ImproperlyConfigured, match="INFERENCE_BATCH_SIZE"):
        env_int("INFERENCE_BATCH_SIZE", 16, minimum=1)


def test_env_float_range_is_checked(monkeypatch):
    monkeypatch.setenv("REVIEW_THRESHOLD", "1.5")
    with pytest.raises(ImproperlyConfigured, match="REVIEW_THRESHOLD"):
        env_float("REVIEW_THRESHOLD", None, minimum=0.0, maximum=1.0)


def test_env_bool_rejects_garbage(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG")


# tests/settings.py puts test defaults into os.environ; a production start must not see them.
_TEST_ONLY = {
    "DJANGO_SETTINGS_MODULE",
    "SECURE_SSL_REDIRECT",
    "CELERY_TASK_ALWAYS_EAGER",
    "FUSIONREVIEW_DEMO",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "STATIC_MANIFEST",
}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _TEST_ONLY}


def _start(env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = _clean_env()
    env.update(env_overrides)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='fusionreview.settings'; django.setup()",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_start_without_secret_key_fails():
    result = _start({"DEBUG": "false", "FUSIONREVIEW_DEMO": "false", "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_bad_database_url_fails_at_start():
    result = _start({"DEBUG": "true", "DATABASE_URL": "mysql://x@y/z"})
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_production_settings_pass_the_deploy_check():
    env = _clean_env()
    env.update(
        {
            "DEBUG": "false",
            "FUSIONREVIEW_DEMO": "false",
            "SECRET_KEY": "x" * 20 + "-unit-test-only-secret-key-with-enough-entropy-9f8e7d6c5b4a",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
            "ALLOWED_HOSTS": "fusionreview.example.com",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
