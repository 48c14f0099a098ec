#!/usr/bin/env bash
# The embedded demo on a fresh machine: virtualenv, install, migrate, bundled knowledge graph,
# model and sample, classify the sample, serve http://127.0.0.1:8000 with one user per role.
# SQLite and in-process tasks: no PostgreSQL, Redis or Celery worker needed.
# DEMO_ADDR=host:port serves elsewhere (default 127.0.0.1:8000), e.g. when 8000 is taken.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
DEMO_ADDR=${DEMO_ADDR:-127.0.0.1:8000}

# The address is checked first: a taken port is reported now, not after minutes of setup.
if ! [[ "$DEMO_ADDR" =~ ^(.+):([0-9]{1,5})$ ]]; then
  echo "error: DEMO_ADDR must be host:port, e.g. DEMO_ADDR=127.0.0.1:8001 (got '$DEMO_ADDR')" >&2
  exit 2
fi
if ! "$PYTHON" - "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" <<'PY'
import socket
import sys

host, port = sys.argv[1].strip("[]"), int(sys.argv[2])


def free(p: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Like the server will: a port left in TIME_WAIT is fine, one somebody listens on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, p))
        except OSError as exc:
            free.reason = exc.strerror or str(exc)
            return False
    return True


if not 0 < port < 65536:
    sys.exit(f"error: DEMO_ADDR port must be between 1 and 65535 (got {port})")
if not free(port):
    spare = next((p for p in range(port + 1, min(port + 50, 65535)) if free(p)), None)
    shown = f"[{host}]" if ":" in host else host
    print(f"error: cannot serve the demo on {shown}:{port}: {free.reason}.", file=sys.stderr)
    print("Another program (perhaps an earlier demo) is using it. Stop it, or choose another address:", file=sys.stderr)
    print(f"  DEMO_ADDR={shown}:{spare or port + 1} bash fusionreview/demo/run.sh", file=sys.stderr)
    sys.exit(1)
PY
then
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "==> installing (torch CPU wheel, Django, Celery, transformers...)"
.venv/bin/pip install -q --disable-pip-version-check -e .

export FUSIONREVIEW_DEMO=true DEBUG=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# runserver's "do not use in production" banner: this is the demo; production runs gunicorn (docker-compose.yml).
export DJANGO_RUNSERVER_HIDE_WARNING=true
unset DATABASE_URL CELERY_BROKER_URL REDIS_URL
echo "==> migrating the demo database (var/db.sqlite3)"
.venv/bin/python manage.py migrate --noinput -v0
echo "==> loading the knowledge graph, demo users and the 300-listing sample (classified in-process)"
.venv/bin/python manage.py demo_setup
echo "==> serving on http://${DEMO_ADDR}/  (Ctrl-C stops)"
exec .venv/bin/python manage.py runserver --noreload "${DEMO_ADDR}"
