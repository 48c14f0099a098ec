"""Make the tables say exactly what a published snapshot says (discard and version restore)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from django.db import IntegrityError, transaction
from django.db.models import F, ProtectedError

from classifier.fusion.knowledge import CategoryNode, KnowledgeSnapshot
from knowledge.changelog import KnowledgeError
from knowledge.graph.rules import NAME_MAX
from knowledge.graph.selectors import category_path_labels
from knowledge.models import (
    Brand,
    BrandAlias,
    BrandCategory,
    Category,
    CategoryAlias,
    CategoryAttribute,
    ChangeLog,
    NoiseTerm,
)
from knowledge.ports import RowIds, references

AliasRow = TypeVar("AliasRow", CategoryAlias, BrandAlias)


def _sync_rows(
    model: type[AliasRow],
    *,
    current: dict[tuple[int, str], int],
    wanted: Iterable[tuple[int, str]],
    fields: tuple[str, str],
) -> int:
    """Make `model`'s rows equal `wanted` (tuples of `fields`): delete the extra, create the missing.

    `current` maps each existing row's tuple to its id. A diff, not delete-all-and-recreate:
    at 100,000 brands almost nothing changes between a snapshot and the tables.
    """
    wanted_set = set(wanted)
    extra = [pk for key, pk in current.items() if key not in wanted_set]
    for start in range(0, len(extra), 5000):
        model._default_manager.filter(pk__in=extra[start : start + 5000]).delete()
    missing = [key for key in wanted_set if key not in current]
    model._default_manager.bulk_create(
        [model(**dict(zip(fields, key, strict=True))) for key in missing], batch_size=5000
    )
    return len(extra) + len(missing)


@dataclass
class _Row:
    """A category row as the restore compares it."""

    name: str
    parent_id: int | None
    description: str
    active: bool
    version: int

    def differs(self, node: CategoryNode, parent_pk: int | None) -> bool:
        return (self.name, self.parent_id, self.description, self.active) != (
            node.name,
            parent_pk,
            node.description,
            True,
        )


def _restore_categories(
    snapshot: KnowledgeSnapshot, cat_ids: dict[str, int]
) -> tuple[dict[str, int], set[int]]:
    """Category rows for every snapshot node, level by level, reusing ids; returns (label -> id, kept ids)."""
    rows = {
        pk: _Row(name, parent_id, description, active, version)
        for pk, name, parent_id, description, active, version in Category.objects.values_list(
            "id", "name", "parent_id", "description", "is_active", "version"
        )
    }
    slot = {(r.parent_id, r.name.lower()): pk for pk, r in rows.items()}  # (parent id, lower name) -> id
    by_label: dict[str, int] = {}
    kept: set[int] = set()
    levels: dict[int, list[CategoryNode]] = {}
    for node in snapshot.categories:
        levels.setdefault(len(snapshot.path_of(node.id)), []).append(node)
    for depth in sorted(levels):
        changed: dict[int, _Row] = {}
        new: list[Category] = []
        new_labels: list[str] = []
        for node in levels[depth]:
            parent_pk = by_label[node.parent_id] if node.parent_id else None
            key = (parent_pk, node.name.lower())
            pk = cat_ids.get(node.id)
            if pk is None or pk not in rows or pk in kept:
                pk = slot.get(key)
                if pk in kept:
                    pk = None
            holder = slot.get(key)
            if holder is not None and holder != pk:
                if holder in kept:
                    raise KnowledgeError(f"The snapshot names {node.id!r} twice; it cannot be restored.")
                # Something created since took the name: rename it out of the way (dropped below).
                renamed = f"{rows[holder].name} (removed {holder})"[:NAME_MAX]
                Category.objects.filter(pk=holder).update(name=renamed)
                rows[holder].name = renamed
                del slot[key]
            if pk is None:
                new.append(Category(name=node.name, parent_id=parent_pk, description=node.description))
                new_labels.append(node.id)
                continue
            row = rows[pk]
            if row.differs(node, parent_pk):
                slot.pop((row.parent_id, row.name.lower()), None)
                changed[pk] = _Row(node.name, parent_pk, node.description, True, row.version + 1)
                rows[pk] = changed[pk]
            slot[key] = pk
            by_label[node.id] = pk
            kept.add(pk)
        # One row at a time for the (few) changed ones: a bulk UPDATE could trip the unique
        # (parent, name) rule mid-statement when two nodes swap places.
        for pk, row in changed.items():
            Category.objects.filter(pk=pk).update(
                name=row.name,
                parent_id=row.parent_id,
                description=row.description,
                is_active=row.active,
                version=row.version,
            )
        for obj, label in zip(Category.objects.bulk_create(new, batch_size=5000), new_labels, strict=True):
            by_label[label] = obj.pk
            kept.add(obj.pk)
            slot[(obj.parent_id, obj.name.lower())] = obj.pk
            rows[obj.pk] = _Row(obj.name, obj.parent_id, obj.description, True, obj.version)
    return by_label, kept


def _drop_stale_categories(kept: set[int]) -> tuple[int, int]:
    """Drop what the snapshot does not have: all at once when nothing protects them, else leaves
    first, deactivating the ones other rows still use. Returns (removed, deactivated)."""
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
    return removed, deactivated


def _restore_brands(snapshot: KnowledgeSnapshot, brand_ids: dict[str, int]) -> dict[str, int]:
    """Brands by id, else by name; absent ones deactivated (listings may still name them).
    Returns snapshot brand id -> row id."""
    brands = {pk: (name, active) for pk, name, active in Brand.objects.values_list("id", "name", "is_active")}
    by_name = {name.lower(): pk for pk, (name, _active) in brands.items()}
    brand_pk: dict[str, int] = {}
    new_brands: list[tuple[str, Brand]] = []
    for entry in snapshot.brands:
        pk = brand_ids.get(entry.id) or (int(entry.id) if entry.id.isdigit() else None)
        if pk is None or pk not in brands:
            pk = by_name.get(entry.name.lower())
        if pk is None:
            new_brands.append((entry.id, Brand(name=entry.name)))
            continue
        if brands[pk] != (entry.name, True):
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
    return brand_pk


def _restore_relations(
    snapshot: KnowledgeSnapshot, brand_pk: dict[str, int], by_label: dict[str, int]
) -> None:
    """Relations with their support; a kept relation keeps its source."""
    wanted: dict[tuple[int, int], int] = {}
    for e in snapshot.brands:
        for index, c in enumerate(e.category_ids):
            if c in by_label:
                wanted.setdefault((brand_pk[e.id], by_label[c]), max(0, e.support_of(index) or 0))
    current = {
        (b, c): (pk, support)
        for pk, b, c, support in BrandCategory.objects.values_list("id", "brand_id", "category_id", "support")
    }
    extra = [pk for key, (pk, _) in current.items() if key not in wanted]
    for start in range(0, len(extra), 5000):
        BrandCategory.objects.filter(pk__in=extra[start : start + 5000]).delete()
    for key, support in wanted.items():
        if key in current and current[key][1] != support:
            BrandCategory.objects.filter(pk=current[key][0]).update(support=support)
    BrandCategory.objects.bulk_create(
        [
            BrandCategory(brand_id=b, category_id=c, support=support, source=BrandCategory.Source.IMPORT)
            for (b, c), support in wanted.items()
            if (b, c) not in current
        ],
        batch_size=5000,
    )


def _restore_rules_and_noise(snapshot: KnowledgeSnapshot, by_label: dict[str, int]) -> None:
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


@transaction.atomic
def graph_restore_snapshot(
    *,
    snapshot: KnowledgeSnapshot,
    row_ids: RowIds | None = None,
    merges_since: datetime | Literal[False] | None = False,
) -> dict[str, int]:
    """Make the tables say exactly what `snapshot` says (used by discard and version restore).

    Category and brand rows keep their ids where `row_ids` knows them, so moves and renames are
    undone in place and listings keep pointing at them; nodes absent from the snapshot are deleted
    when nothing uses them and deactivated otherwise; absent brands are deactivated. Aliases,
    relations (with their support), rules and noise terms are diffed against the snapshot. Rows that
    category merges made after `merges_since` (None: any time; False: none) re-pointed (listings,
    predictions, review tasks and decisions) go back to the category the snapshot has again.
    """
    row_ids = row_ids or {}
    by_label, kept = _restore_categories(snapshot, dict(row_ids.get("categories", {})))
    removed, deactivated = _drop_stale_categories(kept)
    _sync_rows(
        CategoryAlias,
        current={(c, a): pk for pk, c, a in CategoryAlias.objects.values_list("id", "category_id", "alias")},
        wanted=[(by_label[n.id], a) for n in snapshot.categories for a in dict.fromkeys(n.aliases)],
        fields=("category_id", "alias"),
    )
    brand_pk = _restore_brands(snapshot, dict(row_ids.get("brands", {})))
    # Aliases are unique across brands: remove before adding, which _sync_rows does.
    _sync_rows(
        BrandAlias,
        current={(b, a): pk for pk, b, a in BrandAlias.objects.values_list("id", "brand_id", "alias")},
        wanted=[(brand_pk[e.id], a) for e in snapshot.brands for a in dict.fromkeys(e.aliases)],
        fields=("brand_id", "alias"),
    )
    _restore_relations(snapshot, brand_pk, by_label)
    _restore_rules_and_noise(snapshot, by_label)
    moved_back = _merges_unwind(after=merges_since, by_label=by_label) if merges_since is not False else 0
    return {
        "categories": len(kept),
        "removed": removed,
        "deactivated": deactivated,
        "brands": len(brand_pk),
        "moved_back": moved_back,
    }


def _merges_unwind(*, after: datetime | None, by_label: dict[str, int]) -> int:
    """Put back what category merges made since `after` moved, where the snapshot being restored
    has the merged-away category again (it was re-created under its label).

    Only rows that still point at the merge target move back: a later decision stays.
    """
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
        moved_back += references().category_repoint_back(moved_ids=ids, from_id=target_pk, to_id=source_pk)
    return moved_back
