"""The review item page's attention overlay and category picker, and the listing list's labels."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from classifier.models import Listing
from classifier.review import decisions as review_decisions
from classifier.review import services as svc
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

HTMX = factories.HTMX_REVIEW


@pytest.fixture(autouse=True)
def _clean_cache(settings):
    from django.core.cache import cache

    from classifier.review.display import DISPLAY_KEY

    factories.plain_static_storage(settings)
    factories.review_cache_reset()
    cache.delete(DISPLAY_KEY)
    yield
    factories.review_cache_reset()
    cache.delete(DISPLAY_KEY)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _with_heatmap(task) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 10), (255, 0, 0)).save(buf, format="PNG")
    task.prediction.attention_map.save("t.png", ContentFile(buf.getvalue()), save=True)


def _two_tshirts():
    men = factories.category_path("Men", "Topwear", "Tshirts")
    women = factories.category_path("Women", "Topwear", "Tshirts")
    return men, women


def test_attention_overlay_has_a_legend_an_opacity_slider_and_the_words_that_drove_it(auditor):
    task = factories.review_task(
        title="Puma Men Cotton <b>Tshirt</b> hot sale",
        entities=[
            {"text": "Puma", "type": "brand", "start": 0, "end": 4, "weight": 1.0},
            {"text": "Cotton", "type": "material", "start": 9, "end": 15, "weight": 0.8},
            {"text": "hot sale", "type": "noise", "start": 28, "end": 36, "weight": 0.1},
        ],
    )
    _with_heatmap(task)
    html = _client(auditor).get(reverse("review-task", args=[task.pk]), **HTMX).content.decode()
    assert 'id="rv-heat"' in html
    assert 'id="rv-heat-opacity"' in html and 'type="range"' in html
    assert "rv-legend-bar" in html and "most attention" in html
    words = html.split('id="rv-heat-words"', 1)[1].split("</div>", 1)[0]
    assert words.index("Puma") < words.index("Cotton")  # heaviest first
    assert "hot sale" not in words  # marketing noise does not steer the attention
    assert "<b>Tshirt" not in html  # the title stays escaped


def test_a_prediction_without_a_map_says_so(auditor):
    task = factories.review_task()
    html = _client(auditor).get(reverse("review-task", args=[task.pk]), **HTMX).content.decode()
    assert "No attention map for this prediction." in html
    assert "rv-heat-opacity" not in html


def test_the_picker_opens_with_the_models_suggestions_as_full_paths(auditor):
    men, women = _two_tshirts()
    jeans = factories.category_path("Men", "Bottomwear", "Jeans")
    task = factories.review_task(category=men)
    # The model's top-5 names leaves by name; "Tshirts" is ambiguous and the predicted master decides.
    task.prediction.top_k = {"article": [["Tshirts", 0.6], ["Jeans", 0.3]]}
    task.prediction.save(update_fields=["top_k"])
    svc.review_claim_task(auditor=auditor, task_id=task.pk)
    html = _client(auditor).get(reverse("review-task", args=[task.pk]), **HTMX).content.decode()
    picker = html.split('id="cat-results"', 1)[1].split("</div>", 1)[0]
    assert "Suggested by the model" in picker
    assert 'data-label="Men &gt; Topwear &gt; Tshirts"' in picker
    assert f'data-id="{women.pk}"' not in picker
    assert picker.index(f'data-id="{men.pk}"') < picker.index(f'data-id="{jeans.pk}"')
    assert "60.0%" in picker
    assert "<select" not in picker
    # top-k on the page: the ambiguous leaf name is shown with its path
    assert "Men &gt; Topwear &gt; Tshirts" in html.split("rv-levels", 1)[1]


def test_search_ranks_suggested_then_recent_and_shows_every_path(auditor):
    men, women = _two_tshirts()
    kids = factories.category_path("Kids", "Topwear", "Tshirts")
    task = factories.review_task(category=women)
    task.prediction.top_k = {"article": [["Tshirts", 0.5]]}
    task.prediction.master_category = "Women"
    task.prediction.save(update_fields=["top_k", "master_category"])
    # a recent pick by this auditor: Kids > Topwear > Tshirts
    other = factories.review_task(category=men)
    claimed = svc.review_claim_task(auditor=auditor, task_id=other.pk)
    review_decisions.review_decide(
        auditor=auditor,
        task_id=claimed.pk,
        version=claimed.version,
        action="correct",
        category_id=kids.pk,
        brand_name="",
        cause="model_error",
        comment="",
    )
    client = _client(auditor)
    html = client.get(reverse("review-category-search"), {"q": "tshirts", "task": task.pk}).content.decode()
    order = [html.index(f'data-id="{c.pk}"') for c in (women, kids, men)]
    assert order == sorted(order), "suggested, then recent, then the rest"
    for label in ("Men &gt; Topwear &gt; ", "Women &gt; Topwear &gt; ", "Kids &gt; Topwear &gt; "):
        assert label in html
    # empty query: suggestions and recent picks
    html = client.get(reverse("review-category-search"), {"q": "", "task": task.pk}).content.decode()
    assert "Suggested by the model" in html and "Your recent picks" in html
    # a bad task id is ignored, not an error
    assert client.get(reverse("review-category-search"), {"q": "", "task": "x"}).status_code == 200


def test_listing_list_shows_the_prediction_for_rows_in_review_and_paths_where_ambiguous(auditor):
    men, women = _two_tshirts()
    in_review = factories.review_task(
        title="Waiting listing", category=men, brand_obj=factories.brand("Puma")
    )
    decided = factories.review_task(title="Decided listing", category=women)
    Listing.objects.filter(pk=decided.listing_id).update(status=Listing.Status.REVIEWED, final_category=women)
    jeans = factories.category_path("Men", "Bottomwear", "Jeans")
    plain = factories.review_task(title="Plain listing", category=jeans)
    Listing.objects.filter(pk=plain.listing_id).update(status=Listing.Status.REVIEWED, final_category=jeans)
    html = _client(auditor).get(reverse("listing-list")).content.decode()
    rows = {
        line.split("</a>")[0].rsplit(">", 1)[-1]: line for line in html.split("<tr>")[1:] if "</a>" in line
    }
    assert (
        "Men &gt; Topwear &gt; Tshirts" in rows["Waiting listing"] and "predicted" in rows["Waiting listing"]
    )
    assert "—" not in rows["Waiting listing"] and "Puma?" in rows["Waiting listing"]
    assert "Women &gt; Topwear &gt; Tshirts" in rows["Decided listing"]
    assert ">Jeans<" in rows["Plain listing"]  # unique leaf names stay short
    assert in_review.listing.title in html


def test_listing_page_names_ambiguous_top_k_leaves_with_their_path(auditor):
    men, _women = _two_tshirts()
    task = factories.review_task(category=men)
    task.prediction.top_k = {"article": [["Tshirts", 0.6], ["Shirts", 0.3]]}
    task.prediction.master_category = "Men"
    task.prediction.save(update_fields=["top_k", "master_category"])
    html = _client(auditor).get(reverse("listing-detail", args=[task.listing_id])).content.decode()
    assert "Men &gt; Topwear &gt; Tshirts" in html and "0.60" in html
