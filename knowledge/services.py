"""Writes to the knowledge graph: edits, merges, imports, publish, discard, restore, suggestions.

Every edit is recorded in `ChangeLog` (who, when, why, the rows before and after) and stays
*pending* until `knowledge_publish` freezes the tables into a new `KnowledgeVersion` and hands
it to the workers through the entity cache. Edits of one row name the `version` they started
from; a stale one raises `StaleEdit` naming who changed the row meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.utils import timezone

from classifier.fusion.knowledge import KnowledgeSnapshot
from knowledge import cache
from knowledge.models import (
    Brand,
    BrandAlias,
    BrandCategory,
    Category,
    CategoryAlias,
    CategoryAttribute,
    ChangeLog,
    KnowledgeVersion,
    NoiseTerm,
    Suggestion,
)
from knowledge.selectors import (
    category_path_labels,
    change_last_for,
    knowledge_version_latest,
    snapshot_as_dict,
    snapshot_build_with_ids,
)

log = logging.getLogger(__name__)

NAME_MAX = 120
BRAND_NAME_MAX = 200
ALIAS_MAX = 200
TERM_MAX = 200


class KnowledgeError(ValueError):
    """An edit refused with a message meant for the person who made it."""


class StaleEdit(KnowledgeError):
    """The row changed since the form was opened."""


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ---- change log ---------------------------------------------------------------------------------


def _log(
    *,
    actor: Any,
    action: str,
    obj: Category | Brand | None = None,
    object_type: str = "",
    object_id: str = "",
    label: str = "",
    reason: str = "",
    before: dict | None = None,
    after: dict | None = None,
) -> ChangeLog:
    if obj is not None:
        object_type = "category" if isinstance(obj, Category) else "brand"
        object_id = str(obj.pk)
        label = label or (obj.path_label if isinstance(obj, Category) else obj.name)
    return ChangeLog.objects.create(
        actor=_user(actor),
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_label=label[:500],
        reason=reason,
        before=before or {},
        after=after or {},
    )


def category_row(category: Category) -> dict[str, Any]:
    """A category as the change log stores it."""
    return {
        "id": category.pk,
        "name": category.name,
        "parent_id": category.parent_id,
        "path": category.path_label,
        "description": category.description,
        "is_active": category.is_active,
        "version": category.version,
        "aliases": sorted(category.aliases.values_list("alias", flat=True)),
    }


def brand_row(brand: Brand) -> dict[str, Any]:
    """A brand as the change log stores it."""
    labels = category_path_labels()
    return {
        "id": brand.pk,
        "name": brand.name,
        "description": brand.description,
        "is_active": brand.is_active,
        "version": brand.version,
        "aliases": sorted(brand.aliases.values_list("alias", flat=True)),
        "categories": sorted(
            labels.get(c, "?")
            for c in BrandCategory.objects.filter(brand=brand).values_list("category_id", flat=True)
        ),
    }


def _lock_at_version(model: type[Category] | type[Brand], pk: int, expected_version: int | None):
    """Lock the row; refuse when it moved past the version the editor started from."""
    obj = model.objects.select_for_update().get(pk=pk)
    if expected_version is not None and obj.version != int(expected_version):
        kind = "category" if model is Category else "brand"
        last = change_last_for(object_type=kind, object_id=pk)
        who = "someone else"
        when = ""
        if last is not None:
            who = last.actor.get_username() if last.actor else "the system"
            when = f" at {timezone.localtime(last.created_at):%H:%M:%S}"
        raise StaleEdit(
            f"{obj} was changed by {who}{when} after you opened it (version {obj.version}, "
            f"yours {expected_version}). Reload to see their change, then edit again."
        )
    return obj


def _bump(obj: Category | Brand) -> None:
    type(obj).objects.filter(pk=obj.pk).update(version=F("version") + 1)
    obj.refresh_from_db()


# ---- validation ---------------------------------------------------------------------------------


def _clean_name(name: str, *, what: str, max_len: int) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise KnowledgeError(f"The {what} name is empty.")
    if len(name) > max_len:
        raise KnowledgeError(f"The {what} name is {len(name)} characters long; the limit is {max_len}.")
    if what == "category" and ">" in name:
        raise KnowledgeError("A category name cannot contain '>': it separates the levels of a path.")
    return name


def aliases_parse(text: str) -> list[str]:
    """One alias per line (bulk edit textarea); blank lines dropped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _clean_aliases(aliases: Iterable[str], *, own_name: str) -> list[str]:
    out: list[str] = []
    seen = {own_name.lower()}
    for raw in aliases:
        alias = " ".join(str(raw).split())
        if not alias:
            continue
        if len(alias) > ALIAS_MAX:
            raise KnowledgeError(
                f"The alias {_short(alias)!r} is {len(alias)} characters long; the limit is {ALIAS_MAX}."
            )
        if alias.lower() in seen:
            continue
        seen.add(alias.lower())
        out.append(alias)
    return out


def _check_brand_aliases_free(aliases: Sequence[str], *, brand: Brand | None) -> None:
    for alias in aliases:
        other_alias = (
            BrandAlias.objects.filter(alias__iexact=alias).exclude(brand=brand).select_related("brand")
        )
        hit = other_alias.first()
        if hit is not None:
            raise KnowledgeError(f"The alias {alias!r} already belongs to brand {hit.brand.name!r}.")
        named = Brand.objects.filter(name__iexact=alias).exclude(pk=brand.pk if brand else None).first()
        if named is not None:
            raise KnowledgeError(
                f"{alias!r} is the name of brand {named.name!r}; merge the two brands instead."
            )


def brand_by_folded_name(name: str) -> Brand | None:
    """The brand whose name or alias equals `name` case- and accent-folded ("Lakmé" finds "LAKME"),
    looked up in the published snapshot (the gazetteer the model matches titles with)."""
    try:
        snapshot = cache.snapshot_current()
    except Exception:  # the cache is down: the exact lookups still guard
        return None
    entry = snapshot.find_brand(name) if snapshot is not None and name else None
    if entry is None or not entry.id.isdigit():
        return None
    brand = Brand.objects.filter(pk=int(entry.id), is_active=True).first()
    if brand is None:
        return None
    # The snapshot may be older than the tables: the row itself must carry the folded spelling.
    from classifier.fusion.knowledge import fold_text

    wanted = fold_text(name).strip()
    spellings = [brand.name, *brand.aliases.values_list("alias", flat=True)]
    return brand if any(fold_text(s).strip() == wanted for s in spellings) else None


def _check_brand_name_free(name: str, *, brand: Brand | None) -> None:
    other = Brand.objects.filter(name__iexact=name).exclude(pk=brand.pk if brand else None).first()
    if other is not None:
        raise KnowledgeError(f"A brand named {other.name!r} already exists.")
    alias = BrandAlias.objects.filter(alias__iexact=name).exclude(brand=brand).select_related("brand").first()
    if alias is not None:
        raise KnowledgeError(f"{name!r} is already an alias of brand {alias.brand.name!r}.")
    folded = brand_by_folded_name(name)
    if folded is not None and (brand is None or folded.pk != brand.pk):
        raise KnowledgeError(f"{name!r} is brand {folded.name!r} written with other accents or case.")


def _check_sibling_free(name: str, *, parent: Category | None, exclude: Category | None) -> None:
    clash = Category.objects.filter(parent=parent, name__iexact=name).exclude(
        pk=exclude.pk if exclude else None
    )
    hit = clash.first()
    if hit is not None:
        where = parent.path_label if parent else "the top level"
        raise KnowledgeError(f"There is already a category {hit.name!r} under {where}; merge them instead.")


