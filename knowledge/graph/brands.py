"""Writes to brands: create, edit, aliases, the categories a brand sells, merge; relation support.

Each edit is logged (`knowledge.changelog`) and stays pending until a publish. Rows of other apps
that name a brand follow a merge through `knowledge.ports.references()`.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F

from knowledge.changelog import KnowledgeError, change_record, merge_record, version_bump
from knowledge.graph.nodes import relation_fold
from knowledge.graph.rules import (
    BRAND_NAME_MAX,
    check_brand_aliases_free,
    check_brand_name_free,
    clean_aliases,
    clean_name,
)
from knowledge.graph.selectors import brand_row
from knowledge.models import Brand, BrandAlias, BrandCategory, Category, Suggestion
from knowledge.ports import Actor, references


@transaction.atomic
def brand_create(
    *,
    actor: Actor,
    name: str,
    description: str = "",
    aliases: Iterable[str] = (),
    categories: Iterable[Category] = (),
    reason: str = "",
) -> Brand:
    name = clean_name(name, what="brand", max_len=BRAND_NAME_MAX)
    check_brand_name_free(name, brand=None)
    clean = clean_aliases(aliases, own_name=name)
    check_brand_aliases_free(clean, brand=None)
    brand = Brand.objects.create(name=name, description=(description or "").strip())
    BrandAlias.objects.bulk_create([BrandAlias(brand=brand, alias=a) for a in clean])
    BrandCategory.objects.bulk_create([BrandCategory(brand=brand, category=c) for c in categories])
    change_record(actor=actor, action="create", obj=brand, reason=reason, after=brand_row(brand))
    return brand


@transaction.atomic
def brand_alias_add(*, actor: Actor, brand: Brand, alias: str, reason: str = "") -> BrandAlias:
    clean = clean_aliases([alias], own_name=brand.name)
    if not clean:
        raise KnowledgeError("That alias is empty or the brand's own name.")
    check_brand_aliases_free(clean, brand=brand)
    if brand.aliases.filter(alias__iexact=clean[0]).exists():
        raise KnowledgeError(f"{clean[0]!r} is already an alias of {brand.name!r}.")
    before = brand_row(brand)
    row = BrandAlias.objects.create(brand=brand, alias=clean[0])
    version_bump(brand)
    change_record(
        actor=actor, action="alias_add", obj=brand, reason=reason, before=before, after=brand_row(brand)
    )
    return row


@transaction.atomic
def brand_category_add(*, actor: Actor, brand: Brand, category: Category, reason: str = "") -> bool:
    """Record that the brand sells `category`; False when it already did."""
    _, created = BrandCategory.objects.get_or_create(brand=brand, category=category)
    if created:
        version_bump(brand)
        change_record(
            actor=actor, action="sells_add", obj=brand, reason=reason, after={"category": category.path_label}
        )
    return created


@transaction.atomic
def brand_category_remove(*, actor: Actor, brand: Brand, category: Category, reason: str = "") -> bool:
    deleted, _ = BrandCategory.objects.filter(brand=brand, category=category).delete()
    if deleted:
        version_bump(brand)
        change_record(
            actor=actor,
            action="sells_remove",
            obj=brand,
            reason=reason,
            before={"category": category.path_label},
        )
    return bool(deleted)


@transaction.atomic
def brand_merge(*, actor: Actor, source: Brand, target: Brand, reason: str = "") -> Brand:
    """Fold `source` into `target`: listings, predictions, decisions, aliases and categories
    follow; the source's name becomes an alias of the target; `source` is deleted."""
    source = Brand.objects.select_for_update().get(pk=source.pk)
    target = Brand.objects.select_for_update().get(pk=target.pk)
    if source.pk == target.pk:
        raise KnowledgeError("Pick two different brands to merge.")
    before = {"source": brand_row(source), "target": brand_row(target)}
    moved = references().brand_repoint(source_id=source.pk, target_id=target.pk)
    taken = {a.lower() for a in target.aliases.values_list("alias", flat=True)} | {target.name.lower()}
    for alias in list(source.aliases.all()):
        if alias.alias.lower() in taken:
            alias.delete()
        else:
            taken.add(alias.alias.lower())
            BrandAlias.objects.filter(pk=alias.pk).update(brand=target)
    for category_id, support, source_kind in BrandCategory.objects.filter(brand=source).values_list(
        "category_id", "support", "source"
    ):
        relation_fold(brand_id=target.pk, category_id=category_id, support=support, source=source_kind)
    Suggestion.objects.filter(brand=source).delete()
    source_name = source.name
    source.delete()  # frees its name for the alias below
    if source_name.lower() not in taken:
        BrandAlias.objects.create(brand=target, alias=source_name)
    merge_record(
        actor=actor,
        target=target,
        row=brand_row,
        reason=reason,
        before=before,
        folded={"merged_away": source_name, "moved": moved},
    )
    return target


def relation_support_record(*, brand_id: int, category_id: int, delta: int) -> bool:
    """An approved (or undone) decision adds to (takes from) the relation it confirms.

    Only an existing brand -> category relation changes; a missing one is a gap that
    `suggestions_refresh` turns into a suggestion with its evidence count. Never below zero.
    Returns whether a relation changed.
    """
    rows = BrandCategory.objects.filter(brand_id=brand_id, category_id=category_id)
    if delta >= 0:
        return bool(rows.update(support=F("support") + delta))
    return bool(rows.filter(support__gte=-delta).update(support=F("support") + delta))
