"""Reads of the knowledge graph: lookups, the snapshot build, the editor's lists and panels."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Count, F, Func, IntegerField, Q, QuerySet, Value
from django.db.models.functions import Lower
from django.utils import timezone

from classifier.fusion.knowledge import (
    AttributeRule,
    BrandEntry,
    CategoryNode,
    KnowledgeSnapshot,
)
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


def category_path_labels(*, active_only: bool = False) -> dict[int, str]:
    """Every category's snapshot id (its path label), computed in one query."""
    rows = {
        pk: (name, parent_id, active)
        for pk, name, parent_id, active in Category.objects.values_list(
            "id", "name", "parent_id", "is_active"
        )
    }
    labels: dict[int, str] = {}

    def label(pk: int) -> str:
        # Iterative walk: a 10,000-node tree can be deeper than Python's recursion limit.
        chain: list[int] = []
        cur: int | None = pk
        seen: set[int] = set()
        while cur is not None and cur not in labels and cur not in seen:
            seen.add(cur)
            chain.append(cur)
            cur = rows[cur][1]
        prefix = labels.get(cur, "") if cur is not None else ""
        for node in reversed(chain):
            name = rows[node][0]
            prefix = f"{prefix} > {name}" if prefix else name
            labels[node] = prefix
        return labels[pk]

    for pk in rows:
        label(pk)
    if active_only:
        # A node is live only when it and all its ancestors are active.
        live: dict[int, bool] = {}

        def is_live(pk: int) -> bool:
            if pk not in live:
                _name, parent_id, active = rows[pk]
                live[pk] = active and (parent_id is None or is_live(parent_id))
            return live[pk]

        return {pk: lab for pk, lab in labels.items() if is_live(pk)}
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
    """The newest published version; its snapshot (20 MiB at 100k brands) loads only when read."""
    return KnowledgeVersion.objects.defer("snapshot", "row_ids").order_by("-number").first()


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


def snapshot_as_dict(snapshot: KnowledgeSnapshot) -> dict[str, Any]:
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


# ---- editor lists -------------------------------------------------------------------------------


def category_search(*, query: str, limit: int = 50) -> list[tuple[Category, str]]:
    """Categories whose name or alias contains `query`, with their path labels."""
    labels = category_path_labels()
    qs = Category.objects.filter(Q(name__icontains=query) | Q(aliases__alias__icontains=query)).distinct()
    return [(c, labels[c.pk]) for c in qs.order_by("name")[:limit]]


@dataclass
class TreeNode:
    category: Category
    label: str
    children: list[TreeNode] = field(default_factory=list)
    listing_count: int = 0


def category_tree() -> list[TreeNode]:
    """The whole tree, roots first, children sorted by name (two queries)."""
    from classifier.models import Listing

    labels = category_path_labels()
    counts = dict(
        Listing.objects.filter(final_category__isnull=False)
        .values_list("final_category")
        .annotate(n=Count("id"))
        .values_list("final_category", "n")
    )
    nodes = {
        c.pk: TreeNode(category=c, label=labels[c.pk], listing_count=counts.get(c.pk, 0))
        for c in Category.objects.order_by("name")
    }
    roots: list[TreeNode] = []
    for node in nodes.values():
        parent_id = node.category.parent_id
        (nodes[parent_id].children if parent_id in nodes else roots).append(node)
    return roots


def category_choices() -> list[tuple[int, str]]:
    """(id, path label) of every active category, sorted by label (for move/merge pickers)."""
    labels = category_path_labels(active_only=True)
    return sorted(labels.items(), key=lambda item: item[1].lower())


def brand_search(*, query: str = "", limit: int = 100) -> QuerySet[Brand]:
    qs = Brand.objects.annotate(n_categories=Count("brandcategory", distinct=True))
    if query:
        qs = qs.filter(Q(name__icontains=query) | Q(aliases__alias__icontains=query)).distinct()
    return qs.order_by("name")[:limit]