def _descendant_ids(category: Category) -> set[int]:
    children: dict[int | None, list[int]] = {}
    for pk, parent_id in Category.objects.values_list("id", "parent_id"):
        children.setdefault(parent_id, []).append(pk)
    out: set[int] = set()
    stack = list(children.get(category.pk, ()))
    while stack:
        pk = stack.pop()
        if pk not in out:
            out.add(pk)
            stack.extend(children.get(pk, ()))
    return out


# ---- categories ---------------------------------------------------------------------------------


@transaction.atomic
def category_create(
    *,
    actor: Any,
    name: str,
    parent: Category | None = None,
    description: str = "",
    aliases: Iterable[str] = (),
    reason: str = "",
) -> Category:
    name = _clean_name(name, what="category", max_len=NAME_MAX)
    _check_sibling_free(name, parent=parent, exclude=None)
    clean = _clean_aliases(aliases, own_name=name)
    category = Category.objects.create(name=name, parent=parent, description=description.strip())
    CategoryAlias.objects.bulk_create([CategoryAlias(category=category, alias=a) for a in clean])
    _log(actor=actor, action="create", obj=category, reason=reason, after=category_row(category))
    return category


@transaction.atomic
def category_update(
    *,
    actor: Any,
    category: Category,
    expected_version: int | None,
    name: str,
    description: str,
    aliases: Iterable[str] | None = None,
    reason: str = "",
) -> Category:
    """Rename, describe and (when `aliases` is given) replace the aliases of one node."""
    category = _lock_at_version(Category, category.pk, expected_version)
    before = category_row(category)
    name = _clean_name(name, what="category", max_len=NAME_MAX)
    _check_sibling_free(name, parent=category.parent, exclude=category)
    category.name = name
    category.description = (description or "").strip()
    category.save(update_fields=["name", "description", "updated_at"])
    if aliases is not None:
        clean = _clean_aliases(aliases, own_name=name)
        category.aliases.all().delete()
        CategoryAlias.objects.bulk_create([CategoryAlias(category=category, alias=a) for a in clean])
    _bump(category)
    _log(
        actor=actor, action="update", obj=category, reason=reason, before=before, after=category_row(category)
    )
    return category


@transaction.atomic
def category_move(
    *,
    actor: Any,
    category: Category,
    new_parent: Category | None,
    expected_version: int | None,
    reason: str = "",
) -> Category:
    """Put a node (with its subtree) under another parent; refuses cycles and name clashes."""
    category = _lock_at_version(Category, category.pk, expected_version)
    if new_parent is not None:
        new_parent = Category.objects.get(pk=new_parent.pk)
        if new_parent.pk == category.pk or new_parent.pk in _descendant_ids(category):
            raise KnowledgeError(
                f"Cannot move {category.path_label} under {new_parent.path_label}: "
                "that is inside its own subtree (the tree would loop)."
            )
    if (new_parent.pk if new_parent else None) == category.parent_id:
        raise KnowledgeError(f"{category.path_label} is already there.")
    _check_sibling_free(category.name, parent=new_parent, exclude=category)
    before = category_row(category)
    category.parent = new_parent
    category.save(update_fields=["parent", "updated_at"])
    _bump(category)
    _log(actor=actor, action="move", obj=category, reason=reason, before=before, after=category_row(category))
    return category


def _classifier_models():
    from classifier.models import Listing, Prediction, ReviewDecision, ReviewTask

    return Listing, Prediction, ReviewDecision, ReviewTask


def category_usage(*, category: Category) -> dict[str, int]:
    Listing, Prediction, ReviewDecision, _ReviewTask = _classifier_models()
    return {
        "listings": Listing.objects.filter(final_category=category).count(),
        "predictions": Prediction.objects.filter(category=category).count(),
        "decisions": ReviewDecision.objects.filter(category=category).count(),
        "children": category.children.count(),
    }


@transaction.atomic
def category_merge(*, actor: Any, source: Category, target: Category, reason: str = "") -> Category:
    """Fold `source` into `target`: its listings, predictions, review rows, aliases, relations,
    attributes and children follow; its name becomes an alias of `target`; `source` is deleted."""
    Listing, Prediction, ReviewDecision, ReviewTask = _classifier_models()
    source = Category.objects.select_for_update().get(pk=source.pk)
    target = Category.objects.select_for_update().get(pk=target.pk)
    if source.pk == target.pk:
        raise KnowledgeError("Pick two different categories to merge.")
    if target.pk in _descendant_ids(source):
        raise KnowledgeError(f"Cannot merge {source.path_label} into its own descendant {target.path_label}.")
    before = {"source": category_row(source), "target": category_row(target)}
    # The ids that move are recorded so that restoring a version before the merge puts them back.
    moved_ids = {
        "listings": list(Listing.objects.filter(final_category=source).values_list("id", flat=True)),
        "predictions": list(Prediction.objects.filter(category=source).values_list("id", flat=True)),
        "review_tasks": list(ReviewTask.objects.filter(category=source).values_list("id", flat=True)),
        "decisions": list(ReviewDecision.objects.filter(category=source).values_list("id", flat=True)),
    }
    moved = {
        "listings": Listing.objects.filter(final_category=source).update(final_category=target),
        "predictions": Prediction.objects.filter(category=source).update(category=target),
        "review_tasks": ReviewTask.objects.filter(category=source).update(category=target),
        "decisions": ReviewDecision.objects.filter(category=source).update(category=target),
    }
    # Children: a same-named child of the target absorbs the source's child (recursively).
    for child in list(source.children.all()):
        twin = target.children.filter(name__iexact=child.name).first()
        if twin is not None:
            category_merge(
                actor=actor, source=child, target=twin, reason=f"merged with parent {source.path_label}"
            )
        else:
            Category.objects.filter(pk=child.pk).update(parent=target, version=F("version") + 1)
    target_aliases = {a.lower() for a in target.aliases.values_list("alias", flat=True)} | {
        target.name.lower()
    }
    for alias in list(source.aliases.all()):
        if alias.alias.lower() in target_aliases:
            alias.delete()
        else:
            target_aliases.add(alias.alias.lower())
            CategoryAlias.objects.filter(pk=alias.pk).update(category=target)
    if source.name.lower() not in target_aliases:
        CategoryAlias.objects.create(category=target, alias=source.name)
    # Relations follow with their evidence: the support of a relation on both adds up.
    for bc in BrandCategory.objects.filter(category=source):
        twin, created = BrandCategory.objects.get_or_create(
            brand_id=bc.brand_id, category=target, defaults={"support": bc.support, "source": bc.source}
        )
        if not created:
            BrandCategory.objects.filter(pk=twin.pk).update(support=F("support") + bc.support)
    BrandCategory.objects.filter(category=source).delete()
    target_attrs = {n.lower() for n in target.attributes.values_list("name", flat=True)}
    for attr in list(source.attributes.all()):
        if attr.name.lower() not in target_attrs:
            CategoryAttribute.objects.filter(pk=attr.pk).update(category=target)
    Suggestion.objects.filter(category=source).delete()  # re-derived against the target on refresh
    source_label = source.path_label
    source.delete()
    _bump(target)
    _log(
        actor=actor,
        action="merge",
        obj=target,
        reason=reason,
        before=before,
        after={
            "target": category_row(target),
            "merged_away": source_label,
            "moved": moved,
            "moved_ids": moved_ids,
        },
    )
    return target


