"""A category ops add after training: what people confirm into it becomes its few-shot examples in
serving, with the real demo model (no retraining), and an undo takes its example back out."""

from __future__ import annotations

import csv

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from classifier.fusion.predictions import ListingInput
from classifier.models import Listing
from classifier.registry.serving import engine_for_batch, engine_reset
from classifier.review import decisions as review_decisions
from classifier.review import services as review_services
from knowledge.versions.publish import knowledge_publish
from tests import factories

pytestmark = pytest.mark.integration

CAPS = "Accessories > Headwear > Caps"


@pytest.fixture
def fresh_engine():
    engine_reset()
    yield
    engine_reset()


def _support_caps(data_dir, n: int) -> list[dict[str, str]]:
    with open(data_dir / "catalogue.csv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "support" and r["article_type"] == "Caps"]
    return rows[:n]


def _caps_probability(loaded, item: ListingInput) -> float:
    (prediction,) = loaded.engine.predict_batch([item])
    return dict(prediction.top_k["article"]).get("Caps", 0.0)


def _approved_as_caps(auditor, caps, row: dict[str, str], photo: bytes) -> None:
    task = factories.review_task(title=row["title"], category=caps, confidence=0.4)
    name = default_storage.save(f"listings/support-{row['id']}.jpg", ContentFile(photo))
    Listing.objects.filter(pk=task.listing_id).update(image=name)
    task = review_services.review_claim_task(auditor=auditor, task_id=task.pk)
    review_decisions.review_decide(auditor=auditor, task_id=task.pk, version=task.version, action="approve")


def test_listings_confirmed_into_a_new_category_become_its_examples_in_serving(
    seeded_knowledge, demo_model_dir, worker_media_root, data_dir, auditor, ops_user, fresh_engine
):
    caps = factories.category_path("Accessories", "Headwear", "Caps")
    knowledge_publish(actor=ops_user, reason="Caps added")
    loaded = engine_for_batch()
    assert CAPS in loaded.engine.leaves and CAPS not in loaded.engine.train_leaves
    assert loaded.engine.example_counts == {}

    rows = _support_caps(data_dir, 4)
    photos = [(data_dir / r["image"]).read_bytes() for r in rows]
    probe = ListingInput(photos[3], "Puma Men Black")  # a vague seller's cap, not one of the examples
    zero_shot = _caps_probability(loaded, probe)

    for row, photo in zip(rows[:3], photos[:3], strict=True):
        _approved_as_caps(auditor, caps, row, photo)
    loaded = engine_for_batch()
    assert loaded.engine.example_counts == {CAPS: 3}
    assert _caps_probability(loaded, probe) > zero_shot

    review_decisions.review_undo_last(auditor=auditor)  # the last approval no longer labels its listing
    assert engine_for_batch().engine.example_counts == {CAPS: 2}