def brand_detail(*, brand: Brand, listings: int = 20) -> dict[str, Any]:
    from classifier.models import Listing

    labels = category_path_labels()
    categories = sorted(
        (
            (bc.category_id, labels.get(bc.category_id, "?"))
            for bc in BrandCategory.objects.filter(brand=brand)
        ),
        key=lambda item: item[1],
    )
    recent = (
        Listing.objects.filter(final_brand=brand)
        .select_related("final_category")
        .order_by("-created_at")[:listings]
    )
    return {
        "categories": categories,
        "aliases": list(brand.aliases.order_by("alias").values_list("alias", flat=True)),
        "recent_listings": [(listing, labels.get(listing.final_category_id, "")) for listing in recent],
        "listing_count": Listing.objects.filter(final_brand=brand).count(),
    }


def graph_problems() -> list[dict[str, Any]]:
    """Things ops should fix: one name under two parents, empty brands, inactive nodes still used."""
    labels = category_path_labels()
    problems: list[dict[str, Any]] = []
    by_name: dict[str, list[int]] = defaultdict(list)
    leaf_ids = set(Category.objects.filter(children__isnull=True).values_list("id", flat=True))
    for pk, name in Category.objects.filter(is_active=True).values_list("id", "name"):
        by_name[name.lower()].append(pk)
    for ids in by_name.values():
        if len(ids) > 1 and all(pk in leaf_ids for pk in ids):
            problems.append(
                {
                    "code": "duplicate_category_name",
                    "message": "The same category name sits under several parents: "
                    + "; ".join(sorted(labels[pk] for pk in ids)),
                    "category_ids": sorted(ids),
                    "categories": sorted(((pk, labels[pk]) for pk in ids), key=lambda item: item[1]),
                }
            )
    for brand in Brand.objects.filter(is_active=True, brandcategory__isnull=True).order_by("name")[:50]:
        problems.append(
            {
                "code": "brand_without_categories",
                "message": f"Brand {brand.name!r} sells no category: every prediction of it is a conflict.",
                "brand_id": brand.pk,
            }
        )
    return problems


def changes_pending() -> QuerySet[ChangeLog]:
    return ChangeLog.objects.filter(status=ChangeLog.Status.PENDING).select_related("actor")


def change_last_for(*, object_type: str, object_id: int | str) -> ChangeLog | None:
    return (
        ChangeLog.objects.filter(object_type=object_type, object_id=str(object_id))
        .select_related("actor")
        .order_by("-created_at", "-id")
        .first()
    )


def suggestions_pending() -> QuerySet[Suggestion]:
    # The category's ancestors too: the list shows each category's path (a parent walk per row otherwise).
    return Suggestion.objects.filter(status=Suggestion.Status.PENDING).select_related(
        "brand", "category__parent__parent__parent"
    )


# ---- impact preview -----------------------------------------------------------------------------


def brand_category_conflict(snapshot: KnowledgeSnapshot, *, brand_name: str, category_id: str) -> bool:
    """True when the snapshot knows the brand, it sells something, and nothing covering `category_id`.

    A brand that sells a node sells every node below it, so the check walks the predicted
    category's ancestors. An unknown brand or category is no conflict here (nothing to contradict).
    """
    if not brand_name or not category_id or not snapshot.has_category(category_id):
        return False
    brand = snapshot.find_brand(brand_name)
    if brand is None or not brand.category_ids:
        return False
    covering = set(snapshot.ancestors(category_id, include_self=True))
    return not covering.intersection(brand.category_ids)


def conflict_checker(snapshot: KnowledgeSnapshot):
    """`check(title, category_id) -> [conflict messages]` with the fusion model's own verification.

    Entities are re-extracted from the title with the snapshot's gazetteer (a new alias counts),
    then `classifier.fusion.verification.verify` runs; only "conflict" findings count (they route
    to review). Falls back to the brand-sells-category check alone if the fusion package lacks it.
    """
    try:
        from classifier.fusion.text import EntityExtractor
        from classifier.fusion.verification import verify
    except ImportError:  # pragma: no cover - older fusion package
        return lambda title, category_id: []

    extractor = EntityExtractor(snapshot)

    def check(title: str, category_id: str) -> list[str]:
        if not category_id:
            return []
        findings = verify(snapshot, category_id, extractor.extract(title or ""))
        return [f["message"] for f in findings if f.get("severity") == "conflict"]

    return check


