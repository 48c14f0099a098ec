"""Writes to the knowledge graph: imports and publishing."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from classifier.fusion.knowledge import KnowledgeSnapshot
from knowledge import cache
from knowledge.models import (
    Brand,
    BrandAlias,
    BrandCategory,
    Category,
    CategoryAlias,
    CategoryAttribute,
    KnowledgeVersion,
    NoiseTerm,
)
from knowledge.selectors import knowledge_version_latest, snapshot_build_from_db


@transaction.atomic
def graph_import_snapshot(*, snapshot: KnowledgeSnapshot) -> dict[str, int]:
    """Upsert every node, brand, alias, relation, rule and noise term of `snapshot` (idempotent)."""
    by_label: dict[str, Category] = {}
    created = {"categories": 0, "brands": 0}
    # Parents before children: sort by depth.
    for node in sorted(snapshot.categories, key=lambda n: len(snapshot.path_of(n.id))):
        parent = by_label.get(node.parent_id) if node.parent_id else None
        category = Category.objects.filter(parent=parent, name__iexact=node.name).first()
        if category is None:
            category = Category.objects.create(parent=parent, name=node.name, description=node.description)
            created["categories"] += 1
        by_label[node.id] = category
        for alias in node.aliases:
            CategoryAlias.objects.get_or_create(category=category, alias=alias)
    for entry in snapshot.brands:
        brand = Brand.objects.filter(name__iexact=entry.name).first()
        if brand is None:
            brand = Brand.objects.create(name=entry.name)
            created["brands"] += 1
        for alias in entry.aliases:
            if (
                alias.lower() != entry.name.lower()
                and not BrandAlias.objects.filter(alias__iexact=alias).exists()
            ):
                BrandAlias.objects.create(brand=brand, alias=alias)
        for category_id in entry.category_ids:
            if category_id in by_label:
                BrandCategory.objects.get_or_create(brand=brand, category=by_label[category_id])
    for rule in snapshot.attribute_rules:
        if rule.category_id in by_label:
            CategoryAttribute.objects.update_or_create(
                category=by_label[rule.category_id],
                name=rule.attribute,
                defaults={
                    "allowed_values": list(rule.allowed_values),
                    "required": rule.required,
                    "excluded": rule.excluded,
                },
            )
    for term in snapshot.noise_terms:
        if not NoiseTerm.objects.filter(term__iexact=term).exists():
            NoiseTerm.objects.create(term=term)
    return created


def knowledge_publish(*, actor: Any = None, reason: str) -> KnowledgeVersion:
    """Freeze the current graph into a new numbered snapshot and hand it to the workers."""
    with transaction.atomic():
        latest = knowledge_version_latest()
        number = (latest.number if latest else 0) + 1
        snapshot = snapshot_build_from_db(version=number)
        version = KnowledgeVersion.objects.create(
            number=number,
            snapshot=snapshot.to_dict(),
            checksum=snapshot.checksum(),
            reason=reason,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
    # After commit: a worker must never see a version the database does not have.
    cache.snapshot_store(snapshot)
    return version
