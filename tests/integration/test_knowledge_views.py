"""The editor pages: who may see and change what, CSRF, HTMX partials, clear refusals."""

from __future__ import annotations

import pytest
from django.core.cache import cache as django_cache
from django.test import Client
from django.urls import reverse

from knowledge import cache
from knowledge.graph.brands import brand_create
from knowledge.models import Brand, Category, KnowledgeVersion
from knowledge.versions.publish import knowledge_publish
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def clean_cache(settings):
    factories.plain_static_storage(settings)
    django_cache.delete_many(
        [cache.VERSION_KEY, *(cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    cache.memo_clear()


@pytest.fixture
def graph():
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    factories.category_path("Footwear", "Shoes", "Sandals")
    factories.category_path("Footwear", "Sandal", "Sandals")
    puma = factories.brand("Puma", sells=tshirts)
    return {"tshirts": tshirts, "puma": puma}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


READ_URLS = [
    "knowledge-tree",
    "knowledge-brands",
    "knowledge-publish",
    "knowledge-versions",
    "knowledge-changes",
    "knowledge-suggestions",
    "knowledge-noise",
    "knowledge-import",
    "knowledge-export-json",
    "knowledge-export-brands",
]


def test_auditors_read_every_page_but_change_nothing(auditor, graph):
    client = client_for(auditor)
    for name in READ_URLS:
        assert client.get(reverse(name)).status_code == 200, name
    page = client.get(reverse("knowledge-brand", args=[graph["puma"].pk]))
    assert page.status_code == 200 and b"brand-edit-form" not in page.content
    cat = graph["tshirts"]
    response = client.post(
        reverse("knowledge-category-edit", args=[cat.pk]),
        {"version": cat.version, "name": "Hacked", "description": ""},
    )
    assert response.status_code == 403
    assert client.post(reverse("knowledge-publish"), {"reason": "x"}).status_code == 403
    cat.refresh_from_db()
    assert cat.name == "Tshirts"


def test_people_without_a_role_get_403_and_anonymous_users_the_login_page(nobody, graph):
    assert client_for(nobody).get(reverse("knowledge-tree")).status_code == 403
    response = Client().get(reverse("knowledge-tree"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_forms_need_the_csrf_token(ops_user, graph):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ops_user)
    cat = graph["tshirts"]
    response = client.post(
        reverse("knowledge-category-edit", args=[cat.pk]),
        {"version": cat.version, "name": "Tees", "description": ""},
    )
    assert response.status_code == 403


def test_ops_edit_inline_with_htmx_and_see_a_stale_edit_refused(ops_user, admin_user, graph):
    cat = graph["tshirts"]
    url = reverse("knowledge-category-edit", args=[cat.pk])
    ops = client_for(ops_user)
    response = ops.post(
        url,
        {"version": cat.version, "name": "Tees", "description": "", "aliases": "T恤\nTee"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "Saved Apparel &gt; Topwear &gt; Tees" in response.content.decode()
    assert response["HX-Trigger"]  # the tree and the pending badge reload
    # The admin's form was opened at the old version: refused, naming who changed it.
    response = client_for(admin_user).post(
        url, {"version": 1, "name": "Tshirts", "description": ""}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert "changed by otto" in body and 'role="alert"' in body
    cat.refresh_from_db()
    assert cat.name == "Tees"


def test_user_text_is_escaped_on_the_pages(ops_user, graph):
    brand_create(actor=ops_user, name="<script>alert(1)</script>")
    body = client_for(ops_user).get(reverse("knowledge-brands")).content.decode()
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body


def test_search_finds_categories_and_brands_by_alias_in_any_script(ops_user, graph):
    brand_create(actor=ops_user, name="Xiaomi", aliases=["小米"])
    response = client_for(ops_user).get(
        reverse("knowledge-tree"), {"q": "小米"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tree"
    )
    assert "Xiaomi" in response.content.decode()


def test_publish_page_previews_then_publishes(ops_user, graph):
    client = client_for(ops_user)
    knowledge_publish(actor=ops_user, reason="base")
    brand_create(actor=ops_user, name="Nike")
    page = client.get(reverse("knowledge-publish"))
    assert b"1 pending change" in page.content and b'data-testid="impact"' in page.content
    response = client.post(reverse("knowledge-publish"), {"reason": "add Nike"})
    assert response.status_code == 302
    assert KnowledgeVersion.objects.latest("number").number == 2
    assert cache.snapshot_current().find_brand("Nike") is not None


def test_import_page_reports_broken_encoding_with_the_line(ops_user, graph):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("brands.csv", b"name,aliases,categories\nPuma,,\nCaf\xe9,,\n", "text/csv")
    response = client_for(ops_user).post(
        reverse("knowledge-import"), {"kind": "brands-csv", "file": upload}, follow=True
    )
    assert "line 3: not valid UTF-8" in response.content.decode()
    assert not Brand.objects.filter(name__startswith="Caf").exists()


def test_delete_of_a_used_category_offers_the_merge(ops_user, graph):
    from classifier.models import Listing

    cat = graph["tshirts"]
    task = factories.review_task(category=cat)
    Listing.objects.filter(pk=task.listing_id).update(final_category=cat)
    response = client_for(ops_user).post(
        reverse("knowledge-category-delete", args=[cat.pk]), {"version": cat.version}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert "1 listings" in body and "Merge into" in body
    assert Category.objects.filter(pk=cat.pk).exists()


def test_export_json_downloads_the_whole_graph(auditor, graph):
    import json

    response = client_for(auditor).get(reverse("knowledge-export-json"))
    assert response["Content-Disposition"].startswith("attachment")
    payload = json.loads(response.content)
    assert payload["format"] == "fusionreview.knowledge/1"
    assert any(c["id"] == "Apparel > Topwear > Tshirts" for c in payload["categories"])
