"""The fault run's private stack: a throwaway PostgreSQL cluster, its own redis-server, child processes
in their own process groups (so kill -9 takes a whole worker), and the app's environment pointing at them.

Nothing here touches a server anyone else uses (see run_faults.py).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("FUSION_DATA_DIR", REPO.parent / "shared" / "data" / "fashion"))
PG_PORT, REDIS_PORT, WEB_PORT = 5440, 6390, 8790
DB_NAME = "fr_faults"
PY = sys.executable


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        sys.exit(f"{name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


def as_postgres(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd], check=check, capture_output=True, text=True
    )


class PrivatePostgres:
    """A throwaway cluster owned by `postgres`, on its own port and socket directory."""

    def __init__(self, root: Path) -> None:
        self.data = root / "pgdata"
        self.sock = root / "pgsock"
        self.logfile = root / "postgres.log"

    def init(self) -> None:
        os.chmod(self.data.parent, 0o755)  # postgres must reach its directories inside
        self.data.mkdir(mode=0o700)
        shutil.chown(self.data, "postgres")
        self.sock.mkdir()
        shutil.chown(self.sock, "postgres")
        self.logfile.touch()
        shutil.chown(self.logfile, "postgres")
        as_postgres(pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def start(self) -> None:
        options = f"-p {PG_PORT} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        as_postgres(
            pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.logfile), "-w", "start"
        )

    def stop(self) -> None:
        as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)


class PrivateRedis:
    def __init__(self, root: Path) -> None:
        self.logfile = root / "redis.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # No persistence: a restart comes back empty, as the fault describes.
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(REDIS_PORT),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=open(self.logfile, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        for _ in range(50):
            if (
                subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True).returncode
                == 0
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Proc:
    """A child in its own process group (so kill -9 takes the whole worker/pool)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], root: Path) -> None:
        self.name, self.cmd, self.env, self.root = name, cmd, env, root
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        logfile = open(self.root / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd, cwd=REPO, env=self.env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()


def app_env(root: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "fusionreview.settings",
            "DEBUG": "false",
            "SECRET_KEY": "fault-run-" + "x" * 50,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on localhost, no proxy in front
            "STATIC_MANIFEST": "false",  # API only: nothing collected
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PG_PORT}/{DB_NAME}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
            "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/1",
            "MEDIA_ROOT": str(root / "media"),
            "FUSION_VERSIONS_DIR": str(root / "models"),
            "LOG_FORMAT": "json",
            "GUNICORN_BIND": f"127.0.0.1:{WEB_PORT}",
            "GUNICORN_WORKERS": "3",
            "PROMETHEUS_MULTIPROC_DIR": str(root / "prometheus"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
