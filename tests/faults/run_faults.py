"""Fault run: 1,000 listings under 20 clients while the worker, Redis and PostgreSQL fail.

    .venv/bin/python tests/faults/run_faults.py [--n 1000] [--clients 20] [--rate 6]
                                                [--pg-outage 60] [--catch-up-timeout 900]

Run by hand (about 10-15 minutes on 2 CPUs), not in CI. Everything it starts is private and
removed at the end, so nothing anyone else uses is touched:

- PostgreSQL: a new cluster (`initdb` as the postgres user into a temporary directory) on
  port 5440, database `fr_faults`;
- Redis: its own `redis-server` on port 6390, without persistence (broker db 0, cache db 1);
- gunicorn with 3 workers (fusionreview/deploy/gunicorn.conf.py) on port 8790, a Celery worker
  (all queues) and beat, with the production settings (DEBUG=false) and default timings.

Timeline while the clients post (paced to --rate listings/s, so the posting spans the faults;
a client whose request fails or gets 503 tries the same listing again, as a real client with
Retry-After would):

    t=20 s   kill -9 the worker (its whole process group); a new worker 5 s later
    t=50 s   Redis killed (-9) and restarted empty 5 s later: queues and cache marks are lost
    t=80 s   PostgreSQL stopped for --pg-outage seconds (pg_ctl stop -m fast), then started
    t=170 s  kill -9 the worker again; a new worker 5 s later

Then it waits until every accepted listing is classified and prints:

    accepted       listings the API accepted (201/200)
    classified     accepted listings with a prediction
    routed         of those, auto-accepted + sent to review (status accepted / in_review)
    lost           accepted listings without a prediction at the end (target 0)
    duplicated     listings with more than one prediction from the serving model (target 0)
    catch-up s     seconds from the end of the last fault until the last listing was classified
    ingest p95     per fault window (and outside faults), over every request in that window

Needs: PostgreSQL 15+ binaries (/usr/lib/postgresql/*/bin), redis-server, the catalogue in
../shared/data/fashion (FUSION_DATA_DIR), and root (to run initdb/pg_ctl as `postgres`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from the repository root

from tests.faults.private_stack import (
    DATA_DIR,
    DB_NAME,
    PG_PORT,
    PY,
    REPO,
    WEB_PORT,
    PrivatePostgres,
    PrivateRedis,
    Proc,
    app_env,
    log,
)

SETUP = """
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
from knowledge.importexport.services import graph_import_snapshot
from knowledge.versions.publish import knowledge_publish
graph_import_snapshot(snapshot=snapshot_from_catalogue({catalogue!r}, splits=("train", "val")))
knowledge_publish(reason="fault run seed")
user = User.objects.create_user(username="feeder", password="fault-run-password-1")
user.groups.add(Group.objects.get(name="ops"))
print("TOKEN=" + Token.objects.create(user=user).key)
"""

REPORT = """
import json
from django.db.models import Count, Max
from classifier.models import Listing, Prediction
from classifier.registry.services import model_version_serving_ensure
version = model_version_serving_ensure()
ids = json.load(open({ids_file!r}))
listings = Listing.objects.filter(pk__in=ids)
preds = Prediction.objects.filter(listing_id__in=ids, is_shadow=False)
per = preds.values("listing_id").annotate(n=Count("id"))
print("REPORT=" + json.dumps({{
    "present": listings.count(),
    "classified": preds.values("listing_id").distinct().count(),
    "routed": listings.filter(status__in=["accepted", "in_review"]).count(),
    "failed": listings.filter(status="failed").count(),
    "queued": listings.filter(status="queued").count(),
    "duplicated": sum(1 for row in per if row["n"] > 1),
    "last_prediction": (preds.aggregate(m=Max("created_at"))["m"].timestamp() if preds.exists() else None),
}}))
"""


def manage(env: dict[str, str], *args: str, code: str | None = None) -> str:
    cmd = [PY, "manage.py", *args] if code is None else [PY, "manage.py", "shell", "-c", code]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args) or 'shell'} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class Request:
    started: float
    seconds: float
    status: int  # 0 = connection error


@dataclass
class Feed:
    rows: list[dict[str, str]]
    token: str
    n: int
    clients: int
    rate: float
    requests: list[Request] = field(default_factory=list)
    accepted: dict[int, int] = field(default_factory=dict)  # listing index -> listing id
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        start = time.monotonic()
        next_index = iter(range(self.n))
        index_lock = threading.Lock()

        def client() -> None:
            session = requests.Session()
            session.headers["Authorization"] = f"Token {self.token}"
            while True:
                with index_lock:
                    i = next(next_index, None)
                if i is None:
                    return
                # Pacing: listing i is due at start + i / rate.
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.post_until_accepted(session, i)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def post_until_accepted(self, session: requests.Session, i: int) -> None:
        row = self.rows[i % len(self.rows)]
        image = (DATA_DIR / row["image"]).read_bytes()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            status, body = 0, None
            try:
                response = session.post(
                    f"http://127.0.0.1:{WEB_PORT}/api/listings/",
                    data={"title": row["title"], "source": "faults", "external_id": f"f-{i}"},
                    files={"image": ("photo.jpg", image, "image/jpeg")},
                    timeout=60,
                )
                status = response.status_code
                if status in (200, 201):
                    body = response.json()
            except requests.RequestException:
                pass
            with self.lock:
                self.requests.append(
                    Request(
                        started=time.time() - (time.monotonic() - t0),
                        seconds=time.monotonic() - t0,
                        status=status,
                    )
                )
                if body is not None:
                    self.accepted[i] = body["id"]
                    return
            time.sleep(
                1.0 + random.random()
            )  # 503 / connection refused: retry like a client honouring Retry-After


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--rate", type=float, default=6.0, help="listings per second (paced to span the faults)"
    )
    parser.add_argument("--pg-outage", type=float, default=60.0)
    parser.add_argument("--catch-up-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    with open(DATA_DIR / "catalogue.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    root = Path(tempfile.mkdtemp(prefix="fusionreview-faults-"))
    log(f"work directory {root}")
    pg, redis_server = PrivatePostgres(root), PrivateRedis(root)
    env = app_env(root)
    web = Proc(
        "gunicorn",
        [PY, "-m", "gunicorn", "fusionreview.wsgi", "-c", "fusionreview/deploy/gunicorn.conf.py"],
        env,
        root,
    )
    worker = Proc(
        "worker",
        [
            PY,
            "-m",
            "celery",
            "-A",
            "fusionreview",
            "worker",
            "-Q",
            "inference,default,training",
            "-c",
            "1",
            "-P",
            "prefork",
            "--prefetch-multiplier",
            "1",
            "--without-gossip",
            "--without-mingle",
            "-n",
            "faults@%h",
        ],
        env,
        root,
    )
    beat = Proc(
        "beat",
        [
            PY,
            "-m",
            "celery",
            "-A",
            "fusionreview",
            "beat",
            "-s",
            str(root / "celerybeat-schedule"),
            "--loglevel",
            "INFO",
        ],
        env,
        root,
    )
    windows: list[tuple[str, float, float]] = []
    try:
        pg.init()
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(PG_PORT),
                "-U",
                "postgres",
                "-c",
                f"CREATE DATABASE {DB_NAME}",
            ],
            check=True,
            capture_output=True,
        )
        redis_server.start()
        log("migrate + seed knowledge + user")
        manage(env, "migrate", "--noinput", "-v0")
        token = (
            manage(env, code=SETUP.format(catalogue=str(DATA_DIR / "catalogue.csv")))
            .split("TOKEN=")[1]
            .strip()
        )
        web.start()
        worker.start()
        beat.start()
        for _ in range(120):
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{WEB_PORT}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("gunicorn did not come up")

        feed = Feed(rows=rows, token=token, n=args.n, clients=args.clients, rate=args.rate)
        t0 = time.time()
        feeder = threading.Thread(target=feed.run, daemon=True)
        feeder.start()
        log(f"posting {args.n} listings from {args.clients} clients at {args.rate}/s")

        def at(seconds: float) -> None:
            time.sleep(max(0.0, t0 + seconds - time.time()))

        at(20)
        start = time.time()
        log("fault 1: kill -9 worker")
        worker.kill9()
        time.sleep(5)
        worker.start()
        windows.append(("worker kill -9 #1", start, time.time() + 10))
        at(50)
        start = time.time()
        log("fault 2: Redis killed, restarted empty 5 s later")
        redis_server.kill()
        time.sleep(5)
        redis_server.start()
        windows.append(("Redis restart (no persistence)", start, time.time() + 5))
        at(80)
        start = time.time()
        log(f"fault 3: PostgreSQL stopped for {args.pg_outage:.0f} s")
        pg.stop()
        time.sleep(args.pg_outage)
        pg.start()
        windows.append((f"PostgreSQL down {args.pg_outage:.0f} s", start, time.time()))
        log("PostgreSQL back")
        at(80 + args.pg_outage + 30)
        start = time.time()
        log("fault 4: kill -9 worker")
        worker.kill9()
        time.sleep(5)
        worker.start()
        windows.append(("worker kill -9 #2", start, time.time() + 10))
        faults_end = time.time()

        feeder.join()
        posting_end = time.time()
        log(f"posting done: {len(feed.accepted)} accepted in {posting_end - t0:.0f} s")
        ids = sorted(feed.accepted.values())
        ids_file = root / "ids.json"
        ids_file.write_text(json.dumps(ids))

        deadline = time.time() + args.catch_up_timeout
        report: dict = {}
        while time.time() < deadline:
            report = json.loads(manage(env, code=REPORT.format(ids_file=str(ids_file))).split("REPORT=")[1])
            log(
                f"classified {report['classified']}/{len(ids)} (queued {report['queued']}, failed {report['failed']})"
            )
            if report["classified"] >= len(ids):
                break
            time.sleep(15)

        outside = [r.seconds for r in feed.requests if not any(s <= r.started <= e for _, s, e in windows)]
        print()
        print("=== fault run ===")
        print(f"listings posted                 {args.n} ({args.clients} clients, {args.rate}/s)")
        print(f"accepted                        {len(ids)}")
        print(f"classified                      {report.get('classified')}")
        print(f"routed (accepted + in review)   {report.get('routed')}")
        print(f"failed                          {report.get('failed')}")
        print(f"lost                            {len(ids) - (report.get('classified') or 0)}")
        print(f"duplicated predictions          {report.get('duplicated')}")
        last = report.get("last_prediction")
        last_event = max(faults_end, posting_end)
        print(
            f"seconds to catch up             {last - faults_end:.0f} after the last fault, {last - last_event:.0f} after the last fault or post"
            if last
            else "seconds to catch up             n/a"
        )
        print(
            f"requests                        {len(feed.requests)} ({sum(r.status in (200, 201) for r in feed.requests)} accepted, "
            f"{sum(r.status == 503 for r in feed.requests)} x 503, {sum(r.status == 0 for r in feed.requests)} connection errors)"
        )
        print(f"ingest p95 outside faults       {p95(outside) or 0:.3f} s")
        for name, s, e in windows:
            window = [r for r in feed.requests if s <= r.started <= e]
            ok = [r.seconds for r in window if r.status in (200, 201)]
            print(
                f"ingest p95 during {name:<30} {p95([r.seconds for r in window]) or 0:.3f} s over {len(window)} requests "
                f"({len(ok)} accepted, p95 of those {p95(ok) or 0:.3f} s)"
            )
    finally:
        for proc in (beat, worker, web):
            proc.stop()
        redis_server.kill()
        pg.stop()
        if args.keep:
            log(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
