"""An auditor works five items with the keyboard only; the database holds exactly those decisions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from classifier.models import Listing, ReviewDecision, ReviewTask
from tests import factories
from tests.conftest import DATA_DIR
from tests.e2e.conftest import shoot

pytestmark = pytest.mark.e2e


def _photo(n: int, title_id: str) -> str | None:
    """A real catalogue photo when the shared data is there (nicer screenshots), else the tiny JPEG."""
    path = DATA_DIR / "images" / f"{title_id}.jpg"
    if not path.exists():
        return None
    return default_storage.save(f"listings/e2e/{n}.jpg", ContentFile(Path(path).read_bytes()))


def _heatmap() -> str:
    img = Image.new("L", (56, 56))
    img.putdata(
        [max(0, 255 - int(((x - 28) ** 2 + (y - 22) ** 2) ** 0.5 * 9)) for y in range(56) for x in range(56)]
    )
    rgba = Image.merge(
        "RGBA",
        (
            Image.new("L", img.size, 255),
            Image.eval(img, lambda v: 255 - v // 2),
            Image.eval(img, lambda v: 255 - v),
            img,
        ),
    )
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    return default_storage.save("attention/e2e/heat.png", ContentFile(buf.getvalue()))


def _setup():
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    factories.category_path("Apparel", "Bottomwear", "Jeans")
    factories.category_path("Apparel", "Bottomwear", "Track Pants")
    factories.brand("Levis")
    puma = factories.brand("Puma", sells=tshirts)
    rows = [
        ("1563", "Quechua Men Sweat Proof Blue T-shirt", 0.31),
        ("10000", "Levis Men Blue Slim Fit Jeans", 0.35),
        ("10001", "Puma Men Grey Printed T-shirt hot sale", 0.41),
        ("10002", "Nike Women Black Running Shoes", 0.47),
        ("10003", "Puma Unisex Black Cap", 0.52),
        ("10004", "Wrangler Men Black Shirt", 0.60),
    ]
    tasks = []
    for n, (image_id, title, conf) in enumerate(rows):
        task = factories.review_task(
            title=title,
            category=tshirts,
            brand_obj=puma if "Puma" in title else None,
            confidence=conf,
            entities=[
                {
                    "text": title.split()[0],
                    "type": "brand",
                    "start": 0,
                    "end": len(title.split()[0]),
                    "weight": 0.9,
                }
            ],
            findings=[
                {
                    "code": "brand_category",
                    "message": f"{title.split()[0]} is not known to sell Tshirts",
                    "severity": "conflict",
                }
            ]
            if n == 1
            else [],
        )
        photo = _photo(n, image_id)
        if photo:
            Listing.objects.filter(pk=task.listing_id).update(image=photo)
        if n == 0:
            task.prediction.attention_map = _heatmap()
            task.prediction.save(update_fields=["attention_map"])
        tasks.append(task)
    return tasks


def _wait_for_task(page, task: ReviewTask) -> None:
    page.wait_for_selector(f'article.rv-item[data-task="{task.pk}"][data-mine="1"]')
    page.wait_for_function("!document.querySelector('.htmx-request')")


def test_auditor_works_five_items_with_the_keyboard_only(live_server, browser_page, login, auditor):
    factories.review_cache_reset()
    t1, t2, t3, t4, t5, t6 = _setup()
    page = browser_page
    login(page, auditor)
    page.goto(live_server.url + "/review/")
    shoot(page, "01-queues")

    page.keyboard.press("n")  # start: claims the top item and opens it
    _wait_for_task(page, t1)
    # the heatmap has a size only once its image has loaded: wait for it (fails if it never shows)
    page.wait_for_selector("#rv-heat", state="visible", timeout=10_000)
    shoot(page, "02-item-with-heatmap")
    page.keyboard.press("h")
    assert page.is_hidden("#rv-heat")
    page.keyboard.press("a")  # approve
    _wait_for_task(page, t2)
    assert "Approved" in page.inner_text("#rv-notice")
    assert page.url.endswith(f"/review/task/{t2.pk}/")  # the URL follows the item (hx-push-url)

    page.keyboard.press("c")  # correct: focus goes to the category search
    page.keyboard.type("jeans")
    page.keyboard.press(
        "Enter"
    )  # pick the top result for "jeans" (once it is there); focus moves to the brand
    page.wait_for_function("document.querySelector('#cat-chosen').textContent.includes('Jeans')")
    assert page.evaluate("document.activeElement.id") == "brand-input"
    page.keyboard.press("Control+a")
    page.keyboard.type("Levis")
    shoot(page, "03-correct-panel")
    page.keyboard.press("Enter")  # submit the correction
    _wait_for_task(page, t3)

    page.keyboard.press("s")  # skip
    _wait_for_task(page, t4)
    page.keyboard.press("u")  # undo the skip: t3 is mine again
    _wait_for_task(page, t3)
    assert "Undid your skip" in page.inner_text("#rv-notice")

    page.keyboard.press("e")  # escalate with a comment
    page.keyboard.type("Brand missing from the graph")
    page.keyboard.press("Enter")
    _wait_for_task(page, t4)

    page.keyboard.press("a")
    _wait_for_task(page, t5)
    page.keyboard.press("?")
    assert page.is_visible("#rv-help")
    shoot(page, "04-help")
    page.keyboard.press("Escape")
    assert page.is_hidden("#rv-help")
    page.keyboard.press("a")
    _wait_for_task(page, t6)
    shoot(page, "05-after-five-items")

    decisions = list(ReviewDecision.objects.order_by("created_at", "id").values_list("task_id", "action"))
    assert decisions == [
        (t1.pk, "approve"),
        (t2.pk, "correct"),
        (t3.pk, "skip"),
        (t3.pk, "undo"),
        (t3.pk, "escalate"),
        (t4.pk, "approve"),
        (t5.pk, "approve"),
    ]
    correction = ReviewDecision.objects.get(action="correct")
    assert correction.category.path_label == "Apparel > Bottomwear > Jeans"
    assert correction.brand.name == "Levis" and correction.cause == "model_error"
    assert ReviewDecision.objects.get(action="escalate").comment == "Brand missing from the graph"
    assert not ReviewDecision.objects.get(action="skip").is_training_example
    t3.refresh_from_db()
    t6.refresh_from_db()
    assert t3.reason == "escalated" and t3.status == "pending"
    assert t6.status == "claimed" and t6.claimed_by == auditor
    assert Listing.objects.filter(status=Listing.Status.REVIEWED).count() == 4

    page.goto(live_server.url + "/review/audit/")
    shoot(page, "06-audit")
    page.goto(live_server.url + "/review/stats/")
    shoot(page, "07-stats")