def _merges_unwind(*, after: Any, by_label: dict[str, int]) -> int:
    """Put back what category merges made since `after` moved, where the snapshot being restored
    has the merged-away category again (it was re-created under its label).

    Only rows that still point at the merge target move back: a later decision stays.
    """
    Listing, Prediction, ReviewDecision, ReviewTask = _classifier_models()
    entries = ChangeLog.objects.filter(action="merge", object_type="category")
    if after is not None:
        entries = entries.filter(created_at__gt=after)
    moved_back = 0
    for entry in entries.order_by("-created_at", "-id"):
        label = (entry.after or {}).get("merged_away")
        ids = (entry.after or {}).get("moved_ids") or {}
        target_pk = int(entry.object_id)
        source_pk = by_label.get(label) if label else None
        if source_pk is None:
            continue
        for model, field, key in (
            (Listing, "final_category", "listings"),
            (Prediction, "category", "predictions"),
            (ReviewTask, "category", "review_tasks"),
            (ReviewDecision, "category", "decisions"),
        ):
            pks = ids.get(key) or []
            if pks:
                moved_back += model.objects.filter(pk__in=pks, **{f"{field}_id": target_pk}).update(
                    **{f"{field}_id": source_pk}
                )
    return moved_back


@transaction.atomic
def category_delete(
    *, actor: Any, category: Category, expected_version: int | None, reason: str = ""
) -> None:
    """Delete an unused node; a used one is refused with the counts (merge it instead)."""
    category = _lock_at_version(Category, category.pk, expected_version)
    usage = category_usage(category=category)
    if usage["children"]:
        raise KnowledgeError(
            f"{category.path_label} has {usage['children']} sub-categories; move or merge them first."
        )
    used = usage["listings"] + usage["decisions"]
    if used:
        raise KnowledgeError(
            f"{usage['listings']} listings and {usage['decisions']} review decisions use "
            f"{category.path_label}; merge it into another category instead of deleting it."
        )
    before = category_row(category)
    category.delete()
    _log(
        actor=actor,
        action="delete",
        object_type="category",
        object_id=str(before["id"]),
        label=before["path"],
        reason=reason,
        before=before,
    )


@transaction.atomic
def attribute_set(
    *,
    actor: Any,
    category: Category,
    name: str,
    allowed_values: Iterable[str] = (),
    required: bool = False,
    excluded: bool = False,
    reason: str = "",
) -> CategoryAttribute:
    """Add or replace one attribute rule of a category (allowed values; requires / excludes)."""
    name = _clean_name(name, what="attribute", max_len=100)
    if required and excluded:
        raise KnowledgeError("An attribute cannot be both required and excluded.")
    values = _clean_aliases(allowed_values, own_name="")
    existing = CategoryAttribute.objects.filter(category=category, name__iexact=name).first()
    before = (
        {
            "name": existing.name,
            "allowed_values": existing.allowed_values,
            "required": existing.required,
            "excluded": existing.excluded,
        }
        if existing
        else {}
    )
    attr, _ = CategoryAttribute.objects.update_or_create(
        pk=existing.pk if existing else None,
        defaults={
            "category": category,
            "name": name,
            "allowed_values": values,
            "required": required,
            "excluded": excluded,
        },
    )
    after = {"name": name, "allowed_values": values, "required": required, "excluded": excluded}
    _log(actor=actor, action="attribute", obj=category, reason=reason, before=before, after=after)
    return attr


@transaction.atomic
def attribute_delete(*, actor: Any, attribute: CategoryAttribute, reason: str = "") -> None:
    before = {"name": attribute.name, "allowed_values": attribute.allowed_values}
    category = attribute.category
    attribute.delete()
    _log(actor=actor, action="attribute_delete", obj=category, reason=reason, before=before)


@transaction.atomic
def noise_term_add(*, actor: Any, term: str, weight: float = 0.1, reason: str = "") -> NoiseTerm:
    term = " ".join((term or "").split())
    if not term:
        raise KnowledgeError("The noise term is empty.")
    if len(term) > TERM_MAX:
        raise KnowledgeError(f"The noise term is {len(term)} characters long; the limit is {TERM_MAX}.")
    if not 0.0 <= weight <= 1.0:
        raise KnowledgeError("The weight must be between 0 and 1.")
    if NoiseTerm.objects.filter(term__iexact=term).exists():
        raise KnowledgeError(f"{term!r} is already a noise term.")
    row = NoiseTerm.objects.create(term=term, weight=weight)
    _log(
        actor=actor,
        action="noise_add",
        object_type="noise",
        object_id=str(row.pk),
        label=term,
        reason=reason,
        after={"term": term, "weight": weight},
    )
    return row


@transaction.atomic
def noise_term_delete(*, actor: Any, term: NoiseTerm, reason: str = "") -> None:
    before = {"term": term.term, "weight": term.weight}
    pk = term.pk
    term.delete()
    _log(
        actor=actor,
        action="noise_delete",
        object_type="noise",
        object_id=str(pk),
        label=before["term"],
        reason=reason,
        before=before,
    )


# ---- brands -------------------------------------------------------------------------------------


@transaction.atomic
def brand_create(
    *,
    actor: Any,
    name: str,
    description: str = "",
    aliases: Iterable[str] = (),
    categories: Iterable[Category] = (),
    reason: str = "",
) -> Brand:
    name = _clean_name(name, what="brand", max_len=BRAND_NAME_MAX)
    _check_brand_name_free(name, brand=None)
    clean = _clean_aliases(aliases, own_name=name)
    _check_brand_aliases_free(clean, brand=None)
    brand = Brand.objects.create(name=name, description=(description or "").strip())
    BrandAlias.objects.bulk_create([BrandAlias(brand=brand, alias=a) for a in clean])
    BrandCategory.objects.bulk_create([BrandCategory(brand=brand, category=c) for c in categories])
    _log(actor=actor, action="create", obj=brand, reason=reason, after=brand_row(brand))
    return brand


@transaction.atomic
def brand_update(
    *,
    actor: Any,
    brand: Brand,
    expected_version: int | None,
    name: str,
    description: str,
    aliases: Iterable[str] | None = None,
    reason: str = "",
) -> Brand:
    """Rename, describe and (when `aliases` is given) replace the aliases of one brand."""
    brand = _lock_at_version(Brand, brand.pk, expected_version)
    before = brand_row(brand)
    name = _clean_name(name, what="brand", max_len=BRAND_NAME_MAX)
    _check_brand_name_free(name, brand=brand)
    brand.name = name
    brand.description = (description or "").strip()
    brand.save(update_fields=["name", "description", "updated_at"])
    if aliases is not None:
        clean = _clean_aliases(aliases, own_name=name)
        _check_brand_aliases_free(clean, brand=brand)
        brand.aliases.all().delete()
        BrandAlias.objects.bulk_create([BrandAlias(brand=brand, alias=a) for a in clean])
    _bump(brand)
    _log(actor=actor, action="update", obj=brand, reason=reason, before=before, after=brand_row(brand))
    return brand


@transaction.atomic
def brand_alias_add(*, actor: Any, brand: Brand, alias: str, reason: str = "") -> BrandAlias:
    clean = _clean_aliases([alias], own_name=brand.name)
    if not clean:
        raise KnowledgeError("That alias is empty or the brand's own name.")
    _check_brand_aliases_free(clean, brand=brand)
    if brand.aliases.filter(alias__iexact=clean[0]).exists():
        raise KnowledgeError(f"{clean[0]!r} is already an alias of {brand.name!r}.")
    before = brand_row(brand)
    row = BrandAlias.objects.create(brand=brand, alias=clean[0])
    _bump(brand)
    _log(actor=actor, action="alias_add", obj=brand, reason=reason, before=before, after=brand_row(brand))
    return row


