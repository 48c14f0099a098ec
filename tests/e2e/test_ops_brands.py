"""Ops in headless Chromium at 1366x768: find a brand among 50,000, edit it, publish, read the diff.

Screenshots of each page land in test-artifacts/e2e/ops-*.png (kept by CI as artefacts).
"""

from __future__ import annotations

import pytest
from django.core.cache import cache as django_cache

from knowledge import cache
from knowledge.models import Brand, BrandAlias, BrandCategory, KnowledgeVersion
from knowledge.versions.publish import knowledge_publish
from tests import factories
from tests.e2e.conftest import shoot
from tests.integration.test_ops_brand_search import insert_brands

pytestmark = pytest.mark.e2e

N_BRANDS = 50_000


@pytest.fixture
def fifty_thousand_brands(transactional_db, admin_user):
    django_cache.delete_many(
        [cache.VERSION_KEY, *(cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    cache.memo_clear()
    men = factories.category_path("Footwear", "Men", "Sandals")
    factories.category_path("Footwear", "Women", "Sandals")
    insert_brands(N_BRANDS - 1)
    zephyr = Brand.objects.create(name="Zephyr Outdoor")
    BrandCategory.objects.create(brand=zephyr, category=men)
    knowledge_publish(actor=admin_user, reason="catalogue import")
    return zephyr


def test_ops_find_a_brand_among_50000_edit_it_publish_and_read_the_diff(
    live_server, browser_page, login, ops_user, fifty_thousand_brands
):
    page = browser_page
    zephyr = fifty_thousand_brands
    login(page, ops_user)

    page.goto(live_server.url + "/knowledge/brands/")
    assert "1–50 of 50,000 brands" in page.inner_text("#brand-count")
    assert page.locator("#brand-results a[data-brand]").count() == 50
    shoot(page, "ops-01-brands-page-1-of-1000")

    # Type the start of the name: the list narrows to the one brand (prefix search, htmx swap).
    page.fill("#brand-search", "zeph")
    page.wait_for_function("document.querySelectorAll('#brand-results a[data-brand]').length === 1")
    assert "1–1 of 1 brand whose name or alias starts with “zeph”" in page.inner_text("#brand-count")
    # The leaf "Sandals" exists under Men and Women: it is shown with its path.
    assert "Footwear > Men > Sandals" in page.inner_text("#brand-results")
    shoot(page, "ops-02-brand-found")

    page.click("#brand-results a:has-text('Zephyr Outdoor')")
    page.wait_for_selector("h1:has-text('Zephyr Outdoor')")
    page.fill("#brand-edit-form textarea[name=aliases]", "ZPH\n西风户外")
    page.fill("#brand-edit-form input[name=reason]", "spellings seen in Chinese titles")
    page.click("#brand-edit-form button[type=submit]")
    page.wait_for_selector("#brand-panel .notice:has-text('Saved Zephyr Outdoor')")
    assert set(BrandAlias.objects.filter(brand=zephyr).values_list("alias", flat=True)) == {"ZPH", "西风户外"}
    page.wait_for_selector("[data-testid=pending-link]:has-text('1 pending change')")
    shoot(page, "ops-03-brand-edited")

    # Publish the pending change with a reason. The preview and the publish build the whole
    # 50,000-brand snapshot (seconds on a shared CPU): a longer wait for these two pages.
    page.set_default_timeout(120_000)
    page.click("[data-testid=pending-link]")
    page.wait_for_selector("#publish-form")
    shoot(page, "ops-04-publish-preview")
    page.fill("#publish-form input[name=reason]", "Zephyr aliases for Chinese listings")
    page.click("#publish-form button[type=submit]")
    page.wait_for_selector("text=Published knowledge v2")
    assert KnowledgeVersion.objects.latest("number").number == 2
    page.set_default_timeout(10_000)

    # The version page: the diff against v1, with who and why — not a dump of 50,000 brands.
    page.click("a:has-text('v2')")
    page.wait_for_selector("h1:has-text('Knowledge v2')")
    assert "compared with v1" in page.inner_text("h1")
    brands_diff = page.inner_text("#diff-brands")
    assert "Zephyr Outdoor" in brands_diff and "aliases added: ZPH, 西风户外" in brands_diff
    assert page.locator("#diff-brands tr").count() == 1
    body = page.inner_text("main")
    assert "Zephyr aliases for Chinese listings" in body and "spellings seen in Chinese titles" in body
    assert "otto" in body and "Brand 00001" not in body
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 3000, f"the version page is {height}px tall"
    shoot(page, "ops-05-version-diff")

    # Any chosen version: v1 against v2 reads the other way round.
    page.goto(live_server.url + "/knowledge/versions/1/")
    page.select_option("#against", "2")
    page.click("#compare-form button[type=submit]")
    page.wait_for_selector("h1:has-text('compared with v2')")
    assert "aliases removed: ZPH, 西风户外" in page.inner_text("#diff-brands")
    shoot(page, "ops-06-version-diff-chosen")
