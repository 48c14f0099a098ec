"""Categories and brands are edited alike: rename, describe, replace the aliases, at a version.

`NodeKind` says what differs between the two (the name rule, how aliases are checked and stored,
how the change log shows the row); `node_update` is the one edit both go through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic

from django.db import transaction
from django.db.models import F

from knowledge.changelog import Node, versioned_update
from knowledge.graph.rules import (
    BRAND_NAME_MAX,
    NAME_MAX,
    check_brand_aliases_free,
    check_brand_name_free,
    check_sibling_free,
    clean_aliases,
    clean_name,
)
from knowledge.graph.selectors import brand_row, category_row
from knowledge.models import Brand, BrandAlias, BrandCategory, Category, CategoryAlias
from knowledge.ports import Actor


@dataclass(frozen=True)
class NodeKind(Generic[Node]):
    model: type[Node]
    what: str  # "category" or "brand", as the refusals name it
    name_max: int
    row: Callable[[Node], dict[str, object]]  # the row as the change log stores it
    check_name: Callable[[str, Node], None]  # refuses a name another node holds
    aliases_replace: Callable[[Node, list[str]], None]  # checks, then replaces the aliases


def _category_aliases_replace(category: Category, aliases: list[str]) -> None:
    category.aliases.all().delete()
    CategoryAlias.objects.bulk_create([CategoryAlias(category=category, alias=a) for a in aliases])


def _brand_aliases_replace(brand: Brand, aliases: list[str]) -> None:
    check_brand_aliases_free(aliases, brand=brand)
    brand.aliases.all().delete()
    BrandAlias.objects.bulk_create([BrandAlias(brand=brand, alias=a) for a in aliases])


CATEGORIES: NodeKind[Category] = NodeKind(
    model=Category,
    what="category",
    name_max=NAME_MAX,
    row=category_row,
    check_name=lambda name, node: check_sibling_free(name, parent=node.parent, exclude=node),
    aliases_replace=_category_aliases_replace,
)
BRANDS: NodeKind[Brand] = NodeKind(
    model=Brand,
    what="brand",
    name_max=BRAND_NAME_MAX,
    row=brand_row,
    check_name=lambda name, node: check_brand_name_free(name, brand=node),
    aliases_replace=_brand_aliases_replace,
)


def relation_fold(*, brand_id: int, category_id: int, support: int, source: str) -> None:
    """A relation of a merged-away node joins the target's: created, or its evidence added up."""
    relation, created = BrandCategory.objects.get_or_create(
        brand_id=brand_id, category_id=category_id, defaults={"support": support, "source": source}
    )
    if not created:
        BrandCategory.objects.filter(pk=relation.pk).update(support=F("support") + support)


@transaction.atomic
def node_update(
    kind: NodeKind[Node],
    *,
    actor: Actor,
    node: Node,
    expected_version: int | None,
    name: str,
    description: str,
    aliases: Iterable[str] | None = None,
    reason: str = "",
) -> Node:
    """Rename, describe and (when `aliases` is given) replace the aliases of one node, at the
    version the editor started from (a stale one raises `StaleEdit`); logged as an "update"."""

    def change(row: Node) -> None:
        clean = clean_name(name, what=kind.what, max_len=kind.name_max)
        kind.check_name(clean, row)
        row.name = clean
        row.description = (description or "").strip()
        row.save(update_fields=["name", "description", "updated_at"])
        if aliases is not None:
            kind.aliases_replace(row, clean_aliases(aliases, own_name=clean))

    return versioned_update(
        kind.model,
        node.pk,
        expected_version=expected_version,
        actor=actor,
        action="update",
        reason=reason,
        row=kind.row,
        change=change,
    )
