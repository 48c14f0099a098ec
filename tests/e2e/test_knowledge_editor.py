"""An ops user in headless Chromium: finds a brand, adds an alias, moves a category, previews the
impact of the pending changes and publishes them. Screenshots land in test-artifacts/e2e/."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache as django_cache

from knowledge import cache
from knowledge.models import BrandAlias, BrandCategory, Category, KnowledgeVersion
from knowledge.versions.publish import knowledge_publish
from tests import factories
from tests.e2e.conftest import shoot

pytestmark = pytest.mark.e2e


@pytest.fixture
def knowledge_graph(transactional_db, ops_user):
    django_cache.delete_many(
        [cache.VERSION_KEY, *(cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    cache.memo_clear()
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")
    factories.category_path("Apparel", "Bottomwear", "Jeans")
    factories.category_path("Footwear", "Shoes", "Sandals")
    factories.category_path("Footwear", "Sandal", "Sandals")
    puma = factories.brand("Puma", sells=tshirts)
    # 40 approved T-shirt listings: Puma's record is evidence (knowledge check: evidence, not absence)
    BrandCategory.objects.filter(brand=puma).update(support=40)
    factories.brand("Nike", sells=factories.category_path("Footwear"))
    factories.brand("United Colors of Benetton", sells=shirts)
    knowledge_publish(actor=ops_user, reason="baseline")
    for _ in range(3):
        factories.review_task(category=shirts, brand_obj=puma, title="Puma Men Blue Shirt")
    return {"shirts": shirts, "puma": puma}


def test_ops_finds_a_brand_adds_an_alias_moves_a_category_previews_and_publishes(
    live_server, browser_page, login, ops_user, knowledge_graph
):
    page = browser_page
    login(page, ops_user)

    page.goto(live_server.url + "/knowledge/")
    page.wait_for_selector("#problems:has-text('Footwear > Sandal > Sandals')")  # same name, two parents
    shoot(page, "knowledge-00-tree")

    # Find the brand.
    page.goto(live_server.url + "/knowledge/brands/")
    page.fill("#brand-search", "pum")
    # The list narrows as one types (htmx swaps the results).
    page.wait_for_function("document.querySelectorAll('#brand-results a').length === 1")
    assert page.inner_text("#brand-results a") == "Puma"
    shoot(page, "knowledge-01-brand-search")
    page.click("#brand-results a:has-text('Puma')")
    page.wait_for_selector("h1:has-text('Puma')")

    # Add an alias (bulk textarea, one per line, any script) — saved in place by htmx.
    page.fill("#brand-edit-form textarea[name=aliases]", "PUMA Sports\n彪马")
    page.fill("#brand-edit-form input[name=reason]", "spellings seen in titles")
    page.click("#brand-edit-form button[type=submit]")
    page.wait_for_selector("#brand-panel .notice:has-text('Saved Puma')")
    assert set(BrandAlias.objects.filter(brand=knowledge_graph["puma"]).values_list("alias", flat=True)) == {
        "PUMA Sports",
        "彪马",
    }
    shoot(page, "knowledge-02-brand-alias-added")

    # Move a category: Shirts from Topwear to directly under Apparel.
    page.goto(live_server.url + "/knowledge/")
    page.fill("#kg-search", "Shirts")
    page.wait_for_selector("#tree .kg-results a:has-text('Apparel > Topwear > Shirts')")
    page.click("#tree .kg-results a:has-text('Apparel > Topwear > Shirts')")
    page.wait_for_selector("#category-panel h2:has-text('Apparel > Topwear > Shirts')")
    page.select_option("#category-move-form select[name=parent]", label="Apparel")
    page.click("#category-move-form button[type=submit]")
    page.wait_for_selector("#category-panel .notice:has-text('Moved to Apparel > Shirts')")
    assert Category.objects.get(pk=knowledge_graph["shirts"].pk).path_label == "Apparel > Shirts"
    page.wait_for_selector("[data-testid=pending-link]:has-text('2 pending changes')")
    shoot(page, "knowledge-03-category-moved")

    # Preview the impact: the three recent Shirts predictions change label, and since Puma is
    # known to sell only Topwear, the fusion verification now finds a conflict for each.
    page.click("[data-testid=pending-link]")
    page.wait_for_selector("[data-testid=impact]")
    assert page.inner_text("[data-testid=impact-label]").strip() == "3"
    assert page.inner_text("[data-testid=impact-new-conflicts]").strip() == "3"
    assert page.inner_text("[data-testid=impact-affected]").strip() == "3"
    shoot(page, "knowledge-04-impact-preview")

    # Publish.
    page.fill("#publish-form input[name=reason]", "Puma aliases; Shirts moved up")
    page.click("#publish-form button[type=submit]")
    page.wait_for_selector("text=Published knowledge v2")
    assert page.locator("table tr", has_text=re.compile(r"v2")).count() >= 1
    shoot(page, "knowledge-05-published")
    assert KnowledgeVersion.objects.latest("number").number == 2
    snapshot = cache.snapshot_current()
    assert snapshot.version == 2 and snapshot.find_brand("彪马").name == "Puma"
    assert snapshot.has_category("Apparel > Shirts")


def test_ops_drags_a_category_onto_another_to_move_it(
    live_server, browser_page, login, ops_user, knowledge_graph
):
    page = browser_page
    login(page, ops_user)
    page.goto(live_server.url + "/knowledge/")
    page.click("li.kg-node:has(> details > summary > a:text-is('Topwear')) > details > summary")
    jeans_parent = page.locator("li.kg-node:has(> details > summary > a:text-is('Bottomwear'))").first
    page.locator("li.kg-node:has(> a:text-is('Shirts'))").first.drag_to(jeans_parent.locator("summary").first)
    page.wait_for_selector("#category-panel .notice:has-text('Moved to Apparel > Bottomwear > Shirts')")
    assert Category.objects.get(pk=knowledge_graph["shirts"].pk).path_label == "Apparel > Bottomwear > Shirts"
    shoot(page, "knowledge-06-dragged")