@dataclass
class ImpactPreview:
    window_days: int
    limit: int
    examined: int = 0
    label_changed: int = 0
    category_removed: int = 0
    new_conflicts: int = 0
    resolved_conflicts: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    pending_changes: int = 0
    published_version: int = 0
    affected: int = 0  # distinct predictions with at least one effect
    # What publishing does to the review queue (`knowledge.reroute.ReroutePlan`): the open
    # knowledge-routed tasks it resolves (the publish's re-route job resolves exactly these) and
    # the open or auto-accepted items it would newly hold back.
    reroute: Any = None


def impact_preview(*, days: int = 7, limit: int = 5000, max_examples: int = 25) -> ImpactPreview:
    """How the pending (unpublished) edits would change the recent predictions.

    For each of the latest `limit` predictions of the last `days` days, compares the published
    snapshot with the candidate built from the tables: the category path the prediction points
    at (merges, moves and renames change it), whether that category still exists, and the
    knowledge check (the fusion model's verification: brand sells category, title type,
    attributes) — a conflict appearing or going away.
    """
    from classifier.models import Prediction

    latest = knowledge_version_latest()
    published = KnowledgeSnapshot.from_dict(latest.snapshot) if latest else None
    candidate = snapshot_build_from_db(version=(latest.number if latest else 0) + 1)
    check_old = conflict_checker(published) if published else (lambda title, category_id: [])
    check_new = conflict_checker(candidate)
    live_labels = category_path_labels(active_only=True)
    since = timezone.now() - timedelta(days=days)
    rows = (
        Prediction.objects.filter(created_at__gte=since, is_shadow=False)
        .order_by("-created_at")
        .values_list("id", "listing_id", "listing__title", "category_id", "category_label")[:limit]
    )
    preview = ImpactPreview(
        window_days=days,
        limit=limit,
        pending_changes=changes_pending().count(),
        published_version=latest.number if latest else 0,
    )
    for pred_id, listing_id, title, category_id, old_label in rows:
        preview.examined += 1
        new_label = live_labels.get(category_id) if category_id else None
        effects: list[str] = []
        if new_label is None:
            preview.category_removed += 1
            effects.append(f"category {old_label} removed")
        elif new_label != old_label:
            preview.label_changed += 1
            effects.append(f"label {old_label} → {new_label}")
        was = (
            check_old(title, old_label) if published is not None and published.has_category(old_label) else []
        )
        now = check_new(title, new_label) if new_label else []
        if now and not was:
            preview.new_conflicts += 1
            effects.append("new conflict: " + "; ".join(now))
        elif was and not now:
            preview.resolved_conflicts += 1
            effects.append("conflict resolved: " + "; ".join(was))
        preview.affected += bool(effects)
        if effects and len(preview.examples) < max_examples:
            preview.examples.append({"prediction_id": pred_id, "listing_id": listing_id, "effects": effects})
    from knowledge.reroute import reroute_plan

    preview.reroute = reroute_plan(
        snapshot=candidate, new_conflict_window_days=days, new_conflict_limit=limit
    )
    return preview


# ---- paged search (the editor's brand and category lists) ---------------------------------------

# The largest code point: `lower(name) < prefix + _TOP` bounds every string starting with `prefix`.
_TOP = "\U0010ffff"


@dataclass
class Page:
    """One page of a search: the rows, the total number of matches and how they matched."""

    rows: list[Any]
    total: int
    number: int
    size: int
    match: str = "all"  # "all" (no query), "prefix" (name/alias starts with it) or "contains"

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def previous_number(self) -> int:
        return self.number - 1

    @property
    def next_number(self) -> int:
        return self.number + 1

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return min(self.total, self.number * self.size)


@dataclass
class BrandRow:
    id: int
    name: str
    is_active: bool
    version: int = 1
    aliases: list[str] = field(default_factory=list)
    categories: list[tuple[int, str]] = field(default_factory=list)  # (id, label) sorted by label
    full_categories: list[tuple[int, str]] = field(default_factory=list)  # (id, full path)

    @property
    def pk(self) -> int:
        return self.id

    @property
    def n_categories(self) -> int:
        return len(self.categories)


