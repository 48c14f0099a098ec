"""Pipeline benchmark: N catalogue listings through the API and a real Celery worker.

    .venv/bin/python tests/bench/bench_pipeline.py --n 200
    .venv/bin/python tests/bench/bench_pipeline.py            # N = 2,000 (test + val splits)

What runs, for real: PostgreSQL database `fusionreview_bench` (dropped and re-created, then
migrated, each run), the knowledge graph mined from the train+val rows and published, a
`celery worker -Q inference,default,training -P prefork` subprocess with the trained demo
model, Redis as broker. Listings are POSTed one by one through DRF's APIClient (in-process:
the real URL routing, token authentication, multipart parsing, serializers and
`listing_ingest`; no HTTP socket), which queues one classification message per listing
on commit; the worker tops each message up to INFERENCE_BATCH_SIZE with other waiting
listings (opportunistic batching).

It prints throughput and p50/p95/p99 for each stage:
- API ingest: one POST, request in to response out (validation, file write, row, enqueue);
- queue wait: from the POST's response to the start of the task that classified it;
- inference / item: the batch's `predict_batch` time divided by the batch size;
- DB write + route / item: the batch's prediction writes and routing divided by the batch size;
- end to end: from the POST's start to the listing being routed (accepted / in review).
It does not pass or fail on time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

DATA_DIR = Path(os.environ.get("FUSION_DATA_DIR", REPO.parent / "shared" / "data" / "fashion"))
BENCH_DB = os.environ.get("BENCH_DB_NAME", "fusionreview_bench")
PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_BASE_URL", "redis://127.0.0.1:6379")
# Outside the pairs the integration tests use (14/13 .. 6/5).
BROKER_DB, CACHE_DB = int(os.environ.get("BENCH_BROKER_DB", "4")), int(os.environ.get("BENCH_CACHE_DB", "3"))


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return (
        f"p50 {pick(0.50):9.1f}  p95 {pick(0.95):9.1f}  p99 {pick(0.99):9.1f}  "
        f"mean {statistics.fmean(ordered):9.1f}  (n={len(ordered)})"
    )


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (BENCH_DB,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}"')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="listings to ingest and classify (default 2000)")
    parser.add_argument("--splits", default="test,val", help="catalogue splits to take rows from, in order")
    parser.add_argument("--batch-size", type=int, default=16, help="INFERENCE_BATCH_SIZE for the worker")
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes (-c)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per worker process")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args()

    media = Path(tempfile.mkdtemp(prefix="fusionreview-bench-media-"))
    broker_url, cache_url = f"{REDIS}/{BROKER_DB}", f"{REDIS}/{CACHE_DB}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"{PG}/{BENCH_DB}",
            "CELERY_BROKER_URL": broker_url,
            "CELERY_RESULT_BACKEND": broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "REDIS_URL": cache_url,
            "MEDIA_ROOT": str(media),
            "INFERENCE_BATCH_SIZE": str(args.batch_size),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    import redis

    for url in (broker_url, cache_url):
        redis.Redis.from_url(url).flushdb()
    print(f"database {BENCH_DB}: re-creating and migrating ...", flush=True)
    recreate_database()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from django.contrib.auth.models import Group, User
    from django.db.models import Count
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
    from classifier.models import Listing, Prediction
    from knowledge.importexport.services import graph_import_snapshot
    from knowledge.versions.publish import knowledge_publish
    from tests.integration.conftest import MODEL_DIR, WorkerProcess, worker_env

    if not (MODEL_DIR / "model.safetensors").exists():
        print(f"no trained model at {MODEL_DIR}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    graph_import_snapshot(
        snapshot=snapshot_from_catalogue(str(DATA_DIR / "catalogue.csv"), splits=("train", "val"))
    )
    knowledge_publish(reason="benchmark seed")
    print(f"knowledge graph seeded and published in {time.perf_counter() - t0:.1f}s", flush=True)

    user = User.objects.create_user("bench-ingest", password="bench-only-pass-1")
    user.groups.add(Group.objects.get(name="ops"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    wanted = [s.strip() for s in args.splits.split(",") if s.strip()]
    with open(DATA_DIR / "catalogue.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows = sorted((r for r in rows if r["split"] in wanted), key=lambda r: wanted.index(r["split"]))[: args.n]
    if len(rows) < args.n:
        print(f"only {len(rows)} rows in splits {wanted}; benchmarking those", flush=True)
    images = {r["id"]: (DATA_DIR / r["image"]).read_bytes() for r in rows}

    env = worker_env(
        db_name=BENCH_DB,
        media_root=media,
        broker_url=broker_url,
        cache_url=cache_url,
        extra={"OMP_NUM_THREADS": str(args.threads), "INFERENCE_BATCH_SIZE": str(args.batch_size)},
    )
    env["CELERY_VISIBILITY_TIMEOUT"] = "3600"
    log_dir = Path(tempfile.mkdtemp(prefix="fusionreview-bench-logs-"))
    worker = WorkerProcess(env=env, log_dir=log_dir, concurrency=args.concurrency)
    print(f"starting the worker (log: {worker.log_dir})", flush=True)
    worker.start(timeout=180)
    # Warm the worker: load the model before the clock starts, as a running deployment would.
    from classifier.listings.tasks import classify_listings

    classify_listings.delay([0]).get(timeout=60)  # no such listing: loads nothing, proves the route
    warm_row = rows[0]
    warm = client.post(
        "/api/listings/",
        {
            "image": _upload(images[warm_row["id"]]),
            "title": warm_row["title"],
            "source": "bench-warmup",
            "external_id": warm_row["id"],
        },
        format="multipart",
    )
    assert warm.status_code == 201, warm.content
    warm_id = warm.json()["id"]
    _wait(lambda: Prediction.objects.filter(listing_id=warm_id).exists(), timeout=300, what="model warm-up")
    redis.Redis.from_url(broker_url).delete(
        *redis.Redis.from_url(broker_url).keys("celery-task-meta-*") or ["x"]
    )

    print(f"ingesting {len(rows)} listings through POST /api/listings/ ...", flush=True)
    post_start: dict[int, float] = {}
    post_end: dict[int, float] = {}
    ingest_ms: list[float] = []
    rejected = 0
    wall0 = time.time()
    for i, row in enumerate(rows, 1):
        start = time.time()
        response = client.post(
            "/api/listings/",
            {
                "image": _upload(images[row["id"]]),
                "title": row["title"],
                "source": "bench",
                "external_id": row["id"],
            },
            format="multipart",
        )
        end = time.time()
        if response.status_code != 201:
            rejected += 1
            print(f"  row {row['id']}: HTTP {response.status_code} {response.content[:200]!r}", flush=True)
            continue
        listing_id = response.json()["id"]
        post_start[listing_id], post_end[listing_id] = start, end
        ingest_ms.append(1000 * (end - start))
        if i % 200 == 0:
            done = Listing.objects.filter(source="bench").exclude(status=Listing.Status.QUEUED).count()
            print(f"  {i} posted, {done} classified", flush=True)
    ingest_wall = time.time() - wall0
    ids = list(post_start)
    print(f"all posted in {ingest_wall:.1f}s; waiting for the worker ...", flush=True)
    deadline = time.time() + args.timeout
    last = -1
    while True:
        waiting = Listing.objects.filter(pk__in=ids, status=Listing.Status.QUEUED).count()
        if waiting == 0:
            break
        if time.time() > deadline:
            print(f"timed out with {waiting} listings still queued", flush=True)
            break
        if waiting != last:
            print(f"  {len(ids) - waiting}/{len(ids)} classified", flush=True)
            last = waiting
        time.sleep(2)
    wall_end = time.time()
    worker.stop()

    # Per-batch timings from the task results the worker stored in the result backend.
    r = redis.Redis.from_url(broker_url)
    task_of: dict[int, dict] = {}
    batches = []
    for key in r.scan_iter("celery-task-meta-*"):
        meta = json.loads(r.get(key))
        result = meta.get("result")
        if meta.get("status") != "SUCCESS" or not isinstance(result, dict) or not result.get("ids"):
            continue
        batches.append(result)
        for listing_id in result["ids"]:
            task_of[listing_id] = result
    queue_wait, infer_item, write_item, e2e = [], [], [], []
    for batch in batches:
        size = max(1, len(batch["ids"]))
        infer_item += [1000 * batch["inference_s"] / size] * size
        write_item += [1000 * batch["write_s"] / size] * size
    routed_at = dict(
        Listing.objects.filter(pk__in=ids)
        .exclude(status=Listing.Status.QUEUED)
        .values_list("pk", "updated_at")
    )
    for listing_id in ids:
        batch = task_of.get(listing_id)
        if batch:
            queue_wait.append(1000 * max(0.0, batch["started_at"] - post_end[listing_id]))
        if listing_id in routed_at:
            e2e.append(1000 * (routed_at[listing_id].timestamp() - post_start[listing_id]))
    statuses = dict(Listing.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("id")))
    paths = dict(
        Prediction.objects.filter(listing_id__in=ids).values_list("compute_path").annotate(n=Count("id"))
    )
    done = len(routed_at)
    first = min(post_start.values()) if post_start else wall0
    last_routed = max((t.timestamp() for t in routed_at.values()), default=wall_end)
    sizes = [len(b["ids"]) for b in batches]

    import torch

    print()
    print("=" * 78)
    print(f"FusionReview pipeline benchmark  ({time.strftime('%Y-%m-%d %H:%M:%S')})")
    print(
        f"machine: {os.cpu_count()} CPUs visible, torch {torch.__version__}, "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; worker -c {args.concurrency}, "
        f"{args.threads} torch thread(s), batch size {args.batch_size}"
    )
    print("client: DRF APIClient in-process over the real /api/listings/ path (no HTTP socket)")
    print(
        f"listings: {len(rows)} from splits {wanted}; created {len(ids)}, rejected {rejected}; routed {done}"
    )
    print(f"statuses: {statuses}")
    print(f"compute paths: {paths}")
    print(
        f"batches: {len(batches)}, size mean {statistics.fmean(sizes) if sizes else 0:.1f}, max {max(sizes, default=0)}"
    )
    print(f"ingest only: {len(ids) / ingest_wall:.1f} listings/s ({ingest_wall:.1f}s)")
    print(
        f"end to end: {done / max(1e-9, last_routed - first):.1f} listings/s "
        f"({last_routed - first:.1f}s from first POST to last routed)"
    )
    print("latency, ms:")
    print(f"  API ingest             {percentiles(ingest_ms)}")
    print(f"  queue wait             {percentiles(queue_wait)}")
    print(f"  inference / item       {percentiles(infer_item)}")
    print(f"  DB write+route / item  {percentiles(write_item)}")
    print(f"  end to end             {percentiles(e2e)}")
    print("=" * 78)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "n": len(ids),
                    "routed": done,
                    "ingest_per_s": len(ids) / ingest_wall,
                    "e2e_per_s": done / max(1e-9, last_routed - first),
                    "ms": {
                        "api_ingest": sorted(ingest_ms),
                        "queue_wait": sorted(queue_wait),
                        "inference_item": sorted(infer_item),
                        "write_item": sorted(write_item),
                        "e2e": sorted(e2e),
                    },
                },
                indent=1,
            )
        )
    shutil.rmtree(media, ignore_errors=True)
    return 0 if done == len(ids) else 1


def _upload(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = "photo.jpg"
    return handle


def _wait(predicate, *, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
