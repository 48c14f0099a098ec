"""Listing pages: permission, filters, HTMX partial, and the prediction shown on the detail page."""

from __future__ import annotations

import pytest
from django.test import Client

from classifier.listings.services import listing_ingest
from classifier.models import Listing, ModelVersion, Prediction
from tests.conftest import jpeg_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def listings(db, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    made = []
    for i, title in enumerate(
        ["Puma Men Blue Tshirt", "Nike Women Running Shoes", "<script>alert(1)</script> Cap"]
    ):
        listing, _ = listing_ingest(
            source="s",
            external_id=str(i),
            title=title,
            image_file=jpeg_bytes(colour=(i, 9, 9)),
            dispatch=False,
        )
        made.append(listing)
    return made


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_listing_pages_need_the_view_permission(listings, nobody):
    client = login(nobody)
    assert client.get("/listings/").status_code == 403
    assert client.get(f"/listings/{listings[0].pk}/").status_code == 403
    assert Client().get("/listings/").status_code == 302  # anonymous: to the login page


def test_list_filters_by_status_and_search_and_escapes_titles(listings, auditor):
    Listing.objects.filter(pk=listings[1].pk).update(status=Listing.Status.ACCEPTED)
    client = login(auditor)
    page = client.get("/listings/").content.decode()
    assert "Puma Men Blue Tshirt" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    accepted = client.get("/listings/", {"status": "accepted"}).content.decode()
    assert "Nike Women" in accepted and "Puma Men" not in accepted
    found = client.get("/listings/", {"q": "puma"}).content.decode()
    assert "Puma Men" in found and "Nike Women" not in found
    partial = client.get(
        "/listings/", {"q": "nike"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="listing-results"
    )
    body = partial.content.decode()
    assert "<html" not in body and "Nike Women" in body


def test_detail_shows_levels_confidences_findings_and_review_state(listings, auditor):
    listing = listings[0]
    version = ModelVersion.objects.create(name="m-1", artifact_dir="/x", checksum="0" * 64, status="promoted")
    Prediction.objects.create(
        listing=listing,
        model_version=version,
        category_label="Apparel > Topwear > Tshirts",
        master_category="Apparel",
        sub_category="Topwear",
        article_type="Tshirts",
        master_confidence=0.99,
        sub_confidence=0.97,
        article_confidence=0.61,
        confidence=0.58,
        top_k={"article": [["Tshirts", 0.61], ["Shirts", 0.2]]},
        brand_label="Puma",
        brand_confidence=0.9,
        compute_path="full",
        latency_ms=42.0,
        knowledge_findings=[
            {"code": "brand_category", "message": "Puma <b>never</b> sells Tshirts", "severity": "conflict"}
        ],
        entities=[{"text": "Puma", "type": "brand", "start": 0, "end": 4, "weight": 1.0}],
        needs_review=True,
        review_reasons=["knowledge_conflict"],
    )
    page = login(auditor).get(f"/listings/{listing.pk}/").content.decode()
    for text in (
        "Apparel",
        "Topwear",
        "Tshirts",
        "0.61",
        "0.58",
        "Shirts",
        "brand: Puma",
        "Full semantic path",
    ):
        assert text in page, text
    assert "Puma &lt;b&gt;never&lt;/b&gt; sells Tshirts" in page
    assert login(auditor).get("/listings/999999/").status_code == 404
