"""Ops find brands among 50,000: prefix search served by indexes, paging, cheap counts, short labels."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from knowledge.graph.lists import brand_page
from knowledge.models import Brand, BrandAlias, BrandCategory, Category
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

N_BRANDS = 50_000


@pytest.fixture(autouse=True)
def _static(settings):
    factories.plain_static_storage(settings)


def insert_brands(count: int) -> None:
    """`count` brands "Brand 00000", "Brand 00001", ... in one INSERT ... SELECT (the ORM's bulk_create
    takes ~15 s for 50,000 on a shared CPU; this takes well under one)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Brand._meta.db_table} (name, description, is_active, version, created_at, updated_at) "
            "SELECT 'Brand ' || lpad(i::text, 5, '0'), '', true, 1, now(), now() FROM generate_series(0, %s) AS i",
            [count - 1],
        )


@pytest.fixture(scope="module")
def _brands_in_db(django_db_setup, django_db_blocker):
    """50,000 brands, a few with aliases and categories; two leaves share the name "Sandals".

    Made once for the module (outside the tests' transactions) and deleted at the end.
    """
    with django_db_blocker.unblock():
        men_sandals = factories.category_path("Footwear", "Men", "Sandals")
        women_sandals = factories.category_path("Footwear", "Women", "Sandals")
        tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
        insert_brands(N_BRANDS - 3)
        zephyr = Brand.objects.create(name="Zephyr Outdoor")
        benetton = Brand.objects.create(name="United Colors of Benetton")
        Brand.objects.create(name="Old Brand", is_active=False)
        BrandAlias.objects.create(brand=benetton, alias="Benetton")
        BrandAlias.objects.create(brand=benetton, alias="UCB")
        BrandCategory.objects.bulk_create(
            [
                BrandCategory(brand=zephyr, category=men_sandals),
                BrandCategory(brand=zephyr, category=tshirts),
                BrandCategory(brand=benetton, category=women_sandals),
            ]
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE knowledge_brand; ANALYZE knowledge_brandalias")
    yield {"zephyr": zephyr, "benetton": benetton}
    with django_db_blocker.unblock():
        # TRUNCATE: deleting 50,000 brands row by row checks every foreign key to them (seconds).
        # CASCADE also empties the tables that point at brands and categories, which hold nothing
        # outside a test's own (rolled-back) transaction at this point.
        tables = [m._meta.db_table for m in (BrandCategory, BrandAlias, Brand, Category)]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


@pytest.fixture
def many_brands(_brands_in_db, db):
    return _brands_in_db


def _ops_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_brand_list_pages_50000_brands_with_a_bounded_number_of_queries(
    ops_user, many_brands, django_assert_max_num_queries
):
    client = _ops_client(ops_user)
    client.get(reverse("knowledge-brands"))  # warm the session and the permission cache
    for page in (1, 500, 1000):
        with django_assert_max_num_queries(12):
            response = client.get(reverse("knowledge-brands"), {"page": page})
        assert response.status_code == 200
        body = response.content.decode()
        assert "of 50,000 brands" in body
        assert f"page {page:,} of 1,000" in body
        assert body.count("data-brand=") == 50
    last = client.get(reverse("knowledge-brands"), {"page": 1000}).content.decode()
    assert "Zephyr Outdoor" in last and "next →</span>" in last  # the last page has no next link
    # A stale link to a page that no longer exists shows the last one instead of an error.
    assert "page 1,000 of 1,000" in client.get(reverse("knowledge-brands"), {"page": 99999}).content.decode()


def test_searching_by_name_or_alias_prefix_finds_the_brand_with_few_queries(
    ops_user, many_brands, django_assert_max_num_queries
):
    client = _ops_client(ops_user)
    client.get(reverse("knowledge-brands"))
    with django_assert_max_num_queries(12):
        response = client.get(
            reverse("knowledge-brands"), {"q": "zeph"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="brand-results"
        )
    body = response.content.decode()
    assert "1–1 of 1 brand whose name or alias starts with “zeph”" in body
    assert "Zephyr Outdoor" in body and "<html" not in body  # the partial only

    for query in ("ucb", "Benet", "united col"):
        page = brand_page(query=query)
        assert [row.name for row in page.rows] == ["United Colors of Benetton"], query
        assert page.total == 1 and page.match == "prefix"

    page = brand_page(query="brand 0001")
    assert page.total == 10 and [r.name for r in page.rows][:2] == ["Brand 00010", "Brand 00011"]


def test_a_fragment_from_the_middle_of_a_name_falls_back_to_a_substring_match(ops_user, many_brands):
    page = brand_page(query="outdoor")
    assert page.match == "contains" and [r.name for r in page.rows] == ["Zephyr Outdoor"]
    body = _ops_client(ops_user).get(reverse("knowledge-brands"), {"q": "outdoor"}).content.decode()
    assert "containing “outdoor”" in body
    assert brand_page(query="no such brand anywhere").total == 0


def test_the_prefix_search_and_its_count_use_the_name_index(many_brands):
    """Index-friendly: the plan of the prefix query reads the lower(name) index, not the whole table."""
    from django.db.models.functions import Lower

    qs = (
        Brand.objects.annotate(lname=Lower("name"))
        .filter(lname__gte="zeph", lname__lt="zeph\U0010ffff", lname__startswith="zeph")
        .values_list("id")
    )
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "brand_unique_name" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_ambiguous_leaf_names_are_shown_with_their_full_path(ops_user, many_brands):
    page = brand_page(query="zephyr")
    assert [label for _id, label in page.rows[0].categories] == ["Footwear > Men > Sandals", "Tshirts"]
    body = _ops_client(ops_user).get(reverse("knowledge-brands"), {"q": "united"}).content.decode()
    assert "Footwear &gt; Women &gt; Sandals" in body


def test_category_search_is_paged_and_shows_full_paths(ops_user, django_assert_max_num_queries):
    for i in range(120):
        factories.category_path("Apparel", f"Group {i:03d}", "Socks")
    client = _ops_client(ops_user)
    client.get(reverse("knowledge-tree"), {"q": "socks"})
    # The full tree page (problems list, create form, both searches): a fixed number of queries.
    with django_assert_max_num_queries(18):
        response = client.get(reverse("knowledge-tree"), {"q": "socks", "page": 3})
    assert response.status_code == 200
    partial = client.get(
        reverse("knowledge-tree"), {"q": "socks", "page": 3}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tree"
    )
    body = partial.content.decode()
    assert body.count("data-category=") == 20
    assert "120 categories and 0 brands matching “socks”" in body
    assert "categories 101–120" in body
    assert "Apparel &gt; Group 119 &gt; Socks" in body and "Apparel &gt; Group 000 &gt; Socks" not in body
