#!/usr/bin/env bash
# The embedded demo on a fresh machine: virtualenv, install, migrate, bundled knowledge graph,
# model and sample, classify the sample, serve http://127.0.0.1:8000 with one user per role.
# SQLite and in-process tasks: no PostgreSQL, Redis or Celery worker needed.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "==> installing (torch CPU wheel, Django, Celery, transformers...)"
.venv/bin/pip install -q --disable-pip-version-check -e .

export FUSIONREVIEW_DEMO=true DEBUG=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset DATABASE_URL CELERY_BROKER_URL REDIS_URL
echo "==> migrating the demo database (var/db.sqlite3)"
.venv/bin/python manage.py migrate --noinput -v0
echo "==> loading the knowledge graph, demo users and the 300-listing sample (classified in-process)"
.venv/bin/python manage.py demo_setup
echo "==> serving on http://${DEMO_ADDR:-127.0.0.1:8000}/  (Ctrl-C stops)"
exec .venv/bin/python manage.py runserver --noreload "${DEMO_ADDR:-127.0.0.1:8000}"