def _page_bounds(number: int, size: int, total: int) -> int:
    """The page number clamped to the pages that exist (a stale link to page 900 shows the last)."""
    last = max(1, -(-total // size))
    return max(1, min(number, last))


def category_display_labels(paths: dict[int, str] | None = None) -> dict[int, str]:
    """Every category's label for lists: its name, or its full path when another node shares the name.

    "Sandals" under Men and under Women are shown as "Footwear > Men > Sandals" and
    "Footwear > Women > Sandals"; a name that occurs once stays short.
    """
    if paths is None:
        paths = category_path_labels()  # one query
    names = {pk: label.rsplit(" > ", 1)[-1] for pk, label in paths.items()}  # '>' is refused in names
    counts: dict[str, int] = defaultdict(int)
    for name in names.values():
        counts[name.lower()] += 1
    return {pk: (paths[pk] if counts[name.lower()] > 1 else name) for pk, name in names.items()}


def brand_page(*, query: str = "", number: int = 1, size: int = 50) -> Page:
    """A page of brands ordered by name, optionally those whose name or an alias starts with `query`.

    Index-friendly at any size: the prefix match is a range on lower(name) / lower(alias), which
    the unique indexes on those expressions serve, and the count runs on the same ranges. Only
    when nothing starts with the query does it fall back to a substring match (a scan), so a
    typed fragment from the middle of a name still finds something. Five queries whatever the
    table size: count, page, aliases, brand categories, category names.
    """
    q = query.strip().lower()
    columns = ("id", "lname", "name", "is_active", "version")
    match = "all"
    if not q:
        ids_qs = Brand.objects.annotate(lname=Lower("name")).values_list(*columns)
        total = Brand.objects.count()
    else:
        match = "prefix"
        by_name = (
            Brand.objects.annotate(lname=Lower("name"))
            .filter(lname__gte=q, lname__lt=q + _TOP, lname__startswith=q)
            .values_list(*columns)
            .order_by()  # no ORDER BY inside a UNION part (SQLite refuses it; the page orders)
        )
        by_alias = (
            BrandAlias.objects.annotate(lalias=Lower("alias"))
            .filter(lalias__gte=q, lalias__lt=q + _TOP, lalias__startswith=q)
            .annotate(id_=F("brand_id"), lname=Lower("brand__name"))
            .values_list("id_", "lname", "brand__name", "brand__is_active", "brand__version")
            .order_by()
        )
        ids_qs = by_name.union(by_alias)
        total = ids_qs.count()
        if total == 0:
            match = "contains"
            alias_hits = BrandAlias.objects.filter(alias__icontains=q).values("brand_id")
            ids_qs = (
                Brand.objects.annotate(lname=Lower("name"))
                .filter(Q(name__icontains=q) | Q(pk__in=alias_hits))
                .values_list(*columns)
            )
            total = ids_qs.count()
    number = _page_bounds(number, size, total)
    start = (number - 1) * size
    page_rows = list(ids_qs.order_by("lname", "id")[start : start + size]) if total else []
    rows = [
        BrandRow(id=pk, name=name, is_active=active, version=version)
        for pk, _lname, name, active, version in page_rows
    ]
    by_id = {row.id: row for row in rows}
    if by_id:
        for brand_id, alias in (
            BrandAlias.objects.filter(brand_id__in=by_id).order_by("alias").values_list("brand_id", "alias")
        ):
            by_id[brand_id].aliases.append(alias)
        sold = list(BrandCategory.objects.filter(brand_id__in=by_id).values_list("brand_id", "category_id"))
        if sold:
            paths = category_path_labels()
            labels = category_display_labels(paths)
            for brand_id, cat_id in sold:
                by_id[brand_id].categories.append((cat_id, labels.get(cat_id, "?")))
                by_id[brand_id].full_categories.append((cat_id, paths.get(cat_id, "?")))
            for row in rows:
                row.categories.sort(key=lambda item: item[1].lower())
                row.full_categories.sort(key=lambda item: item[1].lower())
    return Page(rows=rows, total=total, number=number, size=size, match=match)


def category_page(*, query: str, number: int = 1, size: int = 50) -> Page:
    """A page of categories whose name or an alias contains `query`, as (category, full path) rows.

    The tree has thousands of nodes at most (not brands' tens of thousands), so a substring match
    is fine here; results are ordered by path so twins under different parents sit together.
    """
    q = query.strip()
    ids = list(
        Category.objects.filter(Q(name__icontains=q) | Q(aliases__alias__icontains=q))
        .values_list("id", flat=True)
        .distinct()
    )
    labels = category_path_labels()
    ordered = sorted(ids, key=lambda pk: labels[pk].lower())
    total = len(ordered)
    number = _page_bounds(number, size, total)
    start = (number - 1) * size
    chunk = ordered[start : start + size]
    cats = Category.objects.in_bulk(chunk)
    rows = [(cats[pk], labels[pk]) for pk in chunk]
    return Page(rows=rows, total=total, number=number, size=size, match="contains")


# ---- version diff -------------------------------------------------------------------------------


@dataclass
class DiffSection:
    """What changed in one kind of entry between two snapshots (each list capped at `limit` rows)."""

    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    n_added: int = 0
    n_removed: int = 0
    n_changed: int = 0

    @property
    def empty(self) -> bool:
        return not (self.n_added or self.n_removed or self.n_changed)

    def add(self, kind: str, row: dict[str, Any], limit: int) -> None:
        setattr(self, f"n_{kind}", getattr(self, f"n_{kind}") + 1)
        rows = getattr(self, kind)
        if len(rows) < limit:
            rows.append(row)


@dataclass
class SnapshotDiff:
    categories: DiffSection
    brands: DiffSection
    rules: DiffSection
    noise_terms: DiffSection

    @property
    def empty(self) -> bool:
        return all(s.empty for s in (self.categories, self.brands, self.rules, self.noise_terms))


def _set_change(old: Any, new: Any) -> tuple[list[str], list[str]]:
    before, after = list(old or ()), list(new or ())
    return [x for x in after if x not in before], [x for x in before if x not in after]


def snapshot_diff(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    old_row_ids: dict[str, Any] | None = None,
    new_row_ids: dict[str, Any] | None = None,
    limit: int = 500,
) -> SnapshotDiff:
    """The difference between two snapshot dicts, entry by entry (pure: no database).

    Categories are keyed by their path; with the versions' row-id maps a node whose path changed
    (renamed or moved) is one "changed" row instead of a removal plus an addition. Brands are keyed
    by id; a change lists the name, aliases and categories added and removed.
    """
    old_row_ids, new_row_ids = old_row_ids or {}, new_row_ids or {}
    cats = DiffSection()
    old_cats = {c["id"]: c for c in old.get("categories", ())}
    new_cats = {c["id"]: c for c in new.get("categories", ())}
    old_cat_pk = old_row_ids.get("categories", {})
    new_pk_label = {pk: label for label, pk in new_row_ids.get("categories", {}).items()}
    moved_to: dict[str, str] = {}
    for label in old_cats.keys() - new_cats.keys():
        target = new_pk_label.get(old_cat_pk.get(label))
        if target and target in new_cats and target not in old_cats:
            moved_to[label] = target
    for label in sorted(old_cats.keys() - new_cats.keys(), key=str.lower):
        if label not in moved_to:
            cats.add("removed", {"id": label, "aliases": old_cats[label].get("aliases", [])}, limit)
    arrived = set(moved_to.values())
    for label in sorted(new_cats.keys() - old_cats.keys(), key=str.lower):
        if label not in arrived:
            cats.add("added", {"id": label, "aliases": new_cats[label].get("aliases", [])}, limit)
    pairs = [(label, label) for label in old_cats.keys() & new_cats.keys()] + list(moved_to.items())
    for before_id, after_id in sorted(pairs, key=lambda p: p[1].lower()):
        a, b = old_cats[before_id], new_cats[after_id]
        aliases_added, aliases_removed = _set_change(a.get("aliases"), b.get("aliases"))
        row: dict[str, Any] = {"id": after_id, "notes": []}
        if before_id != after_id:
            row["notes"].append(f"was {before_id}")
        if aliases_added:
            row["notes"].append("aliases added: " + ", ".join(aliases_added))
        if aliases_removed:
            row["notes"].append("aliases removed: " + ", ".join(aliases_removed))
        if (a.get("description") or "") != (b.get("description") or ""):
            row["notes"].append("description changed")
        if row["notes"]:
            cats.add("changed", row, limit)

    brands = DiffSection()
    old_brands = {b["id"]: b for b in old.get("brands", ())}
    new_brands = {b["id"]: b for b in new.get("brands", ())}
    for key in sorted(old_brands.keys() - new_brands.keys(), key=lambda k: old_brands[k]["name"].lower()):
        brands.add("removed", {"id": key, "name": old_brands[key]["name"]}, limit)
    for key in sorted(new_brands.keys() - old_brands.keys(), key=lambda k: new_brands[k]["name"].lower()):
        b = new_brands[key]
        brands.add(
            "added",
            {
                "id": key,
                "name": b["name"],
                "aliases": b.get("aliases", []),
                "categories": b.get("category_ids", []),
            },
            limit,
        )
    for key in sorted(old_brands.keys() & new_brands.keys(), key=lambda k: new_brands[k]["name"].lower()):
        a, b = old_brands[key], new_brands[key]
        notes: list[str] = []
        if a["name"] != b["name"]:
            notes.append(f"renamed from {a['name']}")
        aliases_added, aliases_removed = _set_change(a.get("aliases"), b.get("aliases"))
        cats_added, cats_removed = _set_change(a.get("category_ids"), b.get("category_ids"))
        if aliases_added:
            notes.append("aliases added: " + ", ".join(aliases_added))
        if aliases_removed:
            notes.append("aliases removed: " + ", ".join(aliases_removed))
        if cats_added:
            notes.append("now sells: " + "; ".join(cats_added))
        if cats_removed:
            notes.append("no longer sells: " + "; ".join(cats_removed))
        if notes:
            brands.add("changed", {"id": key, "name": b["name"], "notes": notes}, limit)

    rules = DiffSection()

    def rule_key(r: dict[str, Any]) -> tuple[str, str]:
        return (r["category_id"], r["attribute"].lower())

    def rule_text(r: dict[str, Any]) -> str:
        kind = "required" if r.get("required") else "excluded" if r.get("excluded") else "allowed"
        values = ", ".join(r.get("allowed_values") or ()) or "any value"
        return f"{kind}: {values}"

    old_rules = {rule_key(r): r for r in old.get("attribute_rules", ())}
    new_rules = {rule_key(r): r for r in new.get("attribute_rules", ())}
    for key in sorted(old_rules.keys() - new_rules.keys()):
        r = old_rules[key]
        rules.add("removed", {"id": f"{r['category_id']} · {r['attribute']}", "text": rule_text(r)}, limit)
    for key in sorted(new_rules.keys() - old_rules.keys()):
        r = new_rules[key]
        rules.add("added", {"id": f"{r['category_id']} · {r['attribute']}", "text": rule_text(r)}, limit)
    for key in sorted(old_rules.keys() & new_rules.keys()):
        before, after = rule_text(old_rules[key]), rule_text(new_rules[key])
        if before != after:
            r = new_rules[key]
            rules.add(
                "changed",
                {"id": f"{r['category_id']} · {r['attribute']}", "notes": [f"{before} → {after}"]},
                limit,
            )

    noise = DiffSection()
    old_noise, new_noise = set(old.get("noise_terms", ())), set(new.get("noise_terms", ()))
    for term in sorted(new_noise - old_noise):
        noise.add("added", {"id": term}, limit)
    for term in sorted(old_noise - new_noise):
        noise.add("removed", {"id": term}, limit)
    return SnapshotDiff(categories=cats, brands=brands, rules=rules, noise_terms=noise)


@dataclass
class VersionComparison:
    version: KnowledgeVersion
    base: KnowledgeVersion | None
    diff: SnapshotDiff
    changes: list[ChangeLog]
    counts: dict[str, int]


# The key each snapshot section's entries are matched by (SQL over one jsonb array element `e`).
_SECTION_KEYS = {
    "brands": "e->>'id'",
    "categories": "e->>'id'",
    "attribute_rules": "(e->>'category_id') || '|' || lower(e->>'attribute')",
    "noise_terms": "e #>> '{}'",
}


def _changed_entries_sql(old_pk: int | None, new_pk: int) -> dict[str, tuple[list[Any], list[Any]]]:
    """Per section, the entries that differ between two versions' snapshots, compared in PostgreSQL.

    A 50,000-brand snapshot is ~5 MB of JSON: decoding two of them in Python costs seconds, while
    PostgreSQL matches the entries by key and returns only the (few) differing ones.
    """
    from django.db import connection

    out: dict[str, tuple[list[Any], list[Any]]] = {}
    with connection.cursor() as cursor:
        for section, key in _SECTION_KEYS.items():
            side = (
                f"SELECT {key} AS k, e FROM knowledge_knowledgeversion v "
                f"CROSS JOIN LATERAL jsonb_array_elements(COALESCE(v.snapshot->'{section}', '[]'::jsonb)) e "
                "WHERE v.id = %s"
            )
            cursor.execute(
                f"WITH a AS ({side}), b AS ({side}) "
                "SELECT a.e, b.e FROM a FULL OUTER JOIN b ON a.k = b.k WHERE a.e IS DISTINCT FROM b.e",
                [old_pk if old_pk is not None else -1, new_pk],
            )
            old_rows: list[Any] = []
            new_rows: list[Any] = []
            for before, after in cursor.fetchall():
                for value, rows in ((before, old_rows), (after, new_rows)):
                    if value is not None:
                        rows.append(json.loads(value) if isinstance(value, str) else value)
            out[section] = (old_rows, new_rows)
    return out


def knowledge_version_compare(
    *, number: int, against: int | None = None, limit: int = 500
) -> VersionComparison | None:
    """Version `number` compared with `against` (default: the version before it), with the edits between.

    The edits are the change-log rows published in the versions after the base up to this one, so
    the page says who changed what and why. None when `number` does not exist. On PostgreSQL the
    entries are matched in the database and only the differing ones reach Python.
    """
    from django.db import connection

    versions = KnowledgeVersion.objects.select_related("created_by").defer("snapshot", "row_ids")
    version = versions.filter(number=number).first()
    if version is None:
        return None
    if against is None:
        base = versions.filter(number__lt=number).order_by("-number").first()
    else:
        base = versions.filter(number=against).first()
    ids = [version.pk] + ([base.pk] if base else [])
    # Only the category part of the row-id maps (the brands' part is as long as the brand list).
    cat_ids = dict(KnowledgeVersion.objects.filter(pk__in=ids).values_list("pk", "row_ids__categories"))
    if connection.vendor == "postgresql":
        sections = _changed_entries_sql(base.pk if base else None, version.pk)
        old = {name: rows[0] for name, rows in sections.items()}
        new = {name: rows[1] for name, rows in sections.items()}
        counts_row = (
            KnowledgeVersion.objects.filter(pk=version.pk)
            .annotate(
                n_categories=JsonArrayLength("snapshot", "categories"),
                n_brands=JsonArrayLength("snapshot", "brands"),
                n_rules=JsonArrayLength("snapshot", "attribute_rules"),
                n_noise=JsonArrayLength("snapshot", "noise_terms"),
            )
            .values_list("n_categories", "n_brands", "n_rules", "n_noise")
            .get()
        )
    else:  # SQLite (the demo): small graphs, compared in Python
        snapshots = dict(KnowledgeVersion.objects.filter(pk__in=ids).values_list("pk", "snapshot"))
        old = snapshots.get(base.pk, {}) if base else {}
        new = snapshots[version.pk]
        counts_row = tuple(
            len(new.get(k) or ()) for k in ("categories", "brands", "attribute_rules", "noise_terms")
        )
    diff = snapshot_diff(
        old,
        new,
        old_row_ids={"categories": cat_ids.get(base.pk) or {}} if base else None,
        new_row_ids={"categories": cat_ids.get(version.pk) or {}},
        limit=limit,
    )
    lo, hi = sorted((base.number if base else 0, number))
    changes = list(
        ChangeLog.objects.filter(knowledge_version__number__gt=lo, knowledge_version__number__lte=hi)
        .select_related("actor", "knowledge_version")
        # The joined version's snapshot is megabytes of JSON: never fetch it with a change row.
        .defer("knowledge_version__snapshot", "knowledge_version__row_ids")
        .order_by("-created_at", "-id")[:limit]
    )
    counts = dict(
        zip(("categories", "brands", "rules", "noise_terms"), (int(n or 0) for n in counts_row), strict=True)
    )
    return VersionComparison(version=version, base=base, diff=diff, changes=changes, counts=counts)


class JsonArrayLength(Func):
    """jsonb_array_length(column->'key') (0 when the key is missing), PostgreSQL only."""

    output_field = IntegerField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column), Value(key))

    def as_sql(self, compiler, connection, **extra):  # type: ignore[override]
        column_sql, column_params = compiler.compile(self.source_expressions[0])
        key_sql, key_params = compiler.compile(self.source_expressions[1])
        sql = f"COALESCE(jsonb_array_length({column_sql} -> {key_sql}), 0)"
        return sql, [*column_params, *key_params]


