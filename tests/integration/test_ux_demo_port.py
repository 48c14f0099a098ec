"""The demo checks its address before any setup and says how to pick another (DEMO_ADDR)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

RUN_SH = Path(__file__).resolve().parents[2] / "fusionreview" / "demo" / "run.sh"


def _run(addr: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DEMO_ADDR": addr}
    return subprocess.run(["bash", str(RUN_SH)], env=env, capture_output=True, text=True, timeout=60)


def test_a_taken_port_stops_the_demo_before_setup_with_how_to_choose_another():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot serve the demo on 127.0.0.1:{port}" in result.stderr
    assert "DEMO_ADDR=127.0.0.1:" in result.stderr and "bash fusionreview/demo/run.sh" in result.stderr
    assert "==>" not in result.stdout  # nothing was installed, migrated or loaded


@pytest.mark.parametrize("addr", ["localhost8000", "127.0.0.1:99999", ":"])
def test_a_malformed_address_is_refused_with_an_example(addr):
    result = _run(addr)
    assert result.returncode in (1, 2)
    assert "DEMO_ADDR" in result.stderr or "port must be" in result.stderr
    assert "==>" not in result.stdout
