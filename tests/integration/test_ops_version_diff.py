"""The knowledge version page: the diff against the previous (or any chosen) version, with who and why."""

from __future__ import annotations

import pytest
from django.core.cache import cache as django_cache
from django.test import Client
from django.urls import reverse

from knowledge import cache
from knowledge.graph.brands import brand_category_add
from knowledge.graph.categories import category_create, noise_term_add
from knowledge.graph.nodes import BRANDS, node_update
from knowledge.models import Category
from knowledge.versions.diff import snapshot_diff
from knowledge.versions.publish import knowledge_publish
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _clean(settings):
    factories.plain_static_storage(settings)
    django_cache.delete_many(
        [cache.VERSION_KEY, *(cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    cache.memo_clear()


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_snapshot_diff_lists_additions_removals_and_changes_entry_by_entry():
    old = {
        "categories": [
            {"id": "Apparel", "name": "Apparel", "aliases": []},
            {"id": "Apparel > Tees", "name": "Tees", "aliases": ["T-shirt"]},
            {"id": "Apparel > Socks", "name": "Socks", "aliases": []},
        ],
        "brands": [
            {"id": "1", "name": "Puma", "aliases": ["PUMA SE"], "category_ids": ["Apparel > Tees"]},
            {"id": "2", "name": "Gone", "aliases": [], "category_ids": []},
            {"id": "3", "name": "Same", "aliases": [], "category_ids": []},
        ],
        "attribute_rules": [
            {
                "category_id": "Apparel > Tees",
                "attribute": "sleeve",
                "allowed_values": ["short"],
                "required": True,
            }
        ],
        "noise_terms": ["hot sale"],
    }
    new = {
        "categories": [
            {"id": "Apparel", "name": "Apparel", "aliases": []},
            {"id": "Apparel > Tshirts", "name": "Tshirts", "aliases": ["T-shirt", "Tee"]},
            {"id": "Apparel > Shorts", "name": "Shorts", "aliases": []},
        ],
        "brands": [
            {
                "id": "1",
                "name": "Puma AG",
                "aliases": ["PUMA SE", "彪马"],
                "category_ids": ["Apparel > Tshirts"],
            },
            {"id": "3", "name": "Same", "aliases": [], "category_ids": []},
            {"id": "4", "name": "Nike", "aliases": ["Swoosh"], "category_ids": ["Apparel > Shorts"]},
        ],
        "attribute_rules": [
            {"category_id": "Apparel > Tshirts", "attribute": "sleeve", "allowed_values": ["short", "long"]}
        ],
        "noise_terms": ["hot sale", "爆款"],
    }
    diff = snapshot_diff(
        old,
        new,
        old_row_ids={"categories": {"Apparel": 1, "Apparel > Tees": 2, "Apparel > Socks": 3}},
        new_row_ids={"categories": {"Apparel": 1, "Apparel > Tshirts": 2, "Apparel > Shorts": 4}},
    )
    # The renamed node (same row id) is one change, not a removal plus an addition.
    assert [r["id"] for r in diff.categories.added] == ["Apparel > Shorts"]
    assert [r["id"] for r in diff.categories.removed] == ["Apparel > Socks"]
    assert diff.categories.changed == [
        {"id": "Apparel > Tshirts", "notes": ["was Apparel > Tees", "aliases added: Tee"]}
    ]
    assert [r["name"] for r in diff.brands.added] == ["Nike"]
    assert [r["name"] for r in diff.brands.removed] == ["Gone"]
    (puma,) = diff.brands.changed
    assert puma["notes"] == [
        "renamed from Puma",
        "aliases added: 彪马",
        "now sells: Apparel > Tshirts",
        "no longer sells: Apparel > Tees",
    ]
    assert diff.rules.n_added == 1 and diff.rules.n_removed == 1  # the rule's category path changed
    assert [r["id"] for r in diff.noise_terms.added] == ["爆款"]
    assert not diff.empty
    assert snapshot_diff(new, new).empty


def test_snapshot_diff_caps_the_rows_but_counts_them_all():
    new = {"brands": [{"id": str(i), "name": f"B{i:04d}"} for i in range(1200)]}
    diff = snapshot_diff({}, new, limit=100)
    assert diff.brands.n_added == 1200 and len(diff.brands.added) == 100


def test_the_version_page_shows_the_diff_with_who_and_why(ops_user, admin_user):
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    puma = factories.brand("Puma", sells=tshirts)
    for i in range(30):
        factories.brand(f"Unchanged brand {i:02d}")
    knowledge_publish(actor=admin_user, reason="baseline")
    node_update(
        BRANDS,
        actor=ops_user,
        node=puma,
        expected_version=puma.version,
        name="Puma",
        description="",
        aliases=["彪马"],
        reason="Chinese listings spell it 彪马",
    )
    shorts = category_create(
        actor=ops_user, name="Shorts", parent=Category.objects.get(name="Topwear"), reason="new range"
    )
    brand_category_add(actor=ops_user, brand=puma, category=shorts, reason="sells shorts")
    knowledge_publish(actor=ops_user, reason="Puma in Chinese, shorts")

    client = _client(ops_user)
    body = client.get(reverse("knowledge-version", args=[2])).content.decode()
    assert "compared with v1" in body
    assert "Puma in Chinese, shorts" in body and "otto" in body
    assert "aliases added: 彪马" in body and "now sells: Apparel &gt; Topwear &gt; Shorts" in body
    assert "Apparel &gt; Topwear &gt; Shorts" in body
    assert "Chinese listings spell it 彪马" in body  # the edit's own reason, from the change log
    assert "Unchanged brand" not in body  # a diff, not a dump of the whole graph

    # Any chosen version: v1 against v2 reads the other way round; v1 alone is the first version.
    back = client.get(reverse("knowledge-version", args=[1]), {"against": 2}).content.decode()
    assert "compared with v2" in back and "aliases removed: 彪马" in back
    first = client.get(reverse("knowledge-version", args=[1])).content.decode()
    assert "compared with" not in first and "+31" in first  # the first version: everything is added

    missing = client.get(reverse("knowledge-version", args=[2]), {"against": 99})
    assert missing.status_code == 302
    assert client.get(reverse("knowledge-version", args=[42])).status_code == 404


def test_auditors_read_the_diff_but_get_no_restore_button(auditor, ops_user):
    factories.brand("Puma")
    knowledge_publish(actor=ops_user, reason="baseline")
    body = _client(auditor).get(reverse("knowledge-version", args=[1])).content.decode()
    assert "Knowledge v1" in body and "Restore this version" not in body


def test_the_change_log_is_paged_newest_first(ops_user, django_assert_max_num_queries):
    for i in range(230):
        noise_term_add(actor=ops_user, term=f"promo {i:03d}", reason=f"reason {i:03d}")
    client = _client(ops_user)
    client.get(reverse("knowledge-changes"))
    with django_assert_max_num_queries(12):
        body = client.get(reverse("knowledge-changes"), {"page": 3}).content.decode()
    assert "201–230 of 230 changes, newest first" in body and "page 3 of 3" in body
    assert "reason 029" in body and "reason 030" not in body  # the oldest 30 on the last page
    first = client.get(reverse("knowledge-changes")).content.decode()
    assert "reason 229" in first and "reason 129" not in first
