"""An auditor works ten items with the keyboard only: the attention overlay and its controls, a correction
through the picker's suggestions, one through its search, a skip and its undo. The database holds
exactly those decisions; screenshots of each page at 1366x768 are saved as artefacts."""

from __future__ import annotations

import pytest

from classifier.models import Listing, ReviewDecision
from tests import factories
from tests.e2e.conftest import shoot
from tests.e2e.test_review_keyboard import _heatmap, _photo, _wait_for_task

pytestmark = pytest.mark.e2e

ROWS = [  # catalogue image id, title, confidence, the model's top-5 leaf names
    ("1928", "Puma Mens One Love T-shirt", 0.31, ["Tshirts", "Jerseys"]),
    ("10324", "Puma Women Heather USP Black Tshirts", 0.33, ["Tshirts", "Tops"]),
    ("1972", "Kalenji Mens White T-shirt", 0.35, ["Tshirts", "Shirts"]),
    ("11279", "Wrangler Men Blue Texas Jeans", 0.37, ["Tshirts", "Jeans"]),
    ("4298", "Tantra Men's Budwiser Aqua Green T-shirt", 0.40, ["Tshirts"]),
    ("2293", "Nike Women Accuracy Pink T-shirt", 0.42, ["Tshirts"]),
    ("2299", "Nike Women Purple Polo T-shirt", 0.45, ["Tshirts"]),
    ("2313", "Nike Womens Green Polo T-shirt", 0.48, ["Tshirts"]),
    ("2127", "Basics Men Red Slim FitChecked Shirt", 0.50, ["Tshirts", "Shirts"]),
    ("8160", "Highlander Men White Checked Hakon Slim Fit Shirt", 0.52, ["Tshirts", "Shirts"]),
    ("8735", "Indigo Nation Men Checks Shirt Blue Shirts", 0.55, ["Tshirts", "Shirts"]),
]


def _entities(title: str) -> list[dict]:
    first, second = title.split()[:2]
    return [
        {"text": first, "type": "brand", "start": 0, "end": len(first), "weight": 1.0},
        {
            "text": second,
            "type": "audience",
            "start": len(first) + 1,
            "end": len(first) + 1 + len(second),
            "weight": 0.7,
        },
    ]


def _setup():
    men_tshirts = factories.category_path("Men", "Topwear", "Tshirts")
    women_tshirts = factories.category_path("Women", "Topwear", "Tshirts")
    jeans = factories.category_path("Men", "Bottomwear", "Jeans")
    factories.category_path("Men", "Topwear", "Shirts")
    factories.category_path("Men", "Topwear", "Jerseys")
    factories.category_path("Women", "Topwear", "Tops")
    factories.brand("Levis")
    puma = factories.brand("Puma", sells=men_tshirts)
    tasks = []
    for n, (image_id, title, confidence, top) in enumerate(ROWS):
        task = factories.review_task(
            title=title,
            category=men_tshirts,
            brand_obj=puma if title.startswith("Puma") else None,
            confidence=confidence,
            entities=_entities(title),
        )
        prediction = task.prediction
        prediction.master_category = "Men"
        prediction.top_k = {
            "master": [["Men", 0.9], ["Women", 0.1]],
            "sub": [["Topwear", 0.8]],
            "article": [[name, round(confidence / (i + 1), 3)] for i, name in enumerate(top)],
        }
        prediction.save(update_fields=["master_category", "top_k"])
        photo = _photo(100 + n, image_id)
        if photo:
            Listing.objects.filter(pk=task.listing_id).update(image=photo)
        if n == 0:
            prediction.attention_map = _heatmap()
            prediction.save(update_fields=["attention_map"])
        tasks.append(task)
    return tasks, {"men_tshirts": men_tshirts, "women_tshirts": women_tshirts, "jeans": jeans}


