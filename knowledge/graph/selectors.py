"""Reads of the graph: lookups by name and path, the tree, a brand's page, what ops should fix."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet

from classifier.fusion.knowledge import fold_text
from knowledge import cache
from knowledge.models import Brand, BrandAlias, BrandCategory, Category
from knowledge.ports import ListingRef, references


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
    wanted = fold_text(name).strip()
    spellings = [brand.name, *brand.aliases.values_list("alias", flat=True)]
    return brand if any(fold_text(s).strip() == wanted for s in spellings) else None


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
    labels = category_path_labels()
    counts = references().category_listing_counts()
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


@dataclass
class BrandDetail:
    categories: list[tuple[int, str]]  # (id, path) sorted by path
    aliases: list[str]
    recent_listings: list[tuple[ListingRef, str]]  # (listing, its category's path)
    listing_count: int


def brand_category_paths(brand: Brand, labels: dict[int, str] | None = None) -> list[tuple[int, str]]:
    """(id, path) of every category the brand sells ("?" for a node gone meanwhile), unsorted."""
    labels = category_path_labels() if labels is None else labels
    ids = BrandCategory.objects.filter(brand=brand).values_list("category_id", flat=True)
    return [(cat_id, labels.get(cat_id, "?")) for cat_id in ids]


def brand_detail(*, brand: Brand, listings: int = 20) -> BrandDetail:
    labels = category_path_labels()
    categories = sorted(brand_category_paths(brand, labels), key=lambda item: item[1])
    recent, count = references().brand_listings(brand_id=brand.pk, limit=listings)
    return BrandDetail(
        categories=categories,
        aliases=list(brand.aliases.order_by("alias").values_list("alias", flat=True)),
        recent_listings=[(listing, labels.get(listing.category_id or 0, "")) for listing in recent],
        listing_count=count,
    )


def graph_problems() -> list[dict[str, object]]:
    """Things ops should fix: one name under two parents, empty brands, inactive nodes still used."""
    labels = category_path_labels()
    problems: list[dict[str, object]] = []
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


def node_fields(node: Category | Brand) -> dict[str, object]:
    """What categories and brands share: id, name, description, whether active, version."""
    return {
        "id": node.pk,
        "name": node.name,
        "description": node.description,
        "is_active": node.is_active,
        "version": node.version,
    }


def category_row(category: Category) -> dict[str, object]:
    """A category as the change log stores it."""
    return {
        **node_fields(category),
        "parent_id": category.parent_id,
        "path": category.path_label,
        "aliases": sorted(category.aliases.values_list("alias", flat=True)),
    }


def brand_row(brand: Brand) -> dict[str, object]:
    """A brand as the change log stores it."""
    return {
        **node_fields(brand),
        "aliases": sorted(brand.aliases.values_list("alias", flat=True)),
        "categories": sorted(path for _id, path in brand_category_paths(brand)),
    }
