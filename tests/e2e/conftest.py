"""Browser-test fixtures: Django's live server and a headless Chromium page (Playwright, sync API).

    @pytest.mark.e2e
    def test_something(live_server, browser_page, login, auditor):
        login(browser_page, auditor)
        browser_page.goto(live_server.url + "/review/")
        shoot(browser_page, "name")          # -> test-artifacts/e2e/name.png

Chromium is the system one (/usr/bin/chromium); never `playwright install`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django's ORM would refuse to run
# "from an async context" without this. The test and the live server still use separate threads.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "pass-for-tests-1"  # tests/conftest.py make_user
VIEWPORT = {"width": 1366, "height": 768}


@pytest.fixture(autouse=True)
def _e2e_settings(settings):
    """Plain static storage (no collectstatic manifest in tests) and media served by the live server."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.ROOT_URLCONF = "tests.e2e.urls"


@pytest.fixture(scope="session")
def _playwright_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover  (normally stopped earlier: tests/requirements_check.py)
        pytest.fail("playwright is not installed: .venv/bin/pip install -e '.[dev]'")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def browser_page(_playwright_browser, live_server) -> Iterator:
    """A fresh browser context + page per test (its own cookies), 1366x768 (the most common laptop
    screen: every page must work there), default timeout 10 s."""
    context = _playwright_browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def login(live_server) -> Callable:
    """login(page, user): log in through the real login form."""

    def do_login(page, user, password: str = PASSWORD) -> None:
        page.goto(live_server.url + "/accounts/login/")
        page.fill("input[name=username]", user.get_username())
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_load_state("domcontentloaded")

    return do_login


def shoot(page, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot of what a 1366x768 screen shows under test-artifacts/e2e/ (gitignored; CI keeps
    them as artefacts); `full_page` for the whole scrollable page instead."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
