"""Suggestions derived from review decisions: missing brand-category relations and brand aliases."""

from __future__ import annotations

import pytest

from classifier.models import ReviewDecision
from knowledge.changelog import KnowledgeError
from knowledge.graph.brands import brand_category_add
from knowledge.models import BrandAlias, BrandCategory, Suggestion
from knowledge.suggestions.services import suggestion_accept, suggestion_reject, suggestions_refresh
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _decide(task, auditor, *, action="correct", category=None, brand=None):
    return ReviewDecision.objects.create(
        task=task, listing=task.listing, auditor=auditor, action=action, category=category, brand=brand
    )


def test_corrections_reveal_a_missing_relation_and_a_missing_alias(auditor, ops_user):
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    caps = factories.category_path("Accessories", "Headwear", "Caps")
    puma = factories.brand("Puma", sells=tshirts)
    for _ in range(2):
        task = factories.review_task(title="Puma Unisex Black Cap", category=tshirts, brand_obj=puma)
        _decide(task, auditor, category=caps, brand=puma)
    task = factories.review_task(title="PUMA Sports Men Tshirt", category=tshirts, brand_obj=puma)
    _decide(task, auditor, action="approve", category=tshirts, brand=puma)
    # Skips and undone decisions are no evidence.
    skipped = factories.review_task(title="Zzz Men Cap", category=caps, brand_obj=puma)
    _decide(skipped, auditor, action="skip", category=caps, brand=puma)

    result = suggestions_refresh()
    assert result["created"] == 2
    relation = Suggestion.objects.get(kind=Suggestion.Kind.BRAND_CATEGORY)
    assert relation.brand == puma and relation.category == caps and relation.evidence_count == 2
    alias = Suggestion.objects.get(kind=Suggestion.Kind.BRAND_ALIAS)
    assert alias.alias == "PUMA Sports" and alias.brand == puma

    # Running it again changes nothing (idempotent).
    assert suggestions_refresh()["created"] == 0
    assert Suggestion.objects.count() == 2

    suggestion_accept(actor=ops_user, suggestion=relation)
    assert BrandCategory.objects.filter(brand=puma, category=caps).exists()
    suggestion_reject(actor=ops_user, suggestion=alias)
    assert not BrandAlias.objects.filter(alias="PUMA Sports").exists()
    # Neither comes back as pending: one is fixed, the other was rejected.
    suggestions_refresh()
    assert not Suggestion.objects.filter(status=Suggestion.Status.PENDING).exists()
    with pytest.raises(KnowledgeError, match="already"):
        suggestion_accept(actor=ops_user, suggestion=alias)


def test_a_gap_fixed_by_hand_stops_being_suggested(auditor, ops_user):
    caps = factories.category_path("Accessories", "Headwear", "Caps")
    nike = factories.brand("Nike", sells=factories.category_path("Footwear"))
    task = factories.review_task(title="Nike Unisex Cap", category=caps, brand_obj=nike)
    _decide(task, auditor, category=caps, brand=nike)
    suggestions_refresh()
    assert Suggestion.objects.filter(status=Suggestion.Status.PENDING).count() == 1
    brand_category_add(actor=ops_user, brand=nike, category=caps.parent)  # sells all Headwear
    suggestions_refresh()
    assert not Suggestion.objects.filter(status=Suggestion.Status.PENDING).exists()
