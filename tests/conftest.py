"""Fixtures shared by every test: people in each role, and images the tests make."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA_DIR = Path(
    os.environ.get(
        "FUSION_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion"
    )
)


def make_user(username: str, role: str | None):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username=username, password="pass-for-tests-1")
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def auditor(db):
    return make_user("audrey", "auditor")


@pytest.fixture
def ops_user(db):
    return make_user("otto", "ops")


@pytest.fixture
def admin_user(db):
    return make_user("ada", "admin")


@pytest.fixture
def nobody(db):
    """Logged in, but in no role."""
    return make_user("nobody", None)


def jpeg_bytes(size: tuple[int, int] = (64, 80), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def data_dir() -> Path:
    if not (DATA_DIR / "catalogue.csv").exists():  # normally stopped earlier (tests/requirements_check.py)
        pytest.fail(
            f"catalogue not found at {DATA_DIR}: put ../shared/data/fashion there or set FUSION_DATA_DIR"
        )
    return DATA_DIR


# --- no silent skips (tests/requirements_check.py) ----------------------------------------------


def pytest_collection_modifyitems(session, config, items) -> None:
    from tests.requirements_check import check_collected

    check_collected(config, items)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    from tests.requirements_check import skipped_summary

    skipped_summary(terminalreporter)