@transaction.atomic
def brand_category_add(*, actor: Any, brand: Brand, category: Category, reason: str = "") -> bool:
    """Record that the brand sells `category`; False when it already did."""
    _, created = BrandCategory.objects.get_or_create(brand=brand, category=category)
    if created:
        _bump(brand)
        _log(
            actor=actor, action="sells_add", obj=brand, reason=reason, after={"category": category.path_label}
        )
    return created


@transaction.atomic
def brand_category_remove(*, actor: Any, brand: Brand, category: Category, reason: str = "") -> bool:
    deleted, _ = BrandCategory.objects.filter(brand=brand, category=category).delete()
    if deleted:
        _bump(brand)
        _log(
            actor=actor,
            action="sells_remove",
            obj=brand,
            reason=reason,
            before={"category": category.path_label},
        )
    return bool(deleted)


@transaction.atomic
def brand_merge(*, actor: Any, source: Brand, target: Brand, reason: str = "") -> Brand:
    """Fold `source` into `target`: listings, predictions, decisions, aliases and categories
    follow; the source's name becomes an alias of the target; `source` is deleted."""
    Listing, Prediction, ReviewDecision, _ReviewTask = _classifier_models()
    source = Brand.objects.select_for_update().get(pk=source.pk)
    target = Brand.objects.select_for_update().get(pk=target.pk)
    if source.pk == target.pk:
        raise KnowledgeError("Pick two different brands to merge.")
    before = {"source": brand_row(source), "target": brand_row(target)}
    moved = {
        "listings": Listing.objects.filter(final_brand=source).update(final_brand=target),
        "predictions": Prediction.objects.filter(brand=source).update(brand=target),
        "decisions": ReviewDecision.objects.filter(brand=source).update(brand=target),
    }
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
        twin, created = BrandCategory.objects.get_or_create(
            brand=target, category_id=category_id, defaults={"support": support, "source": source_kind}
        )
        if not created:
            BrandCategory.objects.filter(pk=twin.pk).update(support=F("support") + support)
    Suggestion.objects.filter(brand=source).delete()
    source_name = source.name
    source.delete()  # frees its name for the alias below
    if source_name.lower() not in taken:
        BrandAlias.objects.create(brand=target, alias=source_name)
    _bump(target)
    _log(
        actor=actor,
        action="merge",
        obj=target,
        reason=reason,
        before=before,
        after={"target": brand_row(target), "merged_away": source_name, "moved": moved},
    )
    return target


@transaction.atomic
def brands_import_rows(*, actor: Any, rows: Sequence[dict[str, Any]], reason: str = "") -> dict[str, int]:
    """Upsert brands from parsed CSV rows ({"line", "name", "aliases", "categories"}); all or nothing.

    Unknown category paths and aliases owned by another brand are refused naming the line.
    """
    counts = {"created": 0, "updated": 0, "aliases": 0, "relations": 0}
    for row in rows:
        line = row["line"]
        try:
            name = _clean_name(row["name"], what="brand", max_len=BRAND_NAME_MAX)
            brand = Brand.objects.filter(name__iexact=name).first()
            if brand is None:
                alias_owner = BrandAlias.objects.filter(alias__iexact=name).select_related("brand").first()
                if alias_owner is not None:
                    raise KnowledgeError(f"{name!r} is already an alias of brand {alias_owner.brand.name!r}")
                brand = Brand.objects.create(name=name)
                counts["created"] += 1
            else:
                counts["updated"] += 1
            clean = _clean_aliases(row.get("aliases", ()), own_name=brand.name)
            _check_brand_aliases_free(clean, brand=brand)
            existing = {a.lower() for a in brand.aliases.values_list("alias", flat=True)}
            new = [a for a in clean if a.lower() not in existing]
            BrandAlias.objects.bulk_create([BrandAlias(brand=brand, alias=a) for a in new])
            counts["aliases"] += len(new)
            for path in row.get("categories", ()):
                from knowledge.selectors import category_by_path_label

                category = category_by_path_label(path)
                if category is None:
                    raise KnowledgeError(f"unknown category {path!r}")
                _, created = BrandCategory.objects.get_or_create(
                    brand=brand, category=category, defaults={"source": BrandCategory.Source.IMPORT}
                )
                counts["relations"] += int(created)
        except KnowledgeError as exc:
            raise KnowledgeError(f"line {line}: {exc}") from exc
    _log(
        actor=actor,
        action="import",
        object_type="brands",
        object_id="csv",
        label=f"{len(rows)} brand rows",
        reason=reason,
        after=counts,
    )
    return counts


# ---- import / restore ---------------------------------------------------------------------------


MAX_IMPORT_PROBLEMS = 20


def snapshot_problems(snapshot: KnowledgeSnapshot) -> list[str]:
    """Everything that stops `snapshot` from being imported, in words (empty when it can be).

    Checked before anything is written: duplicate ids, a parent that does not exist, a cycle in
    the tree, two nodes of one name under one parent, names too long, a brand named twice, an alias
    that is another brand's name or alias (in the file or in the graph), a relation to a category
    the file does not have.
    """
    problems: list[str] = []
    ids = [c.id for c in snapshot.categories]
    seen_ids: set[str] = set()
    for cid in ids:
        if cid in seen_ids:
            problems.append(f"category id {cid!r} appears twice")
        seen_ids.add(cid)
    parents = {c.id: c.parent_id for c in snapshot.categories}
    for c in snapshot.categories:
        if not (c.name or "").strip():
            problems.append(f"category {c.id!r} has no name")
        elif len(c.name) > NAME_MAX:
            problems.append(f"category {c.id!r}: name longer than {NAME_MAX} characters")
        if c.parent_id is not None and c.parent_id not in parents:
            problems.append(f"category {c.id!r}: parent {c.parent_id!r} is not in the file")
    reported_cycles: set[frozenset[str]] = set()
    for cid in parents:
        path, cur = [], cid
        while cur is not None and cur in parents and cur not in path:
            path.append(cur)
            cur = parents[cur]
        if cur is not None and cur in path:
            loop = frozenset(path[path.index(cur) :])
            if loop not in reported_cycles:
                reported_cycles.add(loop)
                problems.append("cycle in the category tree: " + " -> ".join([*path[path.index(cur) :], cur]))
    siblings: dict[tuple[str | None, str], str] = {}
    for c in snapshot.categories:
        key = (c.parent_id, (c.name or "").strip().lower())
        if key in siblings and siblings[key] != c.id:
            problems.append(f"two categories named {c.name!r} under {c.parent_id or 'the root'}")
        siblings.setdefault(key, c.id)
    owner: dict[str, str] = {}  # lower name or alias -> the brand that claims it
    for b in snapshot.brands:
        name = (b.name or "").strip()
        if not name:
            problems.append(f"brand {b.id!r} has no name")
            continue
        if len(name) > BRAND_NAME_MAX:
            problems.append(f"brand {name[:40]!r}...: name longer than {BRAND_NAME_MAX} characters")
        key = name.lower()
        if key in owner and owner[key] != name.lower():
            problems.append(f"brand {name!r} is already an alias of brand {owner[key]!r} in the file")
        elif key in owner:
            problems.append(f"brand {name!r} appears twice")
        owner[key] = name.lower()
    for b in snapshot.brands:
        for alias in b.aliases:
            key = alias.strip().lower()
            if len(alias) > ALIAS_MAX:
                problems.append(f"brand {b.name!r}: alias longer than {ALIAS_MAX} characters")
            if key in owner and owner[key] != b.name.strip().lower():
                problems.append(
                    f"alias {alias!r} of brand {b.name!r} is also brand {owner[key]!r} (or its alias)"
                )
            owner.setdefault(key, b.name.strip().lower())
        for c in b.category_ids:
            if c not in parents:
                problems.append(f"brand {b.name!r} sells {c!r}, which is not in the file")
    # Against the graph: an alias of the file that the graph gives to another brand, or that is
    # the name of another brand of the graph.
    aliases = {a.strip().lower(): b.name.strip() for b in snapshot.brands for a in b.aliases}
    if aliases:
        graph_aliases = {
            a.lower(): n
            for a, n in BrandAlias.objects.values_list("alias", "brand__name").iterator(chunk_size=10000)
        }
        graph_names = {
            n.lower(): n for n in Brand.objects.values_list("name", flat=True).iterator(chunk_size=10000)
        }
        for alias, brand_name in aliases.items():
            holder = graph_aliases.get(alias) or graph_names.get(alias)
            if holder is not None and holder.lower() != brand_name.lower():
                problems.append(
                    f"alias {alias!r} of brand {brand_name!r} already belongs to brand {holder!r}"
                )
    return problems


