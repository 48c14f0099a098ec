"""No silent skips: before any test runs, check that what the selected tests need is there.

The selected tests decide what is required:

- integration tests and any test using the database: PostgreSQL (DATABASE_URL) and Redis (REDIS_URL and
  the integration brokers at TEST_REDIS_BASE_URL);
- e2e tests: Playwright and Chromium at CHROMIUM_PATH (default /usr/bin/chromium);
- tests using the shared catalogue (the `data_dir` fixture, or a skip-if on it): ../shared/data/fashion.

Anything missing stops the run at once with what to install (exit status 4, pytest's usage error), instead
of a green run with tests skipped. The summary always ends with the number of skipped tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _postgres_problem() -> str | None:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fusionreview")
    if not url.startswith("postgres"):
        return None
    parsed = urlparse(url)
    try:
        import psycopg

        with psycopg.connect(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password or None,
            dbname="postgres",
            connect_timeout=3,
        ):
            return None
    except Exception as exc:  # any failure to connect is the same advice
        return (
            f"PostgreSQL is not reachable at {parsed.hostname}:{parsed.port or 5432} ({type(exc).__name__}: "
            f"{str(exc).strip()[:160]}).\n    Install and start it: apt-get install -y postgresql && "
            "pg_ctlcluster 15 main start (user postgres, trust auth on 127.0.0.1), or set DATABASE_URL."
        )


def _redis_problem() -> str | None:
    urls = {
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        os.environ.get("TEST_REDIS_BASE_URL", "redis://127.0.0.1:6379"),
    }
    for url in sorted(urls):
        try:
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
        except Exception as exc:
            return (
                f"Redis is not reachable at {url} ({type(exc).__name__}: {str(exc).strip()[:120]}).\n"
                "    Install and start it: apt-get install -y redis-server && "
                "redis-server --daemonize yes --bind 127.0.0.1 --port 6379, or set REDIS_URL."
            )
    return None


def _chromium_problem() -> str | None:
    chromium = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: .venv/bin/pip install -e '.[dev]' (never `playwright install`)."
    if not chromium.exists():
        return (
            f"Chromium is missing at {chromium}: apt-get install -y chromium fonts-noto-cjk "
            "(or set CHROMIUM_PATH to a Chromium binary)."
        )
    return None


def _catalogue_problem() -> str | None:
    from tests.conftest import DATA_DIR

    if (DATA_DIR / "catalogue.csv").exists():
        return None
    return (
        f"The shared catalogue is missing: {DATA_DIR.resolve()}/catalogue.csv.\n"
        "    Put the shared data beside the repository (../shared/data/fashion, with its images) "
        "or set FUSION_DATA_DIR to where it is."
    )


def _uses_catalogue(item: Any) -> bool:
    if "data_dir" in getattr(item, "fixturenames", ()):
        return True
    for mark in item.iter_markers("skipif"):
        reason = str(mark.kwargs.get("reason", ""))
        if "catalogue" in reason or "FUSION_DATA_DIR" in reason:
            return True
    return False


def requirements_missing(items: list[Any]) -> list[str]:
    """What the selected tests need and this machine lacks, each with what to install."""
    needs_db = any(
        item.get_closest_marker("integration") or item.get_closest_marker("django_db") or
        "db" in getattr(item, "fixturenames", ()) or "transactional_db" in getattr(item, "fixturenames", ())
        for item in items
    )  # fmt: skip
    needs_browser = any(item.get_closest_marker("e2e") for item in items)
    needs_catalogue = any(_uses_catalogue(item) for item in items)
    problems = []
    if needs_db:
        problems += [p for p in (_postgres_problem(), _redis_problem()) if p]
    if needs_browser and (problem := _chromium_problem()):
        problems.append(problem)
    if needs_catalogue and (problem := _catalogue_problem()):
        problems.append(problem)
    return problems


def check_collected(config: pytest.Config, items: list[Any]) -> None:
    if config.option.collectonly:
        return
    problems = requirements_missing(items)
    if problems:
        message = "\n".join(f"  - {p}" for p in problems)
        raise pytest.UsageError(
            "the selected tests need what this machine lacks (tests never skip silently):\n" + message
        )


def skipped_summary(terminalreporter: Any) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    line = f"skipped tests: {len(skipped)}"
    if skipped:
        terminalreporter.write_line(line + " (reasons above, under 'short test summary info')", red=True)
    else:
        terminalreporter.write_line(line, green=True)
