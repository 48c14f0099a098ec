"""Benchmark: the review loop over HTTP, through gunicorn, as auditors' browsers drive it.

    .venv/bin/python tests/bench/bench_review_http.py [--tasks 1000000] [--clients 1,20]
                                                      [--seconds 30] [--workers 3] [--port 8765]

Uses the database `fusionreview_bench_review` that `bench_review_queue.py` fills (it is filled here
the same way when it holds fewer than `--tasks` review tasks). Starts gunicorn (`--workers` sync
workers) on 127.0.0.1:`--port`, logs one bench auditor in per client through the real login form
(its own session and CSRF cookie), then for each client count runs the loop for `--seconds`:

  1. GET  /review/                       the queue page, full page           (timed: "queue page")
  2. POST /review/next/      (htmx)      claim the next item, render it      (timed: "next")
  3. POST /review/task/N/decide/ (htmx)  approve it; the response claims and
                                          renders the next item              (timed: "decide")
  4. steps 3 repeats on the item it handed out, and every 10th decision the client loads the queue
     page again (an auditor glancing at the queue), so the mix is mostly decide.

Prints p50/p95 per operation and decisions per second for each client count. Figures, not a test.
Targets (issue 11): p95 <= 50 ms with 1 client, >= 20 decisions/s with 20 clients.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bench"))
sys.path.insert(0, str(ROOT))

import bench_review_queue as fill_bench  # noqa: E402  (sets DATABASE_URL & co. for the bench db)
import requests  # noqa: E402

if os.environ.get("BENCH_REVIEW_DB"):  # another database, e.g. one per engineer on a shared machine
    fill_bench.DB_NAME = os.environ["BENCH_REVIEW_DB"]
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{fill_bench.DB_NAME}"

TASK_RE = re.compile(r'action="/review/task/(\d+)/decide/".*?name="version" value="(\d+)"', re.S)
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def pct(values: list[float], q: float) -> float:
    return fill_bench.pct(values, q)


def fill_sql(total: int, pending_share: float) -> None:
    """Categories, bench auditors and a model version through the ORM; the rows by INSERT ... SELECT.

    generate_series in PostgreSQL builds a million listings, predictions and tasks (about 6 minutes on
    two shared cores, most of it the deferred foreign-key checks at commit),
    with the same shape as `bench_review_queue.fill` (100 leaves, 0-48 h old pending work, 30 days of
    decided work with its final category, so the item page's "similar reviewed" panel has a real pool;
    every 7th a knowledge conflict, every 53rd an escalation).
    """
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction

    from classifier.models import ModelVersion, ReviewTask
    from knowledge.models import Category

    leaf_ids = []
    for m in range(4):
        root, _ = Category.objects.get_or_create(parent=None, name=f"Master{m}")
        for s in range(5):
            sub, _ = Category.objects.get_or_create(parent=root, name=f"Sub{m}{s}")
            for a in range(5):
                leaf, _ = Category.objects.get_or_create(parent=sub, name=f"Article{m}{s}{a}")
                leaf_ids.append(leaf.pk)
    version, _ = ModelVersion.objects.get_or_create(
        name="bench-v1", defaults={"artifact_dir": "/nonexistent", "checksum": "0" * 64}
    )
    group = Group.objects.get(name="auditor")
    for i in range(max(20, AUDITORS)):
        user, created = User.objects.get_or_create(username=f"bench{i:02d}")
        if created:
            user.set_password("bench-password-1")
            user.save()
            user.groups.add(group)
    existing = ReviewTask.objects.count()
    if existing >= total:
        print(f"{existing:,} review tasks already there; not refilling")
        return
    started = time.perf_counter()
    print(f"filling {total:,} listings + predictions + review tasks with INSERT ... SELECT ...", flush=True)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) + 1 FROM classifier_listing")
        base = cur.fetchone()[0]
        cur.execute(
            "CREATE TEMP TABLE bench_leaf ON COMMIT DROP AS SELECT row_number() OVER (ORDER BY c.id) - 1 AS k,"
            " c.id, p.name AS sub, g.name AS master, c.name AS article FROM knowledge_category c"
            " JOIN knowledge_category p ON p.id = c.parent_id JOIN knowledge_category g ON g.id = p.parent_id"
            " WHERE c.id = ANY(%s)",
            [leaf_ids],
        )
        cur.execute(
            "CREATE TEMP TABLE bench_row ON COMMIT DROP AS SELECT g AS id, (g %% 100) AS k,"
            " random() < %s AS pending, round((random() * 0.8)::numeric, 4)::float AS conf,"
            " random() AS age_frac FROM generate_series(%s::bigint, %s::bigint) g",
            [pending_share, base, base + total - 1],
        )
        cur.execute(
            "INSERT INTO classifier_listing (id, source, external_id, title, description, attributes, image,"
            " image_sha256, image_width, image_height, status, failure_reason, created_at, updated_at,"
            " final_category_id)"
            " SELECT r.id, 'bench', r.id::text, (ARRAY['cotton','slim','fit','blue','black','red','men',"
            "'women','casual','sports','printed','round','neck','jeans','shirt','dress'])[1 + r.id %% 16]"
            " || ' ' || l.article || ' ' || (ARRAY['slim fit','round neck','casual','printed'])[1 + r.id %% 4],"
            " '', '{}'::jsonb, 'listings/bench.jpg', lpad(to_hex(r.id), 64, '0'), 0, 0,"
            " CASE WHEN r.pending THEN 'in_review' ELSE 'reviewed' END, '',"
            " now() - make_interval(secs => r.age_frac * CASE WHEN r.pending THEN 48 * 3600 ELSE 30 * 86400 END),"
            " now(), CASE WHEN r.pending THEN NULL ELSE l.id END"
            " FROM bench_row r JOIN bench_leaf l ON l.k = r.k",
            [],
        )
        cur.execute(
            "INSERT INTO classifier_prediction (id, listing_id, model_version_id, is_shadow, category_id,"
            " category_label, master_category, sub_category, article_type, master_confidence, sub_confidence,"
            " article_confidence, confidence, top_k, brand_label, brand_confidence, compute_path, latency_ms,"
            " complexity, knowledge_version, knowledge_findings, entities, needs_review, review_reasons,"
            " attention_map, created_at, route_reason)"
            " SELECT r.id, r.id, %s, false, l.id, l.master || ' > ' || l.sub || ' > ' || l.article,"
            " l.master, l.sub, l.article, r.conf, r.conf, r.conf, r.conf,"
            " jsonb_build_object('master', jsonb_build_array(jsonb_build_array(l.master, 0.6)),"
            " 'sub', jsonb_build_array(jsonb_build_array(l.sub, 0.5)),"
            " 'article', jsonb_build_array(jsonb_build_array(l.article, r.conf))),"
            " '', 0, 'full', 10, 0, 0, '[]'::jsonb, '[]'::jsonb, true, '[]'::jsonb, '', li.created_at,"
            " CASE WHEN r.id %% 7 = 0 THEN 'knowledge_conflict' ELSE 'low_confidence' END"
            " FROM bench_row r JOIN bench_leaf l ON l.k = r.k JOIN classifier_listing li ON li.id = r.id",
            [version.pk],
        )
        cur.execute(
            "INSERT INTO classifier_reviewtask (id, listing_id, prediction_id, status, reason, reason_detail,"
            " priority, category_id, claimed_by_id, claim_expires_at, version, created_at, decided_at,"
            " route_reason)"
            " SELECT r.id, r.id, r.id, CASE WHEN r.pending THEN 'pending' ELSE 'done' END,"
            " CASE WHEN r.id %% 7 = 0 THEN 'knowledge_conflict' WHEN r.id %% 53 = 0 THEN 'escalated'"
            " ELSE 'low_confidence' END, '',"
            " round((1 - r.conf + CASE WHEN r.id %% 7 = 0 THEN 0.5 ELSE 0 END)::numeric, 4)::float, l.id,"
            " CASE WHEN r.pending THEN NULL ELSE (SELECT min(id) FROM auth_user WHERE username LIKE 'bench%%') END,"
            " NULL, 1, li.created_at, CASE WHEN r.pending THEN NULL ELSE li.created_at END,"
            " CASE WHEN r.id %% 7 = 0 THEN 'knowledge_conflict' ELSE 'low_confidence' END"
            " FROM bench_row r JOIN bench_leaf l ON l.k = r.k JOIN classifier_listing li ON li.id = r.id",
            [],
        )
        for table in ("classifier_listing", "classifier_prediction", "classifier_reviewtask"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
    print(f"filled in {time.perf_counter() - started:.0f} s; VACUUM ANALYZE ...", flush=True)
    with connection.cursor() as cur:
        for table in ("classifier_listing", "classifier_prediction", "classifier_reviewtask"):
            cur.execute(f"VACUUM ANALYZE {table}")
    print(f"built in {time.perf_counter() - started:.0f} s", flush=True)


AUDITORS = 20


def server_env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{port}",
        LOG_LEVEL="WARNING",
    )
    return env


def start_gunicorn(workers: int, port: int) -> subprocess.Popen:
    cmd = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "fusionreview.wsgi:application",
        # The settings docker-compose's web service runs with; the access log goes to a file.
        "--config",
        str(ROOT / "fusionreview" / "deploy" / "gunicorn.conf.py"),
        "--access-logfile",
        "/tmp/bench_review_http_access.log",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--timeout",
        "60",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(port))
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            requests.get(f"{base}/accounts/login/", timeout=30)
            return proc
        except requests.RequestException:
            time.sleep(0.5)
    proc.terminate()
    proc.wait(timeout=30)
    raise SystemExit("gunicorn did not come up")


class Auditor:
    def __init__(self, base: str, username: str) -> None:
        self.base = base
        self.s = requests.Session()
        page = self.s.get(f"{base}/accounts/login/")
        token = CSRF_RE.search(page.text).group(1)
        r = self.s.post(
            f"{base}/accounts/login/",
            data={"username": username, "password": "bench-password-1", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/accounts/login/"},
            allow_redirects=False,
        )
        assert r.status_code == 302, f"login failed for {username}: {r.status_code}"
        self.headers = {
            "X-CSRFToken": self.s.cookies["csrftoken"],
            "HX-Request": "true",
            "HX-Target": "review-work",
            "Referer": f"{base}/review/",
        }

    def queue_page(self) -> None:
        r = self.s.get(f"{self.base}/review/")
        assert r.status_code == 200, r.status_code

    def next(self) -> tuple[int, int] | None:
        r = self.s.post(f"{self.base}/review/next/", headers=self.headers)
        assert r.status_code == 200, r.status_code
        return self._task(r.text)

    def decide(self, task: tuple[int, int]) -> tuple[int, int] | None:
        r = self.s.post(
            f"{self.base}/review/task/{task[0]}/decide/",
            data={"action": "approve", "version": str(task[1])},
            headers=self.headers,
        )
        assert r.status_code == 200, r.status_code
        return self._task(r.text)

    @staticmethod
    def _task(html: str) -> tuple[int, int] | None:
        m = TASK_RE.search(html)
        return (int(m.group(1)), int(m.group(2))) if m else None


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(master: int) -> dict[int, float]:
    """CPU seconds of the gunicorn workers and of the PostgreSQL backends serving the bench database.

    On a shared machine wall-clock latency also measures the neighbours; CPU per decision does not.
    """
    import psycopg

    workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{fill_bench.DB_NAME}") as conn:
        backends = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'",
                (fill_bench.DB_NAME,),
            )
        ]
    return {**{w: _cpu_seconds(w) for w in workers}, **{-b: _cpu_seconds(b) for b in backends}}


def run(base: str, auditors: list[Auditor], seconds: float) -> dict[str, object]:
    timings: dict[str, list[float]] = {"queue page": [], "next": [], "decide": []}
    decided = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(auditors))
    stop_at = [0.0]

    def work(a: Auditor) -> None:
        local: dict[str, list[float]] = {k: [] for k in timings}
        n = 0

        def timed(key: str, fn):
            t0 = time.perf_counter()
            result = fn()
            local[key].append((time.perf_counter() - t0) * 1000)
            return result

        try:
            barrier.wait()
            timed("queue page", a.queue_page)
            task = timed("next", a.next)
            while task is not None and time.perf_counter() < stop_at[0]:
                task = timed("decide", lambda t=task: a.decide(t))
                n += 1
                if n % 10 == 0:
                    timed("queue page", a.queue_page)
                    task = timed("next", a.next)
        except BaseException as exc:
            errors.append(exc)
        finally:
            with lock:
                for k, v in local.items():
                    timings[k].extend(v)
                decided[0] += n

    stop_at[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(a,)) for a in auditors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        print("errors:", errors[:3])
    return {"timings": timings, "decided": decided[0], "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--pending-share", type=float, default=0.3)
    parser.add_argument("--clients", default="1,20")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    fill_bench.ensure_database()
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection

    from classifier.models import ReviewTask
    from classifier.review.selectors import COUNTS_CACHE_KEY

    call_command("migrate", verbosity=0)
    global AUDITORS
    AUDITORS = max(int(c) for c in args.clients.split(","))
    fill_sql(args.tasks, args.pending_share)
    ReviewTask.objects.filter(status="claimed").update(
        status="pending", claimed_by=None, claim_expires_at=None
    )
    cache.delete(COUNTS_CACHE_KEY)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM classifier_reviewtask")
        total = cur.fetchone()[0]
    connection.close()

    proc = start_gunicorn(args.workers, args.port)
    base = f"http://127.0.0.1:{args.port}"
    try:
        counts = [int(c) for c in args.clients.split(",")]
        auditors = [Auditor(base, f"bench{i:02d}") for i in range(max(counts))]
        for a in auditors[:3]:  # warm every worker: templates, caches, connections
            a.queue_page()
        print(f"\n{total:,} review tasks, gunicorn {args.workers} sync workers, {args.seconds:.0f} s per run")
        print(f"{'clients':>7}  {'operation':<12}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'decisions/s':>13}")
        cpu_lines = []
        for c in counts:
            before = server_cpu(proc.pid)
            client_before = time.process_time()
            result = run(base, auditors[:c], args.seconds)
            client_cpu = time.process_time() - client_before
            after = server_cpu(proc.pid)
            rate = result["decided"] / result["wall"]
            for i, (key, values) in enumerate(result["timings"].items()):
                print(
                    f"{c:>7}  {key:<12}{len(values):>7}{pct(values, 50):>9.1f}{pct(values, 95):>9.1f}"
                    + (f"{rate:>13.1f}" if i == 0 else "")
                )
            web = sum(v - before.get(k, 0.0) for k, v in after.items() if k > 0)
            db = sum(v - before.get(k, 0.0) for k, v in after.items() if k < 0)
            n = max(1, result["decided"])
            cpu_lines.append(
                f"{c:>7} clients: server CPU per decision (its share of queue pages and next included):"
                f" web {1000 * web / n:.1f} ms + PostgreSQL {1000 * db / n:.1f} ms"
                f" (the benchmark's own clients: {1000 * client_cpu / n:.1f} ms)"
            )
        print("\n".join(["", *cpu_lines]))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