@transaction.atomic
def graph_import_snapshot(
    *,
    snapshot: KnowledgeSnapshot,
    actor: Any = None,
    reason: str = "",
    relation_source: str = BrandCategory.Source.IMPORT,
) -> dict[str, Any]:
    """Upsert every node, brand, alias, relation, rule and noise term of `snapshot` (idempotent, additive).

    All or nothing: `snapshot_problems` are refused first (`KnowledgeError` listing them), and the
    writes run in one transaction. Brands, aliases and relations are written in bulk (50,000
    brands import in one go). Relations keep the snapshot's support (listings behind them) and are
    marked `relation_source`. The result counts what was created and lists the category merges the
    source reported (``meta["merge_report"]``).
    """
    problems = snapshot_problems(snapshot)
    if problems:
        more = (
            f" (and {len(problems) - MAX_IMPORT_PROBLEMS} more)"
            if len(problems) > MAX_IMPORT_PROBLEMS
            else ""
        )
        raise KnowledgeError(
            f"Nothing was imported: {len(problems)} problem(s): "
            + "; ".join(problems[:MAX_IMPORT_PROBLEMS])
            + more
        )
    by_label: dict[str, Category] = {}
    created: dict[str, Any] = {"categories": 0, "brands": 0, "aliases": 0, "relations": 0}
    # Parents before children: sort by depth.
    for node in sorted(snapshot.categories, key=lambda n: len(snapshot.path_of(n.id))):
        parent = by_label.get(node.parent_id) if node.parent_id else None
        category = Category.objects.filter(parent=parent, name__iexact=node.name).first()
        if category is None:
            category = Category.objects.create(parent=parent, name=node.name, description=node.description)
            created["categories"] += 1
        by_label[node.id] = category
        for alias in node.aliases:
            if not CategoryAlias.objects.filter(category=category, alias__iexact=alias).exists():
                CategoryAlias.objects.create(category=category, alias=alias)
    # Brands in bulk: one read of the names and aliases the graph has, then inserts.
    brand_by_lower = {n.lower(): pk for pk, n in Brand.objects.values_list("id", "name")}
    alias_owner = {a.lower(): b for a, b in BrandAlias.objects.values_list("alias", "brand_id")}
    new_brands = [
        Brand(name=e.name.strip())
        for e in snapshot.brands
        if e.name.strip().lower() not in brand_by_lower and e.name.strip().lower() not in alias_owner
    ]
    for start in range(0, len(new_brands), 5000):
        for obj in Brand.objects.bulk_create(new_brands[start : start + 5000]):
            brand_by_lower[obj.name.lower()] = obj.pk
    created["brands"] = len(new_brands)
    new_aliases: list[BrandAlias] = []
    relations: dict[tuple[int, int], int] = {}
    for entry in snapshot.brands:
        key = entry.name.strip().lower()
        brand_pk = brand_by_lower.get(key) or alias_owner.get(key)  # known under another brand's alias
        for alias in entry.aliases:
            lower = alias.strip().lower()
            if lower and lower != key and lower not in alias_owner and lower not in brand_by_lower:
                alias_owner[lower] = brand_pk
                new_aliases.append(BrandAlias(brand_id=brand_pk, alias=alias.strip()))
        for index, category_id in enumerate(entry.category_ids):
            if category_id in by_label:
                pair = (brand_pk, by_label[category_id].pk)
                relations[pair] = relations.get(pair, 0) + (entry.support_of(index) or 0)
    BrandAlias.objects.bulk_create(new_aliases, batch_size=5000)
    created["aliases"] = len(new_aliases)
    existing = {
        (b, c): (pk, support)
        for pk, b, c, support in BrandCategory.objects.filter(
            brand_id__in={b for b, _ in relations}
        ).values_list("id", "brand_id", "category_id", "support")
    }
    missing = [
        BrandCategory(brand_id=b, category_id=c, support=support, source=relation_source)
        for (b, c), support in relations.items()
        if (b, c) not in existing
    ]
    BrandCategory.objects.bulk_create(missing, batch_size=5000)
    created["relations"] = len(missing)
    for pair, support in relations.items():
        # a re-import brings the count up to the source's, never down (decisions add to it)
        if pair in existing and existing[pair][1] < support:
            BrandCategory.objects.filter(pk=existing[pair][0]).update(support=support)
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
    merges = json.loads(dict(snapshot.meta).get("merge_report") or "[]")
    _log(
        actor=actor,
        action="import",
        object_type="graph",
        object_id=dict(snapshot.meta).get("source", "snapshot")[:64],
        label=f"{len(snapshot.categories)} categories, {len(snapshot.brands)} brands",
        reason=reason,
        after={**created, "merges": merges},
    )
    created["merges"] = merges
    return created


def _sync_rows(model, *, current: dict[tuple, int], wanted: Iterable[tuple], fields: tuple[str, ...]) -> int:
    """Make `model`'s rows equal `wanted` (tuples of `fields`): delete the extra, create the missing.

    `current` maps each existing row's tuple to its id. A diff, not delete-all-and-recreate:
    at 100,000 brands almost nothing changes between a snapshot and the tables.
    """
    wanted_set = set(wanted)
    extra = [pk for key, pk in current.items() if key not in wanted_set]
    for start in range(0, len(extra), 5000):
        model.objects.filter(pk__in=extra[start : start + 5000]).delete()
    missing = [key for key in wanted_set if key not in current]
    model.objects.bulk_create(
        [model(**dict(zip(fields, key, strict=True))) for key in missing], batch_size=5000
    )
    return len(extra) + len(missing)


