"""Benchmark: knowledge snapshot build at scale, and publish -> first use by a running worker.

Run as a plain script (not collected by pytest):

    .venv/bin/python tests/bench/bench_knowledge_snapshot.py                 # both parts
    .venv/bin/python tests/bench/bench_knowledge_snapshot.py --part scale --brands 100000 --categories 10000
    .venv/bin/python tests/bench/bench_knowledge_snapshot.py --part propagation --rounds 5

Part "scale": (re)creates the PostgreSQL database `fusionreview_bench_knowledge`, migrates it,
bulk-inserts N categories (a 3-level tree) and M brands (2 aliases, 3 categories each), then
measures `snapshot_build_from_db` (time, tracemalloc peak, RSS growth), JSON size, serialise /
parse time, a full `knowledge_publish` (DB row + entity-cache push) and a reader's fetch+parse.

Part "propagation": seeds the same database with the catalogue's graph, starts a worker-like
subprocess that runs the real engine holder (`classifier.registry.serving.engine_for_batch`: one
version GET per batch, `set_snapshot` on change) with the demo model and classifies one listing
per batch; the parent publishes a new brand and records the time until the worker's first
prediction made with the new version. Entity cache: Redis db 12 (flushed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DB_NAME = "fusionreview_bench_knowledge"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
DATA = Path(os.environ.get("FUSION_DATA_DIR", REPO / ".." / "shared" / "data" / "fashion"))


def _env() -> None:
    sys.path.insert(0, str(REPO))
    os.environ["DJANGO_SETTINGS_MODULE"] = "fusionreview.settings"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ.setdefault("FUSIONREVIEW_DEMO", "true")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _recreate_db() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def _setup(fresh: bool) -> None:
    _env()
    if fresh:
        _recreate_db()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def part_scale(n_brands: int, n_categories: int) -> None:
    t0 = time.perf_counter()
    _setup(fresh=True)
    from knowledge.models import Brand, BrandAlias, BrandCategory, Category

    print(f"[scale] database {DB_NAME} ready in {time.perf_counter() - t0:.1f}s")
    # A 3-level tree: masters x subs x leaves ~= n_categories nodes.
    n_master = 10
    n_sub = 30
    n_leaves = max(n_master * n_sub, n_categories - n_master - n_master * n_sub)
    t0 = time.perf_counter()
    masters = Category.objects.bulk_create([Category(name=f"Master {i}") for i in range(n_master)])
    subs = Category.objects.bulk_create(
        [Category(name=f"Sub {i}-{j}", parent=m) for i, m in enumerate(masters) for j in range(n_sub)]
    )
    leaves = Category.objects.bulk_create(
        [Category(name=f"Leaf {k}", parent=subs[k % len(subs)]) for k in range(n_leaves)],
        batch_size=5000,
    )
    total_cats = len(masters) + len(subs) + len(leaves)
    brands = Brand.objects.bulk_create(
        [Brand(name=f"Brand {i:06d}") for i in range(n_brands)], batch_size=10000
    )
    BrandAlias.objects.bulk_create(
        [BrandAlias(brand=b, alias=f"{prefix}{b.pk}") for b in brands for prefix in ("alias-", "别名")],
        batch_size=20000,
    )
    BrandCategory.objects.bulk_create(
        [
            BrandCategory(brand=b, category=leaves[(i * 7 + k * 131) % len(leaves)])
            for i, b in enumerate(brands)
            for k in range(3)
        ],
        batch_size=20000,
        ignore_conflicts=True,
    )
    print(
        f"[scale] inserted {total_cats} categories, {n_brands} brands, {2 * n_brands} aliases, "
        f"{BrandCategory.objects.count()} relations in {time.perf_counter() - t0:.1f}s"
    )

    from knowledge import cache
    from knowledge.versions.publish import knowledge_publish
    from knowledge.versions.snapshot import snapshot_build_from_db

    builds = []
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        snap = snapshot_build_from_db(version=1)
        builds.append(time.perf_counter() - t0)
        del snap
    gc.collect()
    rss0 = _rss_mib()
    tracemalloc.start()
    snap = snapshot_build_from_db(version=1)
    _, peak = tracemalloc.get_traced_memory()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _rss_mib()
    print(
        f"[scale] snapshot_build_from_db: {len(snap.categories)} categories, {len(snap.brands)} brands: "
        f"best {min(builds):.2f}s, median {sorted(builds)[1]:.2f}s over 3 runs"
    )
    print(
        f"[scale] memory: tracemalloc peak {peak / 2**20:.0f} MiB during build, "
        f"{held / 2**20:.0f} MiB held by the snapshot; RSS {rss0:.0f} -> {rss1:.0f} MiB"
    )
    t0 = time.perf_counter()
    raw = snap.to_json()
    t_ser = time.perf_counter() - t0
    t0 = time.perf_counter()
    type(snap).from_json(raw)
    t_parse = time.perf_counter() - t0
    print(f"[scale] JSON {len(raw.encode()) / 2**20:.1f} MiB: serialise {t_ser:.2f}s, parse {t_parse:.2f}s")
    del snap, raw
    gc.collect()
    t0 = time.perf_counter()
    version = knowledge_publish(reason="bench")
    t_pub = time.perf_counter() - t0
    print(
        f"[scale] knowledge_publish (build + DB row + Redis push): {t_pub:.2f}s, "
        f"in force: {version.activated_at is not None}"
    )
    cache.memo_clear()
    t0 = time.perf_counter()
    for _ in range(1000):
        cache.snapshot_version_current()
    t_ver = (time.perf_counter() - t0) / 1000
    t0 = time.perf_counter()
    cache.snapshot_current()
    t_fetch = time.perf_counter() - t0
    t0 = time.perf_counter()
    cache.snapshot_current()
    t_memo = time.perf_counter() - t0
    print(
        f"[scale] worker side: version check {t_ver * 1e3:.3f} ms (one Redis GET); "
        f"first fetch+parse {t_fetch:.2f}s; later calls (memoised) {t_memo * 1e3:.2f} ms"
    )
    from knowledge.graph.brands import brand_create
    from knowledge.models import Brand as BrandModel
    from knowledge.versions.publish import knowledge_discard, knowledge_version_restore

    brand_create(actor=None, name="Bench pending brand", reason="bench")
    t0 = time.perf_counter()
    knowledge_discard(actor=None, reason="bench")
    t_discard = time.perf_counter() - t0
    assert not BrandModel.objects.filter(name="Bench pending brand", is_active=True).exists()
    t0 = time.perf_counter()
    knowledge_version_restore(actor=None, number=version.number, reason="bench")
    t_restore = time.perf_counter() - t0
    print(
        f"[scale] discard (tables back to the published snapshot): {t_discard:.1f}s; "
        f"restore of v{version.number} as a new version (tables + publish): {t_restore:.1f}s"
    )


WORKER_TITLE = "Benchbrand Men Blue Tshirt"


def worker_main() -> None:
    """The worker side of the propagation part: the real engine holder, one listing per batch."""
    _env()
    import django

    django.setup()
    from classifier.fusion.engine import ListingInput
    from classifier.registry.serving import engine_for_batch

    image = next((DATA / "images").glob("*.jpg")).read_bytes()
    seen = None
    deadline = time.time() + float(os.environ.get("BENCH_WORKER_SECONDS", "600"))
    while time.time() < deadline:
        loaded = engine_for_batch()
        version = int(loaded.engine.snapshot_version)
        pred = loaded.engine.predict_batch([ListingInput(image=image, title=WORKER_TITLE)])[0]
        if version != seen:
            seen = version
            print(json.dumps({"version": version, "used_at": time.time(), "brand": pred.brand}), flush=True)
        time.sleep(float(os.environ.get("BENCH_BATCH_GAP", "0.05")))


def part_propagation(rounds: int) -> None:
    _setup(fresh=True)
    from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
    from knowledge.graph.brands import brand_create
    from knowledge.importexport.services import graph_import_snapshot
    from knowledge.models import Category
    from knowledge.versions.publish import knowledge_publish

    graph_import_snapshot(snapshot=snapshot_from_catalogue(DATA / "catalogue.csv", splits=("train", "val")))
    knowledge_publish(reason="bench seed")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        first = json.loads(proc.stdout.readline())
        print(f"[propagation] worker running the demo model with knowledge v{first['version']}")
        tshirts = Category.objects.get(name="Tshirts", parent__name="Topwear")
        results = []
        for i in range(rounds):
            name = "Benchbrand" if i == 0 else f"Benchbrand{i}"
            brand_create(actor=None, name=name, categories=[tshirts], reason="bench")
            t_start = time.time()
            version = knowledge_publish(reason=f"bench round {i}")
            t_published = time.time()
            line = json.loads(proc.stdout.readline())
            assert line["version"] == version.number, line
            results.append((t_published - t_start, line["used_at"] - t_start, line["brand"]))
            print(
                f"[propagation] round {i}: publish call {results[-1][0] * 1e3:.0f} ms; "
                f"first prediction with v{version.number} {results[-1][1] * 1e3:.0f} ms after publish "
                f"started (brand read from the title: {line['brand']!r})"
            )
        delays = sorted(r[1] for r in results)
        print(
            f"[propagation] publish -> first use by a running worker over {rounds} rounds: "
            f"median {delays[len(delays) // 2] * 1e3:.0f} ms, max {delays[-1] * 1e3:.0f} ms "
            "(includes the worker finishing its current batch, set_snapshot and one prediction)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["scale", "propagation", "all"], default="all")
    parser.add_argument("--brands", type=int, default=100_000)
    parser.add_argument("--categories", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return
    if args.part in ("scale", "all"):
        part_scale(args.brands, args.categories)
    if args.part in ("propagation", "all"):
        if args.part == "all":
            # A fresh interpreter: part "scale" left Django set up on a 100k-brand database.
            subprocess.run(
                [sys.executable, __file__, "--part", "propagation", "--rounds", str(args.rounds)], check=True
            )
        else:
            part_propagation(args.rounds)


if __name__ == "__main__":
    main()
