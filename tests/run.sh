#!/usr/bin/env bash
# Run the whole test suite: unit, integration (PostgreSQL, Redis, real Celery worker) and
# end-to-end (headless Chromium). Creates .venv and starts PostgreSQL/Redis when needed.
# Extra arguments go to pytest (e.g. `bash tests/run.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"

# Services the integration tests talk to, started if they are down.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# No silent skips: a missing Chromium, PostgreSQL, Redis or ../shared stops the run with what to
# install (tests/requirements_check.py), and the summary ends with "skipped tests: N".
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
.venv/bin/mypy  # strict on the modules listed in pyproject.toml [tool.mypy] files
exec .venv/bin/pytest "$@"