def _restore_categories(
    snapshot: KnowledgeSnapshot, cat_ids: dict[str, int]
) -> tuple[dict[str, int], set[int]]:
    """Category rows for every snapshot node, level by level, reusing ids; returns (label -> id, kept ids)."""
    rows = {
        pk: [name, parent_id, description, active, version]
        for pk, name, parent_id, description, active, version in Category.objects.values_list(
            "id", "name", "parent_id", "description", "is_active", "version"
        )
    }
    slot = {(r[1], r[0].lower()): pk for pk, r in rows.items()}  # (parent id, lower name) -> id
    by_label: dict[str, int] = {}
    kept: set[int] = set()
    levels: dict[int, list] = {}
    for node in snapshot.categories:
        levels.setdefault(len(snapshot.path_of(node.id)), []).append(node)
    for depth in sorted(levels):
        changed: dict[int, list] = {}
        new: list[Category] = []
        new_labels: list[str] = []
        for node in levels[depth]:
            parent_pk = by_label[node.parent_id] if node.parent_id else None
            key = (parent_pk, node.name.lower())
            pk = cat_ids.get(node.id)
            if pk not in rows or pk in kept:
                pk = slot.get(key)
                if pk in kept:
                    pk = None
            holder = slot.get(key)
            if holder is not None and holder != pk:
                if holder in kept:
                    raise KnowledgeError(f"The snapshot names {node.id!r} twice; it cannot be restored.")
                # Something created since took the name: rename it out of the way (dropped below).
                renamed = f"{rows[holder][0]} (removed {holder})"[:NAME_MAX]
                Category.objects.filter(pk=holder).update(name=renamed)
                rows[holder][0] = renamed
                del slot[key]
            if pk is None:
                new.append(Category(name=node.name, parent_id=parent_pk, description=node.description))
                new_labels.append(node.id)
                continue
            row = rows[pk]
            if [row[0], row[1], row[2], row[3]] != [node.name, parent_pk, node.description, True]:
                slot.pop((row[1], row[0].lower()), None)
                changed[pk] = [node.name, parent_pk, node.description, True, row[4] + 1]
                rows[pk] = changed[pk]
            slot[key] = pk
            by_label[node.id] = pk
            kept.add(pk)
        # One row at a time for the (few) changed ones: a bulk UPDATE could trip the unique
        # (parent, name) rule mid-statement when two nodes swap places.
        for pk, (name, parent_pk, description, active, version) in changed.items():
            Category.objects.filter(pk=pk).update(
                name=name, parent_id=parent_pk, description=description, is_active=active, version=version
            )
        for obj, label in zip(Category.objects.bulk_create(new, batch_size=5000), new_labels, strict=True):
            by_label[label] = obj.pk
            kept.add(obj.pk)
            slot[(obj.parent_id, obj.name.lower())] = obj.pk
            rows[obj.pk] = [obj.name, obj.parent_id, obj.description, True, obj.version]
    return by_label, kept


@transaction.atomic
def graph_restore_snapshot(
    *, snapshot: KnowledgeSnapshot, row_ids: dict | None = None, merges_since: Any = False
) -> dict[str, int]:
    """Make the tables say exactly what `snapshot` says (used by discard and version restore).

    Category and brand rows keep their ids where `row_ids` knows them, so moves and renames are
    undone in place and listings keep pointing at them; nodes absent from the snapshot are deleted
    when nothing uses them and deactivated otherwise; absent brands are deactivated. Aliases,
    relations (with their support), rules and noise terms are diffed against the snapshot. Rows that
    category merges made after `merges_since` re-pointed (listings, predictions, review tasks and
    decisions) go back to the category the snapshot has again.
    """
    from django.db.models import ProtectedError

    row_ids = row_ids or {}
    by_label, kept = _restore_categories(snapshot, row_ids.get("categories", {}))
    # Drop what the snapshot does not have: all at once when nothing protects them, else leaves first.
    stale = [pk for pk in Category.objects.values_list("id", flat=True) if pk not in kept]
    removed = deactivated = 0
    if stale:
        try:
            with transaction.atomic():
                Category.objects.filter(pk__in=stale).delete()
                removed = len(stale)
        except (ProtectedError, IntegrityError):
            depth = {pk: len(lab.split(" > ")) for pk, lab in category_path_labels().items()}
            for pk in sorted(stale, key=lambda p: -depth.get(p, 0)):
                try:
                    with transaction.atomic():
                        Category.objects.filter(pk=pk).delete()
                        removed += 1
                except (ProtectedError, IntegrityError):
                    Category.objects.filter(pk=pk).update(is_active=False)
                    deactivated += 1
    _sync_rows(
        CategoryAlias,
        current={(c, a): pk for pk, c, a in CategoryAlias.objects.values_list("id", "category_id", "alias")},
        wanted=[(by_label[n.id], a) for n in snapshot.categories for a in dict.fromkeys(n.aliases)],
        fields=("category_id", "alias"),
    )
    # Brands: by id, else by name; absent ones deactivated (listings may still name them).
    brand_ids: dict[str, int] = row_ids.get("brands", {})
    brands = {pk: [name, active] for pk, name, active in Brand.objects.values_list("id", "name", "is_active")}
    by_name = {row[0].lower(): pk for pk, row in brands.items()}
    brand_pk: dict[str, int] = {}
    new_brands: list[tuple[str, Brand]] = []
    for entry in snapshot.brands:
        pk = brand_ids.get(entry.id) or (int(entry.id) if entry.id.isdigit() else None)
        if pk not in brands:
            pk = by_name.get(entry.name.lower())
        if pk is None:
            new_brands.append((entry.id, Brand(name=entry.name)))
            continue
        if brands[pk] != [entry.name, True]:
            Brand.objects.filter(pk=pk).update(name=entry.name, is_active=True, version=F("version") + 1)
        brand_pk[entry.id] = pk
    for entry_id, obj in zip(
        [e for e, _ in new_brands], Brand.objects.bulk_create([b for _, b in new_brands]), strict=True
    ):
        brand_pk[entry_id] = obj.pk
    keep_brands = set(brand_pk.values())
    gone = [pk for pk, (_, active) in brands.items() if active and pk not in keep_brands]
    for start in range(0, len(gone), 5000):
        Brand.objects.filter(pk__in=gone[start : start + 5000]).update(is_active=False)
    # Aliases are unique across brands: remove before adding, which _sync_rows does.
    _sync_rows(
        BrandAlias,
        current={(b, a): pk for pk, b, a in BrandAlias.objects.values_list("id", "brand_id", "alias")},
        wanted=[(brand_pk[e.id], a) for e in snapshot.brands for a in dict.fromkeys(e.aliases)],
        fields=("brand_id", "alias"),
    )
    # Relations with their support; a kept relation keeps its source.
    wanted_relations: dict[tuple[int, int], int] = {}
    for e in snapshot.brands:
        for index, c in enumerate(e.category_ids):
            if c in by_label:
                wanted_relations.setdefault((brand_pk[e.id], by_label[c]), max(0, e.support_of(index) or 0))
    current_relations = {
        (b, c): (pk, support)
        for pk, b, c, support in BrandCategory.objects.values_list("id", "brand_id", "category_id", "support")
    }
    extra = [pk for key, (pk, _) in current_relations.items() if key not in wanted_relations]
    for start in range(0, len(extra), 5000):
        BrandCategory.objects.filter(pk__in=extra[start : start + 5000]).delete()
    for key, support in wanted_relations.items():
        if key in current_relations and current_relations[key][1] != support:
            BrandCategory.objects.filter(pk=current_relations[key][0]).update(support=support)
    BrandCategory.objects.bulk_create(
        [
            BrandCategory(brand_id=b, category_id=c, support=support, source=BrandCategory.Source.IMPORT)
            for (b, c), support in wanted_relations.items()
            if (b, c) not in current_relations
        ],
        batch_size=5000,
    )
    CategoryAttribute.objects.all().delete()
    CategoryAttribute.objects.bulk_create(
        [
            CategoryAttribute(
                category_id=by_label[r.category_id],
                name=r.attribute,
                allowed_values=list(r.allowed_values),
                required=r.required,
                excluded=r.excluded,
            )
            for r in snapshot.attribute_rules
            if r.category_id in by_label
        ]
    )
    NoiseTerm.objects.all().delete()
    NoiseTerm.objects.bulk_create([NoiseTerm(term=t) for t in dict.fromkeys(snapshot.noise_terms)])
    moved_back = _merges_unwind(after=merges_since, by_label=by_label) if merges_since is not False else 0
    return {
        "categories": len(kept),
        "removed": removed,
        "deactivated": deactivated,
        "brands": len(brand_pk),
        "moved_back": moved_back,
    }


