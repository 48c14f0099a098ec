"""Reads of the knowledge graph."""

from __future__ import annotations

from classifier.fusion.knowledge import (
    AttributeRule,
    BrandEntry,
    CategoryNode,
    KnowledgeSnapshot,
)
from knowledge.models import Brand, BrandAlias, Category, CategoryAttribute, KnowledgeVersion, NoiseTerm


def category_path_labels() -> dict[int, str]:
    """Every category's snapshot id (its path label), computed in one query."""
    rows = {
        pk: (name, parent_id)
        for pk, name, parent_id in Category.objects.values_list("id", "name", "parent_id")
    }
    labels: dict[int, str] = {}

    def label(pk: int) -> str:
        if pk not in labels:
            name, parent_id = rows[pk]
            labels[pk] = name if parent_id is None else f"{label(parent_id)} > {name}"
        return labels[pk]

    for pk in rows:
        label(pk)
    return labels


def category_by_path_label(label: str) -> Category | None:
    """The active category whose path from the root is `label` ("Apparel > Topwear > Tshirts")."""
    node: Category | None = None
    for name in (part.strip() for part in label.split(">")):
        node = Category.objects.filter(parent=node, name__iexact=name, is_active=True).first()
        if node is None:
            return None
    return node


def brand_by_name(name: str) -> Brand | None:
    """A brand by its name or one of its aliases, case-insensitively."""
    if not name:
        return None
    brand = Brand.objects.filter(name__iexact=name, is_active=True).first()
    if brand is None:
        alias = (
            BrandAlias.objects.filter(alias__iexact=name, brand__is_active=True)
            .select_related("brand")
            .first()
        )
        brand = alias.brand if alias else None
    return brand


def knowledge_version_latest() -> KnowledgeVersion | None:
    return KnowledgeVersion.objects.order_by("-number").first()


def snapshot_build_from_db(*, version: int) -> KnowledgeSnapshot:
    """The whole graph as the immutable structure the fusion model reads."""
    labels = category_path_labels()
    categories = []
    for cat in Category.objects.filter(is_active=True).prefetch_related("aliases").order_by("id"):
        categories.append(
            CategoryNode(
                id=labels[cat.pk],
                name=cat.name,
                parent_id=labels[cat.parent_id] if cat.parent_id else None,
                aliases=tuple(a.alias for a in cat.aliases.all()),
                description=cat.description,
            )
        )
    brands = []
    for brand in (
        Brand.objects.filter(is_active=True).prefetch_related("aliases", "brandcategory_set").order_by("id")
    ):
        brands.append(
            BrandEntry(
                id=str(brand.pk),
                name=brand.name,
                aliases=tuple(a.alias for a in brand.aliases.all()),
                category_ids=tuple(labels[bc.category_id] for bc in brand.brandcategory_set.all()),
            )
        )
    rules = [
        AttributeRule(
            category_id=labels[attr.category_id],
            attribute=attr.name,
            allowed_values=tuple(attr.allowed_values or ()),
            required=attr.required,
            excluded=attr.excluded,
        )
        for attr in CategoryAttribute.objects.order_by("id")
    ]
    noise = tuple(NoiseTerm.objects.order_by("term").values_list("term", flat=True))
    return KnowledgeSnapshot(
        version=version,
        categories=tuple(categories),
        brands=tuple(brands),
        attribute_rules=tuple(rules),
        noise_terms=noise,
    )
