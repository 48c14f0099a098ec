"""The graph as the immutable snapshot the fusion model reads, and the published versions' list."""

from __future__ import annotations

from collections import defaultdict
from typing import TypedDict

from classifier.fusion.knowledge import AttributeRule, BrandEntry, CategoryNode, KnowledgeSnapshot
from knowledge.graph.selectors import category_path_labels
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


def snapshot_build_with_ids(*, version: int) -> tuple[KnowledgeSnapshot, dict[str, dict[str, int]]]:
    """The graph as a snapshot plus the snapshot-id -> row-id map a restore needs.

    Four flat queries grouped in Python (no prefetch): it stays linear at 100,000 brands.
    """
    labels = category_path_labels(active_only=True)
    cat_aliases: dict[int, list[str]] = defaultdict(list)
    for cat_id, alias in CategoryAlias.objects.order_by("id").values_list("category_id", "alias"):
        cat_aliases[cat_id].append(alias)
    categories = [
        CategoryNode(
            id=labels[pk],
            name=name,
            parent_id=labels[parent_id] if parent_id else None,
            aliases=tuple(cat_aliases.get(pk, ())),
            description=description,
        )
        for pk, name, parent_id, description in Category.objects.order_by("id")
        .values_list("id", "name", "parent_id", "description")
        .iterator(chunk_size=5000)
        if pk in labels
    ]
    brand_aliases: dict[int, list[str]] = defaultdict(list)
    for brand_id, alias in (
        BrandAlias.objects.order_by("id").values_list("brand_id", "alias").iterator(chunk_size=10000)
    ):
        brand_aliases[brand_id].append(alias)
    brand_cats: dict[int, list[str]] = defaultdict(list)
    brand_support: dict[int, list[int]] = defaultdict(list)
    for brand_id, cat_id, support in (
        BrandCategory.objects.order_by("id")
        .values_list("brand_id", "category_id", "support")
        .iterator(chunk_size=10000)
    ):
        if cat_id in labels:
            brand_cats[brand_id].append(labels[cat_id])
            brand_support[brand_id].append(int(support))
    brands = []
    brand_ids: dict[str, int] = {}
    for pk, name in (
        Brand.objects.filter(is_active=True)
        .order_by("id")
        .values_list("id", "name")
        .iterator(chunk_size=10000)
    ):
        brands.append(
            BrandEntry(
                id=str(pk),
                name=name,
                aliases=tuple(brand_aliases.get(pk, ())),
                category_ids=tuple(brand_cats.get(pk, ())),
                category_support=tuple(brand_support.get(pk, ())),
            )
        )
        brand_ids[str(pk)] = pk
    rules = [
        AttributeRule(
            category_id=labels[cat_id],
            attribute=name,
            allowed_values=tuple(values or ()),
            required=required,
            excluded=excluded,
        )
        for cat_id, name, values, required, excluded in CategoryAttribute.objects.order_by("id").values_list(
            "category_id", "name", "allowed_values", "required", "excluded"
        )
        if cat_id in labels
    ]
    noise = tuple(NoiseTerm.objects.order_by("term").values_list("term", flat=True))
    snapshot = KnowledgeSnapshot(
        version=version,
        categories=tuple(categories),
        brands=tuple(brands),
        attribute_rules=tuple(rules),
        noise_terms=noise,
    )
    row_ids = {"categories": {label: pk for pk, label in labels.items()}, "brands": brand_ids}
    return snapshot, row_ids


class CategoryDict(TypedDict):
    id: str
    name: str
    parent_id: str | None
    aliases: list[str]
    description: str


class BrandDict(TypedDict):
    id: str
    name: str
    aliases: list[str]
    category_ids: list[str]
    category_support: list[int]


class RuleDict(TypedDict):
    category_id: str
    attribute: str
    allowed_values: list[str]
    required: bool
    excluded: bool


class EntityTermDict(TypedDict):
    text: str
    type: str
    weight: float


class SnapshotDict(TypedDict, total=False):
    """A snapshot as JSON (the `KnowledgeVersion.snapshot` column, the export file)."""

    version: int
    categories: list[CategoryDict]
    brands: list[BrandDict]
    attribute_rules: list[RuleDict]
    noise_terms: list[str]
    entity_terms: list[EntityTermDict]
    meta: list[list[str]]


def snapshot_as_dict(snapshot: KnowledgeSnapshot) -> SnapshotDict:
    """`snapshot.to_dict()`, field by field instead of through `dataclasses.asdict`.

    Same result (the checksum depends on it), about five times faster: `asdict` deep-copies
    every tuple, which costs seconds at 100,000 brands.
    """
    return {
        "version": snapshot.version,
        "categories": [
            {
                "id": c.id,
                "name": c.name,
                "parent_id": c.parent_id,
                "aliases": list(c.aliases),
                "description": c.description,
            }
            for c in snapshot.categories
        ],
        "brands": [
            {
                "id": b.id,
                "name": b.name,
                "aliases": list(b.aliases),
                "category_ids": list(b.category_ids),
                "category_support": list(b.category_support),
            }
            for b in snapshot.brands
        ],
        "attribute_rules": [
            {
                "category_id": r.category_id,
                "attribute": r.attribute,
                "allowed_values": list(r.allowed_values),
                "required": r.required,
                "excluded": r.excluded,
            }
            for r in snapshot.attribute_rules
        ],
        "noise_terms": list(snapshot.noise_terms),
        "entity_terms": [{"text": t.text, "type": t.type, "weight": t.weight} for t in snapshot.entity_terms],
        "meta": [list(m) for m in snapshot.meta],
    }


def snapshot_build_from_db(*, version: int) -> KnowledgeSnapshot:
    """The whole graph as the immutable structure the fusion model reads."""
    return snapshot_build_with_ids(version=version)[0]


def knowledge_version_numbers(*, limit: int = 500) -> list[int]:
    return list(KnowledgeVersion.objects.order_by("-number").values_list("number", flat=True)[:limit])
