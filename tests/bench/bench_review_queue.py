"""Benchmark: "claim next" and the queue page over a large review table, under concurrent auditors.

    .venv/bin/python tests/bench/bench_review_queue.py [--tasks 1000000] [--pending-share 0.3]
                                                       [--auditors 20] [--rounds 25] [--refill]

Creates (if missing) and migrates the PostgreSQL database `fusionreview_bench_review`, fills it with
`--tasks` review tasks (plus one listing and one prediction each) through COPY, then runs `--auditors`
threads, each with its own DB connection. Every round an auditor:
  1. claims the next task with a direct service call, `review_claim_next` (timed: "claim"),
  2. approves it with `review_decide` (timed: "decide"),
  3. loads the queue page GET /review/ through Django's test Client, full middleware + template (timed: "page").
Prints p50/p95/p99 per operation. Targets: claim p95 < 20 ms, page p95 < 150 ms. Figures, not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DB_NAME = "fusionreview_bench_review"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
os.environ.setdefault("FUSIONREVIEW_DEMO", "true")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("STATIC_MANIFEST", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionreview.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def ensure_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
            print(f"created database {DB_NAME}")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def fill(total: int, pending_share: float) -> None:
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.utils import timezone

    from classifier.models import ModelVersion, ReviewTask
    from knowledge.models import Category

    # ~100 leaf categories in a 3-level tree
    leaves = []
    for m in range(4):
        root, _ = Category.objects.get_or_create(parent=None, name=f"Master{m}")
        for s in range(5):
            sub, _ = Category.objects.get_or_create(parent=root, name=f"Sub{m}{s}")
            for a in range(5):
                leaf, _ = Category.objects.get_or_create(parent=sub, name=f"Article{m}{s}{a}")
                leaves.append(
                    (leaf.pk, f"Master{m} > Sub{m}{s} > Article{m}{s}{a}", f"Master{m}", f"Sub{m}{s}")
                )
    version, _ = ModelVersion.objects.get_or_create(
        name="bench-v1", defaults={"artifact_dir": "/nonexistent", "checksum": "0" * 64}
    )
    group = Group.objects.get(name="auditor")
    for i in range(50):
        user, created = User.objects.get_or_create(username=f"bench{i:02d}")
        if created:
            user.set_password("bench-password-1")
            user.save()
            user.groups.add(group)
    user_ids = list(User.objects.filter(username__startswith="bench").values_list("id", flat=True))

    existing = ReviewTask.objects.count()
    if existing >= total:
        print(f"{existing:,} review tasks already there; not refilling (use --refill)")
        return
    print(f"filling {total:,} listings + predictions + review tasks with COPY ...", flush=True)
    started = time.perf_counter()
    rng = random.Random(7)
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM classifier_listing")
        base = cur.fetchone()[0] + 1
    raw = connection.connection  # psycopg 3 connection
    chunk = 50_000
    words = [
        "cotton",
        "slim",
        "fit",
        "blue",
        "black",
        "red",
        "men",
        "women",
        "casual",
        "sports",
        "printed",
        "round",
        "neck",
        "jeans",
        "shirt",
        "dress",
    ]
    top_k = '{"master": [["Master0", 0.6]], "sub": [["Sub00", 0.5]], "article": [["Article000", 0.4]]}'
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        lst, pred, task = io.StringIO(), io.StringIO(), io.StringIO()
        for j in range(n):
            pk = base + start + j
            leaf_id, label, master, sub = leaves[pk % len(leaves)]
            pending = rng.random() < pending_share
            # pending work is 0-48 h old (about half past the 24 h SLA); decided work spans 30 days
            age = rng.random() * (48 * 3600 if pending else 30 * 86400)
            created = (now - timedelta(seconds=age)).isoformat()
            conf = round(rng.random() * 0.8, 4)
            title = " ".join(rng.choice(words) for _ in range(6))
            lst.write(
                f"{pk}\tbench\t{pk}\t{title}\t\t{{}}\tlistings/bench.jpg\t{pk:064x}\t0\t0\t"
                f"{'in_review' if pending else 'reviewed'}\t\t{created}\t{created}\n"
            )
            pred.write(
                f"{pk}\t{pk}\t{version.pk}\tf\t{leaf_id}\t{label}\t{master}\t{sub}\t{label.rsplit(' > ', 1)[-1]}\t"
                f"{conf}\t{conf}\t{conf}\t{conf}\t{top_k}\t\t0\tfull\t10\t0\t0\t[]\t[]\tt\t[]\t\t{created}\t"
                f"{'knowledge_conflict' if pk % 7 == 0 else 'low_confidence'}\n"
            )
            reason = (
                "knowledge_conflict" if pk % 7 == 0 else ("escalated" if pk % 53 == 0 else "low_confidence")
            )
            route = "knowledge_conflict" if pk % 7 == 0 else "low_confidence"
            priority = round(1 - conf + (0.5 if reason == "knowledge_conflict" else 0), 4)
            claimed_by = "\\N" if pending else str(rng.choice(user_ids))
            decided = "\\N" if pending else created
            task.write(
                f"{pk}\t{pk}\t{pk}\t{'pending' if pending else 'done'}\t{reason}\t\t{priority}\t{leaf_id}\t"
                f"{claimed_by}\t\\N\t1\t{created}\t{decided}\t{route}\n"
            )
        with raw.cursor() as cur:
            with cur.copy(
                "COPY classifier_listing (id, source, external_id, title, description, attributes, image, "
                "image_sha256, image_width, image_height, status, failure_reason, created_at, updated_at) FROM STDIN"
            ) as copy:
                copy.write(lst.getvalue())
            with cur.copy(
                "COPY classifier_prediction (id, listing_id, model_version_id, is_shadow, category_id, category_label, "
                "master_category, sub_category, article_type, master_confidence, sub_confidence, article_confidence, "
                "confidence, top_k, brand_label, brand_confidence, compute_path, latency_ms, complexity, "
                "knowledge_version, knowledge_findings, entities, needs_review, review_reasons, attention_map, "
                "created_at, route_reason) FROM STDIN"
            ) as copy:
                copy.write(pred.getvalue())
            with cur.copy(
                "COPY classifier_reviewtask (id, listing_id, prediction_id, status, reason, reason_detail, priority, "
                "category_id, claimed_by_id, claim_expires_at, version, created_at, decided_at, route_reason) FROM STDIN"
            ) as copy:
                copy.write(task.getvalue())
        raw.commit()
        done = start + n
        elapsed = time.perf_counter() - started
        print(f"  {done:>9,} / {total:,}  {elapsed:6.0f} s", flush=True)
    with connection.cursor() as cur:
        for table in ("classifier_listing", "classifier_prediction", "classifier_reviewtask"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
    print(f"filled in {time.perf_counter() - started:.0f} s; VACUUM ANALYZE ...", flush=True)
    raw.autocommit = True
    with raw.cursor() as cur:
        t0 = time.perf_counter()
        cur.execute("VACUUM ANALYZE classifier_reviewtask")
        cur.execute("VACUUM ANALYZE classifier_listing")
        cur.execute("VACUUM ANALYZE classifier_prediction")
        print(f"vacuum analyze {time.perf_counter() - t0:.0f} s", flush=True)
    raw.autocommit = False


def run(auditors: int, rounds: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from classifier.models import ReviewTask
    from classifier.review.decisions import review_decide
    from classifier.review.services import review_claim_next

    users = list(User.objects.filter(username__startswith="bench").order_by("username")[:auditors])
    # Start clean: nothing held from a previous run.
    ReviewTask.objects.filter(status="claimed").update(
        status="pending", claimed_by=None, claim_expires_at=None
    )
    timings: dict[str, list[float]] = {"claim": [], "decide": [], "page": []}
    sql_timings: dict[str, list[float]] = {"claim": [], "decide": [], "page": []}
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def work(user) -> None:
        local = {"claim": [], "decide": [], "page": []}
        local_sql = {"claim": [], "decide": [], "page": []}
        sql = [0.0]

        def sql_timer(execute, query, params, many, context):
            # Time spent waiting for PostgreSQL, to tell DB cost from Python/GIL time in this process.
            t = time.perf_counter()
            try:
                return execute(query, params, many, context)
            finally:
                sql[0] += time.perf_counter() - t

        def timed(key, fn):
            sql[0] = 0.0
            t0 = time.perf_counter()
            with connection.execute_wrapper(sql_timer):
                result = fn()
            local[key].append((time.perf_counter() - t0) * 1000)
            local_sql[key].append(sql[0] * 1000)
            return result

        try:
            client = Client()
            client.force_login(user)
            client.get("/review/")  # warm: connection, session, template cache
            barrier.wait()
            for _ in range(rounds):
                task = timed("claim", lambda: review_claim_next(auditor=user))
                if task is not None:
                    timed(
                        "decide",
                        lambda t=task: review_decide(
                            auditor=user, task_id=t.pk, version=t.version, action="approve"
                        ),
                    )
                response = timed("page", lambda: client.get("/review/"))
                assert response.status_code == 200, response.status_code
        except BaseException as exc:
            errors.append(exc)
        finally:
            with lock:
                for key, values in local.items():
                    timings[key].extend(values)
                    sql_timings[key].extend(local_sql[key])
            connection.close()

    print(f"running {len(users)} concurrent auditors x {rounds} rounds ...", flush=True)
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        print("errors:", errors[:3])
    print(f"\n{len(users)} auditors, {rounds} rounds each, wall {wall:.1f} s")
    print(f"{'operation':<34}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean':>9}")
    names = {
        "claim": "claim next (service call)",
        "decide": "approve (service call)",
        "page": "queue page GET /review/ (Client)",
    }
    for key, values in [*timings.items(), *((f"{k}:sql", v) for k, v in sql_timings.items())]:
        if key.endswith(":sql"):
            names[key] = f"  of which SQL: {key[:-4]}"
        print(
            f"{names[key]:<34}{len(values):>6}{pct(values, 50):>9.1f}{pct(values, 95):>9.1f}"
            f"{pct(values, 99):>9.1f}{statistics.fmean(values) if values else float('nan'):>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--pending-share", type=float, default=0.3)
    parser.add_argument("--auditors", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--refill", action="store_true", help="drop the database and fill it again")
    args = parser.parse_args()

    if args.refill:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"migrated in {time.perf_counter() - t0:.1f} s")
    fill(args.tasks, args.pending_share)
    with connection.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM classifier_reviewtask GROUP BY status ORDER BY status")
        print("review tasks:", ", ".join(f"{s}={n:,}" for s, n in cur.fetchall()))
    from django.core.cache import cache

    from classifier.review.selectors import COUNTS_CACHE_KEY

    cache.delete(COUNTS_CACHE_KEY)
    run(args.auditors, args.rounds)


if __name__ == "__main__":
    main()
