"""The editor's and the API's lists: paged brand and category search, rows as dicts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import F, Q, QuerySet
from django.db.models.functions import Lower

from knowledge.graph.selectors import (
    brand_category_paths,
    category_display_labels,
    category_path_labels,
    node_fields,
)
from knowledge.models import Brand, BrandAlias, BrandCategory, Category, CategoryAlias, CategoryAttribute
from knowledge.paging import Page, page_bounds

# The largest code point: `lower(name) < prefix + _TOP` bounds every string starting with `prefix`.
_TOP = "\U0010ffff"


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


def brand_page(*, query: str = "", number: int = 1, size: int = 50) -> Page[BrandRow]:
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
    number = page_bounds(number, size, total)
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


def category_page(*, query: str, number: int = 1, size: int = 50) -> Page[tuple[Category, str]]:
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
    number = page_bounds(number, size, total)
    start = (number - 1) * size
    chunk = ordered[start : start + size]
    cats = Category.objects.in_bulk(chunk)
    rows = [(cats[pk], labels[pk]) for pk in chunk]
    return Page(rows=rows, total=total, number=number, size=size, match="contains")


def brand_as_dict(*, brand: Brand) -> dict[str, object]:
    """One brand with its aliases and the categories it sells (full paths)."""
    paths = sorted(brand_category_paths(brand), key=lambda c: c[1].lower())
    categories = [{"id": cat_id, "path": path} for cat_id, path in paths]
    return {
        **node_fields(brand),
        "aliases": list(brand.aliases.order_by("alias").values_list("alias", flat=True)),
        "categories": categories,
    }


def categories_as_dicts(*, ids: list[int] | None = None) -> list[dict[str, object]]:
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