# ---- publish, discard, restore ------------------------------------------------------------------


def knowledge_publish(*, actor: Any = None, reason: str) -> KnowledgeVersion:
    """Freeze the current graph into a new numbered snapshot and hand it to the workers.

    The row is committed first (the source of truth), then the entity cache is written. If the
    cache is down, the previous snapshot stays in force and a `default`-queue task retries the
    push (and the periodic sweep catches it if even the broker was down).
    """
    reason = (reason or "").strip()
    if not reason:
        raise KnowledgeError("Say why you publish (it goes into the version history).")
    with transaction.atomic():
        # Serialise publishers: two at once would race for the same number.
        numbers = list(
            KnowledgeVersion.objects.select_for_update()
            .order_by("-number")
            .values_list("number", flat=True)[:1]
        )
        number = (numbers[0] if numbers else 0) + 1
        snapshot, row_ids = snapshot_build_with_ids(version=number)
        # Serialise once: the checksum, the cache body and the row share it (20 MiB at 100k brands).
        # Same bytes as snapshot.to_json(), so the checksum equals snapshot.checksum().
        as_dict = snapshot_as_dict(snapshot)
        raw = json.dumps(as_dict, ensure_ascii=False, sort_keys=True)
        version = KnowledgeVersion.objects.create(
            number=number,
            # Hand PostgreSQL the JSON text rather than let the field serialise the dict again.
            snapshot=RawSQL("%s::jsonb", (raw,)) if connection.vendor == "postgresql" else as_dict,
            checksum=hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16],
            reason=reason,
            created_by=_user(actor),
            row_ids=row_ids,
        )
        version.snapshot = as_dict
        ChangeLog.objects.filter(status=ChangeLog.Status.PENDING).update(
            status=ChangeLog.Status.PUBLISHED, knowledge_version=version
        )
        # The queue follows the graph: the open tasks the knowledge check sent are checked again
        # against this version in the background; the plan recorded here is the preview's promise.
        from knowledge.reroute import reroute_job_create, reroute_job_dispatch, reroute_plan

        plan = reroute_plan(snapshot=snapshot, row_ids=row_ids, with_new_conflicts=False)
        job = reroute_job_create(version=version, planned_task_ids=plan.resolve)
        reroute_job_dispatch(job.pk)
    # After commit: a worker must never see a version the database does not have.
    if not snapshot_push(number=number, snapshot=snapshot, raw=raw):
        _schedule_push(number)
    version.refresh_from_db(fields=["activated_at"])
    return version


def _schedule_push(number: int) -> None:
    from django.conf import settings

    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        # In-process tasks would retry at once against the same dead cache; the sweep retries later.
        log.warning("entity cache down: knowledge v%s waits for the activation sweep", number)
        return
    from fusionreview.dispatch import task_publish
    from knowledge.tasks import knowledge_snapshot_push

    # The broker is often the same Redis: a failed send is logged, the periodic sweep pushes it.
    task_publish(knowledge_snapshot_push, args=[number], countdown=5)


def snapshot_push(*, number: int, snapshot: KnowledgeSnapshot | None = None, raw: str | None = None) -> bool:
    """Write one published version to the entity cache and mark it in force. Idempotent.

    A version older than one already in force is marked activated without moving the pointer.
    """
    if snapshot is None:
        row = KnowledgeVersion.objects.filter(number=number).first()
        if row is None:
            log.warning("knowledge v%s does not exist; nothing to push", number)
            return True
        snapshot = KnowledgeSnapshot.from_dict(row.snapshot)
    if not cache.snapshot_store(snapshot, raw=raw):
        return False
    KnowledgeVersion.objects.filter(number=number, activated_at__isnull=True).update(
        activated_at=timezone.now()
    )
    return True


def knowledge_activation_sweep() -> list[int]:
    """Push every published version the cache never got (after a cache or broker outage)."""
    pushed = []
    for number in (
        KnowledgeVersion.objects.filter(activated_at__isnull=True)
        .order_by("number")
        .values_list("number", flat=True)
    ):
        if snapshot_push(number=number):
            pushed.append(number)
    return pushed


@transaction.atomic
def knowledge_discard(*, actor: Any, reason: str = "") -> int:
    """Throw away the pending edits: the tables go back to the last published snapshot."""
    latest = knowledge_version_latest()
    if latest is None:
        raise KnowledgeError("Nothing was ever published, so there is nothing to go back to.")
    pending = ChangeLog.objects.filter(status=ChangeLog.Status.PENDING)
    count = pending.count()
    graph_restore_snapshot(
        snapshot=KnowledgeSnapshot.from_dict(latest.snapshot),
        row_ids=latest.row_ids,
        merges_since=latest.created_at,
    )
    pending.update(status=ChangeLog.Status.DISCARDED)
    entry = _log(
        actor=actor,
        action="discard",
        object_type="graph",
        object_id=str(latest.number),
        label=f"back to v{latest.number}",
        reason=reason,
        after={"discarded_changes": count},
    )
    ChangeLog.objects.filter(pk=entry.pk).update(status=ChangeLog.Status.DISCARDED)
    return count


def knowledge_version_restore(*, actor: Any, number: int, reason: str = "") -> KnowledgeVersion:
    """Bring back an earlier published version: import its snapshot into the tables, publish anew."""
    row = KnowledgeVersion.objects.filter(number=number).first()
    if row is None:
        raise KnowledgeError(f"There is no knowledge version {number}.")
    with transaction.atomic():
        graph_restore_snapshot(
            snapshot=KnowledgeSnapshot.from_dict(row.snapshot),
            row_ids=row.row_ids,
            merges_since=row.created_at,
        )
        _log(
            actor=actor,
            action="restore",
            object_type="graph",
            object_id=str(number),
            label=f"restore v{number}",
            reason=reason,
        )
    return knowledge_publish(actor=actor, reason=reason or f"restore of v{number}")


# ---- suggestions from review ----------------------------------------------------------------------


def _title_brand_prefix(title: str) -> str | None:
    from classifier.fusion.knowledge import _brand_prefix

    prefix = _brand_prefix(title or "")
    return prefix.strip() if prefix and len(prefix) <= ALIAS_MAX else None