def knowledge_version_numbers(*, limit: int = 500) -> list[int]:
    return list(KnowledgeVersion.objects.order_by("-number").values_list("number", flat=True)[:limit])


# ---- API reads ----------------------------------------------------------------------------------


def brand_as_dict(*, brand: Brand) -> dict[str, Any]:
    """One brand with its aliases and the categories it sells (full paths)."""
    labels = category_path_labels()
    categories = sorted(
        (
            {"id": cat_id, "path": labels.get(cat_id, "?")}
            for cat_id in BrandCategory.objects.filter(brand=brand).values_list("category_id", flat=True)
        ),
        key=lambda c: c["path"].lower(),
    )
    return {
        "id": brand.pk,
        "name": brand.name,
        "description": brand.description,
        "is_active": brand.is_active,
        "version": brand.version,
        "aliases": list(brand.aliases.order_by("alias").values_list("alias", flat=True)),
        "categories": categories,
    }


def categories_as_dicts(*, ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Categories (all, or `ids` in that order) with their paths and aliases, in three queries."""
    labels = category_path_labels()
    qs = Category.objects.all() if ids is None else Category.objects.filter(pk__in=ids)
    rows = {c.pk: c for c in qs}
    aliases: dict[int, list[str]] = defaultdict(list)
    for cat_id, alias in (
        CategoryAlias.objects.filter(category_id__in=rows)
        .order_by("alias")
        .values_list("category_id", "alias")
    ):
        aliases[cat_id].append(alias)
    order = ids if ids is not None else sorted(rows, key=lambda pk: labels[pk].lower())
    return [
        {
            "id": c.pk,
            "name": c.name,
            "path": labels[c.pk],
            "parent_id": c.parent_id,
            "description": c.description,
            "is_active": c.is_active,
            "version": c.version,
            "aliases": aliases.get(c.pk, []),
        }
        for c in (rows[pk] for pk in order if pk in rows)
    ]


def relation_list(*, brand_id: int | None = None, category_id: int | None = None) -> QuerySet[BrandCategory]:
    """Brand-sells-category relations, by brand name, optionally for one brand or one category."""
    qs = BrandCategory.objects.select_related("brand").order_by(Lower("brand__name"), "category_id")
    if brand_id is not None:
        qs = qs.filter(brand_id=brand_id)
    if category_id is not None:
        qs = qs.filter(category_id=category_id)
    return qs


def attribute_rule_list(*, category_id: int | None = None) -> QuerySet[CategoryAttribute]:
    """Attribute rules (allowed values, required, excluded), by category then name."""
    qs = CategoryAttribute.objects.order_by("category_id", Lower("name"))
    if category_id is not None:
        qs = qs.filter(category_id=category_id)
    return qs


def change_page(*, number: int = 1, size: int = 100) -> Page:
    """A page of the change log, newest first (the joined versions' snapshots are never fetched)."""
    total = ChangeLog.objects.count()
    number = _page_bounds(number, size, total)
    start = (number - 1) * size
    rows = list(
        ChangeLog.objects.select_related("actor", "knowledge_version")
        .defer("knowledge_version__snapshot", "knowledge_version__row_ids")
        .order_by("-created_at", "-id")[start : start + size]
    )
    return Page(rows=rows, total=total, number=number, size=size)
