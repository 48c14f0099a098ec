"""Benchmark: the ops pages at scale — brand list/search paging and the version diff page.

Run as a plain script (not collected by pytest):

    .venv/bin/python tests/bench/bench_brands.py                  # 50,000 brands
    .venv/bin/python tests/bench/bench_brands.py --brands 200000 --repeat 5

(Re)creates the PostgreSQL database `fusionreview_bench_brands`, migrates it, bulk-inserts N
brands (one alias each for a tenth of them, a category for every fifth), publishes v1, edits one
brand, publishes v2, then prints for each operation the median wall time over --repeat runs and
the number of SQL queries: `brand_page` (first, middle and last page, a prefix search, an alias
prefix, a substring fallback), the rendered brand list page, `knowledge_version_compare(2)` and
the rendered version page. Entity cache: Redis db 13.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DB_NAME = "fusionreview_bench_brands"


def _env() -> None:
    sys.path.insert(0, str(REPO))
    os.environ["DJANGO_SETTINGS_MODULE"] = "fusionreview.settings"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    os.environ.setdefault("FUSIONREVIEW_DEMO", "true")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("STATIC_MANIFEST", "false")


def _timed(fn, repeat: int) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    queries = 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        queries = len(ctx)
    return statistics.median(times) * 1000, queries


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--brands", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB_NAME], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True)
    _env()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    settings.ALLOWED_HOSTS = ["*"]
    from django.contrib.auth.models import Group, User

    from fusionreview.roles import roles_bootstrap
    from knowledge.graph.lists import brand_page
    from knowledge.graph.nodes import BRANDS, node_update
    from knowledge.models import Brand, BrandAlias, BrandCategory, Category
    from knowledge.versions.diff import knowledge_version_compare
    from knowledge.versions.publish import knowledge_publish

    roles_bootstrap()
    ops = User.objects.create_user("ops-bench", password="x")
    ops.groups.add(Group.objects.get(name="ops"))

    t0 = time.perf_counter()
    root = Category.objects.create(name="Apparel")
    leaves = [Category.objects.create(name=f"Leaf {i}", parent=root) for i in range(20)]
    Brand.objects.bulk_create([Brand(name=f"Brand {i:06d}") for i in range(args.brands)], batch_size=10_000)
    ids = list(Brand.objects.order_by("id").values_list("id", flat=True))
    BrandAlias.objects.bulk_create(
        [BrandAlias(brand_id=pk, alias=f"Alias {n:06d}") for n, pk in enumerate(ids) if n % 10 == 0],
        batch_size=10_000,
    )
    BrandCategory.objects.bulk_create(
        [BrandCategory(brand_id=pk, category=leaves[n % 20]) for n, pk in enumerate(ids) if n % 5 == 0],
        batch_size=10_000,
    )
    zephyr = Brand.objects.create(name="Zephyr Outdoor")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    knowledge_publish(actor=ops, reason="bench v1")
    node_update(
        BRANDS,
        actor=ops,
        node=zephyr,
        expected_version=zephyr.version,
        name="Zephyr Outdoor",
        description="",
        aliases=["ZPH"],
        reason="bench edit",
    )
    knowledge_publish(actor=ops, reason="bench v2")
    print(f"seeded {args.brands:,} brands and published v1, v2 in {time.perf_counter() - t0:.1f} s")

    client = Client()
    client.force_login(ops)
    last = -(-(args.brands + 1) // 50)
    cases = [
        ("brand_page page 1", lambda: brand_page(number=1)),
        (f"brand_page page {last // 2}", lambda: brand_page(number=last // 2)),
        (f"brand_page page {last} (last)", lambda: brand_page(number=last)),
        ("brand_page q='brand 0123' (name prefix)", lambda: brand_page(query="brand 0123")),
        ("brand_page q='alias 0012' (alias prefix)", lambda: brand_page(query="alias 0012")),
        ("brand_page q='outdoor' (substring fallback)", lambda: brand_page(query="outdoor")),
        ("GET /knowledge/brands/?page=500", lambda: client.get("/knowledge/brands/", {"page": 500})),
        ("GET /knowledge/brands/?q=zeph", lambda: client.get("/knowledge/brands/", {"q": "zeph"})),
        ("knowledge_version_compare(2)", lambda: knowledge_version_compare(number=2)),
        ("GET /knowledge/versions/2/", lambda: client.get("/knowledge/versions/2/")),
    ]
    print(f"{'operation':48} {'median ms':>10} {'queries':>8}")
    for name, fn in cases:
        ms, queries = _timed(fn, args.repeat)
        print(f"{name:48} {ms:10.1f} {queries:8d}")


if __name__ == "__main__":
    main()