def test_auditor_works_ten_items_with_the_keyboard_only(live_server, browser_page, login, auditor):
    factories.review_cache_reset()
    tasks, cats = _setup()
    page = browser_page
    login(page, auditor)
    page.goto(live_server.url + "/review/")
    shoot(page, "auditor-01-queues")

    # 1: the attention overlay, its legend, the words that steered it; opacity from the keyboard
    page.keyboard.press("n")
    _wait_for_task(page, tasks[0])
    assert page.is_visible(".rv-legend-bar") and "most attention" in page.inner_text(".rv-legend")
    words = page.inner_text("#rv-heat-words")
    assert words.index("Puma") < words.index("Mens")
    page.keyboard.press("]")
    assert page.evaluate("getComputedStyle(document.querySelector('#rv-heat')).opacity") == "0.7"
    shoot(page, "auditor-02-item-attention-overlay")
    page.keyboard.press("[")
    page.keyboard.press("[")
    assert page.evaluate("document.querySelector('#rv-heat-opacity').value") == "40"
    page.keyboard.press("a")
    _wait_for_task(page, tasks[1])
    assert page.url.endswith(f"/review/task/{tasks[1].pk}/")

    # 2: correct through the suggestions: the picker opens with the model's top-5 as full paths
    page.keyboard.press("c")
    suggested = page.inner_text("#cat-results")
    assert "suggested by the model" in suggested.lower() and "Men > Topwear > " in suggested
    shoot(page, "auditor-03-picker-suggestions")
    page.keyboard.press("ArrowDown")  # the second suggestion: Women > Topwear > Tops
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#cat-chosen').textContent.includes('Tops')")
    page.keyboard.press("Enter")  # from the brand field: save
    _wait_for_task(page, tasks[2])

    # 3: correct with a digit: the second entry of the list (the model's second suggestion, Shirts)
    page.keyboard.press("c")
    page.keyboard.press("2")
    page.wait_for_function("document.querySelector('#cat-chosen').textContent.includes('Shirts')")
    page.keyboard.press("Enter")
    _wait_for_task(page, tasks[3])

    # 4: correct through the search (the earlier picks are now among the recent ones)
    page.keyboard.press("c")
    assert "your recent picks" in page.inner_text("#cat-results").lower()
    page.keyboard.type("jeans")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#cat-chosen').textContent.includes('Jeans')")
    page.keyboard.press("Control+a")
    page.keyboard.type("Levis")
    shoot(page, "auditor-04-picker-search")
    page.keyboard.press("Enter")
    _wait_for_task(page, tasks[4])

    # 5: skip, then undo it: the item is mine again; approve it
    page.keyboard.press("s")
    _wait_for_task(page, tasks[5])
    page.keyboard.press("u")
    _wait_for_task(page, tasks[4])
    assert "Undid your skip" in page.inner_text("#rv-notice")
    page.keyboard.press("a")
    _wait_for_task(page, tasks[5])

    # 6-10: approve
    for n in range(5, 10):
        page.keyboard.press("a")
        _wait_for_task(page, tasks[n + 1])
    shoot(page, "auditor-05-after-ten-items")

    decided = list(
        ReviewDecision.objects.exclude(action__in=["undo", "skip"])
        .order_by("created_at", "id")
        .values_list("task_id", "action")
    )
    assert decided == [
        (tasks[0].pk, "approve"),
        (tasks[1].pk, "correct"),
        (tasks[2].pk, "correct"),
        (tasks[3].pk, "correct"),
        (tasks[4].pk, "approve"),
        *[(tasks[n].pk, "approve") for n in range(5, 10)],
    ]
    assert ReviewDecision.objects.filter(action="skip", task=tasks[4]).get().undone_by is not None
    by_task = {d.task_id: d for d in ReviewDecision.objects.filter(action="correct")}
    assert by_task[tasks[1].pk].category.path_label == "Women > Topwear > Tops"
    assert by_task[tasks[2].pk].category.path_label == "Men > Topwear > Shirts"
    assert by_task[tasks[3].pk].category == cats["jeans"] and by_task[tasks[3].pk].brand.name == "Levis"
    assert Listing.objects.filter(status=Listing.Status.REVIEWED).count() == 10

    # The listing list: decided rows with their label, the one still in review with the prediction
    page.goto(live_server.url + "/listings/")
    table = page.inner_text("table.listing-table")
    assert "predicted" in table and "Men > Topwear > Tshirts" in table
    shoot(page, "auditor-06-listings")
    page.goto(live_server.url + "/review/audit/")
    shoot(page, "auditor-07-audit")