def suggestions_refresh() -> dict[str, int]:
    """Derive pending suggestions from review decisions (approve/correct, not undone) and
    auto-accepted listings. Idempotent.

    - brand_category: the decision names a brand and a category the brand does not sell (at that
      node or any ancestor);
    - brand_alias: the title starts with a brand spelling that is neither the decided brand's
      name nor one of its aliases nor any other brand's.
    A gap already accepted or rejected is not suggested again; its evidence count is kept current.
    """
    from classifier.models import ReviewDecision

    parents = dict(Category.objects.values_list("id", "parent_id"))
    sells: dict[int, set[int]] = {}
    for brand_id, category_id in BrandCategory.objects.values_list("brand_id", "category_id"):
        sells.setdefault(brand_id, set()).add(category_id)
    known_names = {n.lower() for n in Brand.objects.values_list("name", flat=True)}
    known_names |= {a.lower() for a in BrandAlias.objects.values_list("alias", flat=True)}
    gaps: dict[str, dict[str, Any]] = {}
    decisions = (
        ReviewDecision.objects.filter(
            action__in=[ReviewDecision.Action.APPROVE, ReviewDecision.Action.CORRECT],
            brand__isnull=False,
            undone_by__isnull=True,
        )
        .select_related("listing")
        .order_by("id")
    )
    for decision in decisions.iterator(chunk_size=2000):
        if decision.category_id:
            chain, cur = set(), decision.category_id
            while cur is not None and cur not in chain:
                chain.add(cur)
                cur = parents.get(cur)
            if not chain & sells.get(decision.brand_id, set()):
                key = f"brand_category:{decision.brand_id}:{decision.category_id}"
                gap = gaps.setdefault(
                    key,
                    {
                        "kind": Suggestion.Kind.BRAND_CATEGORY,
                        "brand_id": decision.brand_id,
                        "category_id": decision.category_id,
                        "alias": "",
                        "listings": [],
                    },
                )
                gap["listings"].append(decision.listing_id)
        prefix = _title_brand_prefix(decision.listing.title)
        if prefix and prefix.lower() not in known_names:
            key = f"brand_alias:{decision.brand_id}:{prefix.lower()}"
            gap = gaps.setdefault(
                key,
                {
                    "kind": Suggestion.Kind.BRAND_ALIAS,
                    "brand_id": decision.brand_id,
                    "category_id": None,
                    "alias": prefix,
                    "listings": [],
                },
            )
            gap["listings"].append(decision.listing_id)
    # Auto-accepted listings are evidence too ("Puma sells Caps? seen 14 times"): the knowledge
    # check left them a hint, and ops decide whether the relation is real.
    from classifier.models import Listing

    accepted = Listing.objects.filter(
        status=Listing.Status.ACCEPTED, final_brand__isnull=False, final_category__isnull=False
    ).values_list("id", "final_brand_id", "final_category_id")
    for listing_id, brand_id, category_id in accepted.iterator(chunk_size=5000):
        chain, cur = set(), category_id
        while cur is not None and cur not in chain:
            chain.add(cur)
            cur = parents.get(cur)
        if not chain & sells.get(brand_id, set()):
            key = f"brand_category:{brand_id}:{category_id}"
            gap = gaps.setdefault(
                key,
                {
                    "kind": Suggestion.Kind.BRAND_CATEGORY,
                    "brand_id": brand_id,
                    "category_id": category_id,
                    "alias": "",
                    "listings": [],
                },
            )
            gap["listings"].append(listing_id)
    created = updated = 0
    with transaction.atomic():
        for key, gap in gaps.items():
            listings = list(dict.fromkeys(gap["listings"]))
            _, was_created = Suggestion.objects.update_or_create(
                key=key,
                defaults={
                    "kind": gap["kind"],
                    "brand_id": gap["brand_id"],
                    "category_id": gap["category_id"],
                    "alias": gap["alias"],
                    "evidence_count": len(listings),
                    "example_listing_ids": listings[:10],
                },
            )
            created += int(was_created)
            updated += int(not was_created)
        # Gaps closed meanwhile (someone added the alias or relation by hand) stop being pending.
        closed = (
            Suggestion.objects.filter(status=Suggestion.Status.PENDING)
            .exclude(key__in=list(gaps))
            .exclude(kind=Suggestion.Kind.BRAND_NEW)  # recorded by decisions, not derived here
            .delete()[0]
        )
        # a missing brand that exists now (added by hand) is no longer a gap
        for suggestion in Suggestion.objects.filter(
            status=Suggestion.Status.PENDING, kind=Suggestion.Kind.BRAND_NEW
        ):
            if known_names and suggestion.alias.lower() in known_names:
                suggestion.delete()
                closed += 1
    return {
        "created": created,
        "updated": updated,
        "closed": closed,
        "pending": Suggestion.objects.filter(status=Suggestion.Status.PENDING).count(),
    }


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


def suggestion_brand_gap_record(*, name: str, listing_id: int) -> Suggestion:
    """An auditor named a brand the graph lacks: a pending "missing brand" suggestion for ops
    (one per spelling, case-folded), with its evidence count and example listings."""
    name = name.strip()[:ALIAS_MAX]
    key = f"brand_new:{name.lower()}"
    with transaction.atomic():
        suggestion, _ = Suggestion.objects.select_for_update().get_or_create(
            key=key, defaults={"kind": Suggestion.Kind.BRAND_NEW, "alias": name}
        )
        examples = list(dict.fromkeys([*suggestion.example_listing_ids, listing_id]))
        Suggestion.objects.filter(pk=suggestion.pk).update(
            evidence_count=F("evidence_count") + 1, example_listing_ids=examples[:10]
        )
    suggestion.refresh_from_db()
    return suggestion


def suggestions_accept_bulk(*, actor: Any, min_evidence: int) -> dict[str, int]:
    """Accept every pending brand -> category suggestion backed by at least `min_evidence`
    decisions: each relation is created with that support, marked as learnt from decisions."""
    if min_evidence < 1:
        raise KnowledgeError("The threshold must be at least one decision.")
    accepted = 0
    for suggestion in Suggestion.objects.filter(
        status=Suggestion.Status.PENDING,
        kind=Suggestion.Kind.BRAND_CATEGORY,
        evidence_count__gte=min_evidence,
    ).order_by("-evidence_count", "id"):
        try:
            suggestion_accept(actor=actor, suggestion=suggestion)
            accepted += 1
        except KnowledgeError:
            continue  # decided meanwhile by someone else
    return {"accepted": accepted}


@transaction.atomic
def suggestion_accept(*, actor: Any, suggestion: Suggestion) -> Suggestion:
    suggestion = Suggestion.objects.select_for_update().get(pk=suggestion.pk)
    if suggestion.status != Suggestion.Status.PENDING:
        raise KnowledgeError(f"This suggestion was already {suggestion.get_status_display().lower()}.")
    why = f"accepted suggestion: {suggestion.evidence_count} review decisions"
    if suggestion.kind == Suggestion.Kind.BRAND_ALIAS:
        brand_alias_add(actor=actor, brand=suggestion.brand, alias=suggestion.alias, reason=why)
    elif suggestion.kind == Suggestion.Kind.BRAND_NEW:
        if Brand.objects.filter(name__iexact=suggestion.alias).exists():
            raise KnowledgeError(f"The brand “{suggestion.alias}” exists already.")
        brand = brand_create(actor=actor, name=suggestion.alias, reason=why)
        Suggestion.objects.filter(pk=suggestion.pk).update(brand=brand)
    else:
        brand_category_add(actor=actor, brand=suggestion.brand, category=suggestion.category, reason=why)
        # the decisions that revealed the gap are the relation's evidence
        BrandCategory.objects.filter(brand=suggestion.brand, category=suggestion.category).update(
            support=suggestion.evidence_count, source=BrandCategory.Source.DECISIONS
        )
    suggestion.status = Suggestion.Status.ACCEPTED
    suggestion.decided_by = _user(actor)
    suggestion.decided_at = timezone.now()
    suggestion.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
    return suggestion


@transaction.atomic
def suggestion_reject(*, actor: Any, suggestion: Suggestion) -> Suggestion:
    updated = Suggestion.objects.filter(pk=suggestion.pk, status=Suggestion.Status.PENDING).update(
        status=Suggestion.Status.REJECTED, decided_by=_user(actor), decided_at=timezone.now()
    )
    if not updated:
        raise KnowledgeError("This suggestion was already decided.")
    suggestion.refresh_from_db()
    return suggestion
