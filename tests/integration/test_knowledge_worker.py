"""Ops edit the graph in the editor; an already-running worker uses it on its next batch.

No restart and no retraining: the worker compares the knowledge version before each batch
and swaps the snapshot into its engine.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from classifier.models import Prediction
from knowledge.models import Brand, Category, KnowledgeVersion
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def test_a_brand_and_category_added_in_the_editor_reach_a_running_worker(
    celery_worker_process,
    seeded_knowledge,
    make_catalogue_listings,
    demo_model_dir,
    ops_user,
    settings,
    data_dir,
):
    from classifier.listings.services import listing_ingest
    from classifier.listings.tasks import classify_listings
    from tests.factories import plain_static_storage

    plain_static_storage(settings)
    first = make_catalogue_listings(1)[0]
    classify_listings.delay([first.pk])
    wait_until(
        lambda: Prediction.objects.filter(listing=first).exists(), timeout=300, what="a first prediction"
    )
    assert Prediction.objects.get(listing=first).knowledge_version == seeded_knowledge.number
    worker_pid = celery_worker_process.pid

    # Ops, in the editor: a new leaf category and a new brand (with a Chinese alias) that sells it.
    ops = Client()
    ops.force_login(ops_user)
    topwear = Category.objects.get(name="Topwear", parent__name="Apparel")
    response = ops.post(
        reverse("knowledge-category-create"),
        {
            "parent": topwear.pk,
            "name": "Ponchos",
            "description": "sleeveless cape-like outer garment",
            "aliases": "Poncho\n斗篷",
            "reason": "new article type",
        },
    )
    assert response.status_code == 302
    ponchos = Category.objects.get(name="Ponchos")
    response = ops.post(
        reverse("knowledge-brand-create"),
        {"name": "Zyxoria", "aliases": "兹克索", "category": ponchos.pk, "reason": "new brand"},
    )
    assert response.status_code == 302
    brand = Brand.objects.get(name="Zyxoria")
    assert ops.post(reverse("knowledge-publish"), {"reason": "Ponchos and Zyxoria"}).status_code == 302
    published = KnowledgeVersion.objects.latest("number")
    assert published.number == seeded_knowledge.number + 1 and published.activated_at is not None

    # The next classification by the same, still-running worker uses the new snapshot.
    tee = data_dir / "images" / f"{first.external_id}.jpg"
    listing, _ = listing_ingest(
        source="kg-test",
        external_id="poncho-1",
        title="Zyxoria Women Black Poncho",
        image_file=tee.read_bytes(),
        dispatch=False,
    )
    classify_listings.delay([listing.pk])
    prediction = wait_until(
        lambda: Prediction.objects.filter(listing=listing).first(), timeout=300, what="the second prediction"
    )
    assert celery_worker_process.pid == worker_pid and celery_worker_process.starts == 1
    assert prediction.knowledge_version == published.number
    # The brand is recognised from the title through the new gazetteer entry...
    assert prediction.brand_id == brand.pk, (prediction.brand_label, prediction.entities)
    # ...and the new category is known to the model: predicted zero-shot, or (if another leaf won)
    # the brand-sells-category check names the new relation.
    findings = " ".join(f.get("message", "") for f in prediction.knowledge_findings)
    print(
        f"\nnew-knowledge prediction: {prediction.category_label!r} brand={prediction.brand_label!r} {findings}"
    )
    assert prediction.category_id == ponchos.pk or "Ponchos" in findings, (
        prediction.category_label,
        prediction.knowledge_findings,
    )
