"""Corrections never lose work; decisions feed relation support; the route reason is shown and filters."""

from __future__ import annotations

import pytest
from django.core.cache import cache as django_cache
from django.test import Client
from django.urls import reverse

from classifier.models import ReviewDecision, ReviewTask
from classifier.review import decisions as review_decisions
from classifier.review import services as svc
from knowledge import cache as knowledge_cache
from knowledge.changelog import KnowledgeError
from knowledge.graph.brands import brand_create
from knowledge.models import Brand, BrandCategory, Suggestion
from knowledge.suggestions.services import (
    suggestion_brand_gap_record,
    suggestions_accept_bulk,
    suggestions_refresh,
)
from knowledge.versions.publish import knowledge_publish
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

HTMX = factories.HTMX_REVIEW


@pytest.fixture(autouse=True)
def _clean_cache(settings):
    # Snapshot versions restart at 1 in every test database: forget what earlier tests left in the
    # entity cache (version pointer, snapshots) and the process's memo.
    django_cache.delete_many(
        [knowledge_cache.VERSION_KEY, *(knowledge_cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    knowledge_cache.memo_clear()
    factories.plain_static_storage(settings)
    factories.review_cache_reset()
    yield
    factories.review_cache_reset()
    knowledge_cache.memo_clear()


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _claimed_task(user, **kwargs) -> ReviewTask:
    task = factories.review_task(**kwargs)
    svc.review_claim_task(auditor=user, task_id=task.pk)
    task.refresh_from_db()
    return task


def _correct(client, task, **fields):
    data = {
        "action": "correct",
        "version": task.version,
        "category_id": fields.pop("category_id"),
        "brand": fields.pop("brand", ""),
        "cause": fields.pop("cause", "knowledge_gap"),
        **fields,
    }
    return client.post(reverse("review-decide", args=[task.pk]), data, **HTMX)


def test_a_correction_with_an_unknown_brand_keeps_its_text_and_offers_the_way_out(auditor):
    lips = factories.category_path("Personal Care", "Lips", "Lipstick")
    task = _claimed_task(auditor, title="Lakme Absolute Lipstick")
    response = _correct(_client(auditor), task, category_id=lips.pk, brand="Lakme", cause="knowledge_gap")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Unknown brand “Lakme”" in html
    assert 'value="Lakme"' in html, "the typed brand is still in the panel"
    assert f'id="cat-id" value="{lips.pk}"' in html and "Personal Care &gt; Lips &gt; Lipstick" in html
    assert '<option value="knowledge_gap"  selected>' in html or 'value="knowledge_gap" selected' in html
    assert 'id="panel-correct" class="rv-panel" open' in html
    assert "Send with brand unresolved" in html
    assert "btn-brand-add" not in html, "auditors cannot add brands"
    assert not ReviewDecision.objects.exists()
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED

    # Sent with the brand unresolved: saved without a brand, the gap becomes an ops suggestion.
    response = _correct(_client(auditor), task, category_id=lips.pk, brand="Lakme", brand_unresolved="1")
    decision = ReviewDecision.objects.get(task=task)
    assert decision.action == "correct" and decision.category_id == lips.pk and decision.brand_id is None
    gap = Suggestion.objects.get(kind=Suggestion.Kind.BRAND_NEW)
    assert gap.alias == "Lakme" and gap.evidence_count == 1 and gap.example_listing_ids == [task.listing_id]
    suggestions_refresh()
    assert Suggestion.objects.filter(kind=Suggestion.Kind.BRAND_NEW, status="pending").exists()


def test_ops_add_the_brand_from_the_panel_and_keep_the_correction(ops_user):
    lips = factories.category_path("Personal Care", "Lips", "Lipstick")
    task = _claimed_task(ops_user, title="Revlon Lipstick")
    client = _client(ops_user)
    html = _correct(client, task, category_id=lips.pk, brand="Revlon").content.decode()
    assert "btn-brand-add" in html
    response = client.post(
        reverse("review-brand-add", args=[task.pk]),
        {
            "action": "correct",
            "version": task.version,
            "category_id": lips.pk,
            "brand": "Revlon",
            "cause": "",
        },
        **HTMX,
    )
    html = response.content.decode()
    assert "Brand “Revlon” added" in html and 'value="Revlon"' in html and f'value="{lips.pk}"' in html
    assert Brand.objects.filter(name="Revlon").exists()
    _correct(client, task, category_id=lips.pk, brand="Revlon")
    assert ReviewDecision.objects.get(task=task).brand.name == "Revlon"


def test_auditors_cannot_add_brands(auditor):
    task = _claimed_task(auditor)
    response = _client(auditor).post(reverse("review-brand-add", args=[task.pk]), {"brand": "X"}, **HTMX)
    assert response.status_code == 403 and not Brand.objects.filter(name="X").exists()


def test_decisions_add_to_the_support_of_the_relation_they_confirm_and_undo_takes_it_back(auditor, ops_user):
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    caps = factories.category_path("Accessories", "Headwear", "Caps")
    puma = factories.brand("Puma")
    BrandCategory.objects.create(brand=puma, category=tshirts, support=10, source="import")
    task = _claimed_task(auditor, category=tshirts, brand_obj=puma, title="Puma Men Tshirt")
    review_decisions.review_decide(auditor=auditor, task_id=task.pk, version=task.version, action="approve")
    assert BrandCategory.objects.get(brand=puma, category=tshirts).support == 11
    review_decisions.review_undo_last(auditor=auditor)
    assert BrandCategory.objects.get(brand=puma, category=tshirts).support == 10

    # Corrections to a category the brand is not known to sell: a suggestion with its evidence,
    # accepted in bulk above a threshold, with that evidence as the relation's support.
    for i in range(3):
        t = _claimed_task(auditor, category=tshirts, brand_obj=puma, title=f"Puma Unisex Cap {i}")
        review_decisions.review_decide(
            auditor=auditor,
            task_id=t.pk,
            version=t.version,
            action="correct",
            category_id=caps.pk,
            brand_name="Puma",
        )
    suggestions_refresh()
    gap = Suggestion.objects.get(kind=Suggestion.Kind.BRAND_CATEGORY, category=caps)
    assert gap.evidence_count == 3
    assert suggestions_accept_bulk(actor=ops_user, min_evidence=4) == {"accepted": 0}
    assert suggestions_accept_bulk(actor=ops_user, min_evidence=3) == {"accepted": 1}
    relation = BrandCategory.objects.get(brand=puma, category=caps)
    assert relation.support == 3 and relation.source == BrandCategory.Source.DECISIONS


def test_the_route_reason_is_shown_and_filters_the_queue(auditor):
    unknown = factories.review_task(title="Mystery item", reason="knowledge_conflict")
    ReviewTask.objects.filter(pk=unknown.pk).update(route_reason="unknown_category")
    low = factories.review_task(title="Blurry shoe")
    ReviewTask.objects.filter(pk=low.pk).update(route_reason="low_confidence")
    client = _client(auditor)
    page = client.get(reverse("review-queues")).content.decode()
    assert "By route reason" in page and "?reason=route:unknown_category" in page
    filtered = client.get(reverse("review-queues") + "?reason=route:unknown_category").content.decode()
    assert "Mystery item" in filtered and "Blurry shoe" not in filtered
    task = svc.review_claim_next(auditor=auditor, reason="route:unknown_category")
    assert task.pk == unknown.pk
    item = client.get(reverse("review-task", args=[unknown.pk])).content.decode()
    assert 'data-testid="route-reason"' in item and "routed: Unknown category" in item


def test_auto_accepted_listings_outside_the_brands_record_become_a_suggestion_with_their_count():
    from classifier.models import Listing

    caps = factories.category_path("Accessories", "Headwear", "Caps")
    puma = factories.brand("Puma", sells=factories.category_path("Apparel", "Topwear", "Tshirts"))
    for i in range(14):
        task = factories.review_task(title=f"Puma Unisex Cap {i}", category=caps, brand_obj=puma)
        ReviewTask.objects.filter(pk=task.pk).update(status=ReviewTask.Status.DONE)
        Listing.objects.filter(pk=task.listing_id).update(
            status=Listing.Status.ACCEPTED, final_brand=puma, final_category=caps
        )
    suggestions_refresh()
    gap = Suggestion.objects.get(kind=Suggestion.Kind.BRAND_CATEGORY, brand=puma, category=caps)
    assert gap.evidence_count == 14 and gap.status == Suggestion.Status.PENDING


def test_the_pipeline_routes_with_route_at_the_serving_versions_threshold_and_stores_the_reason(
    monkeypatch, settings
):
    """listings_classify with a stand-in engine: one routing rule, the stored threshold, hints never route."""
    from types import SimpleNamespace

    from classifier.fusion.engine import FusionPrediction
    from classifier.listings.classification import listings_classify
    from classifier.models import Listing, Prediction

    settings.REVIEW_THRESHOLD = None
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    version = factories.model_version("routing-v1")
    version.review_threshold = 0.95  # stored with the version: it wins over the engine's 0.5
    version.save(update_fields=["review_threshold"])
    hint = {"code": "brand_category", "message": "brand Puma not seen in Topwear yet", "severity": "hint"}
    conflict = {
        "code": "brand_category",
        "message": "brand Titan sells Watches, not Apparel",
        "severity": "conflict",
    }
    held_hint = {
        "code": "title_names_no_type",
        "message": "The title names no product type, so the photo carried this decision",
        "severity": "hint",
    }
    typed = [{"type": "product_type", "value": "Apparel > Topwear > Tshirts", "start": 5, "end": 11}]
    cases = {  # confidence, findings, entities
        "hint-sure": (0.99, [hint], typed),
        "unsure": (0.9, [], typed),
        "conflict": (0.99, [conflict], typed),
        # the title names no product type: the model's stricter untyped threshold (0.98) applies
        "vague-sure": (0.99, [], []),
        "vague-unsure": (0.97, [], []),
        # the engine's hint: only the untyped threshold sent it (the task's reason says so, once)
        "vague-held": (0.97, [held_hint], []),
    }
    listings = {
        key: Listing.objects.create(
            source="t",
            external_id=key,
            title=key,
            image=factories.tiny_image_name(),
            image_sha256=key.ljust(64, "0"),
        )
        for key in cases
    }

    def predict_batch(items, review_threshold=None):
        assert review_threshold == 0.95
        out = []
        for item in items:
            confidence, findings, entities = cases[Listing.objects.get(pk=int(item.key)).external_id]
            out.append(
                FusionPrediction(
                    master_category="Apparel",
                    sub_category="Topwear",
                    article_type="Tshirts",
                    category_id="Apparel > Topwear > Tshirts",
                    level_confidences=(1.0, 1.0, confidence),
                    confidence=confidence,
                    top_k={},
                    brand=None,
                    brand_confidence=0.0,
                    needs_review=False,
                    review_reasons=[],
                    knowledge_findings=findings,
                    entities=entities,
                    path="full",
                    latency_ms=1.0,
                    complexity=0.1,
                    key=item.key,
                )
            )
        return out

    engine = SimpleNamespace(
        predict_batch=predict_batch,
        review_threshold=0.5,
        snapshot_version=1,
        untyped_threshold=lambda thr: max(thr, 0.98),
    )
    monkeypatch.setattr(
        "classifier.listings.classification.engine_for_batch",
        lambda: SimpleNamespace(engine=engine, version=version),
    )
    report = listings_classify(listing_ids=[listing.pk for listing in listings.values()])
    assert len(report.classified) == 6
    routed = {key: Prediction.objects.get(listing=listing) for key, listing in listings.items()}
    assert routed["hint-sure"].route_reason == "auto_accepted" and not routed["hint-sure"].needs_review
    assert Listing.objects.get(pk=listings["hint-sure"].pk).status == Listing.Status.ACCEPTED
    assert routed["unsure"].route_reason == "low_confidence"
    assert ReviewTask.objects.get(listing=listings["unsure"]).route_reason == "low_confidence"
    task = ReviewTask.objects.get(listing=listings["conflict"])
    assert task.route_reason == "knowledge_conflict" and task.reason == "knowledge_conflict"
    assert "Titan" in task.reason_detail and tshirts.pk == task.category_id
    assert routed["vague-sure"].route_reason == "auto_accepted"
    assert routed["vague-unsure"].route_reason == "low_confidence"  # 0.97: above 0.95, below 0.98
    assert (
        "below the review threshold 0.98"
        in ReviewTask.objects.get(listing=listings["vague-unsure"]).reason_detail
    )
    detail = ReviewTask.objects.get(listing=listings["vague-held"]).reason_detail
    assert detail == "The title names no product type, so the photo carried this decision"


def test_ops_accept_a_missing_brand_suggestion_from_the_suggestions_page(ops_user):
    suggestion_brand_gap_record(name="Lakme", listing_id=factories.review_task().listing_id)
    gap = Suggestion.objects.get(kind=Suggestion.Kind.BRAND_NEW)
    client = _client(ops_user)
    page = client.get(reverse("knowledge-suggestions")).content.decode()
    assert "add brand “Lakme”" in page and 'data-testid="accept-bulk"' in page
    client.post(reverse("knowledge-suggestion-decide", args=[gap.pk, "accept"]))
    gap.refresh_from_db()
    assert gap.status == Suggestion.Status.ACCEPTED and gap.brand.name == "Lakme"


def test_a_brand_written_with_other_accents_is_the_same_brand(auditor, ops_user):
    lips = factories.category_path("Personal Care", "Lips", "Lipstick")
    factories.brand("Lakme")
    knowledge_publish(actor=ops_user, reason="Lakme")
    task = _claimed_task(auditor, title="Lakmé Absolute Lipstick")
    review_decisions.review_decide(
        auditor=auditor,
        task_id=task.pk,
        version=task.version,
        action="correct",
        category_id=lips.pk,
        brand_name="LAKMÉ",
    )
    assert ReviewDecision.objects.get(task=task).brand.name == "Lakme"
    with pytest.raises(KnowledgeError, match="other accents"):
        brand_create(actor=ops_user, name="Lakmé")
