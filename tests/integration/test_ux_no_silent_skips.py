"""A missing requirement stops the test run with what to install, instead of skipping tests silently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _pytest(target: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_no_chromium_fails_the_run_and_says_what_to_install():
    result = _pytest("tests/e2e/test_review_keyboard.py", CHROMIUM_PATH="/nonexistent/chromium")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "apt-get install -y chromium" in result.stderr
    assert "passed" not in result.stdout and "skipped tests: 0" in result.stdout


def test_no_shared_catalogue_fails_the_run_and_says_where_it_goes():
    result = _pytest("tests/unit/fusion/test_model.py", FUSION_DATA_DIR="/nonexistent/fashion")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "The shared catalogue is missing" in result.stderr and "FUSION_DATA_DIR" in result.stderr
