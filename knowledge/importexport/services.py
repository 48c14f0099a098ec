"""Imports into the graph: a whole snapshot (JSON, catalogue, taxonomy) or brand rows (CSV).

All or nothing: problems are listed before anything is written, and each import is one
transaction, logged and pending until a publish.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypedDict

from django.db import transaction

from classifier.fusion.knowledge import KnowledgeSnapshot
from knowledge.changelog import KnowledgeError, change_record
from knowledge.graph.rules import (
    ALIAS_MAX,
    BRAND_NAME_MAX,
    NAME_MAX,
    check_brand_aliases_free,
    clean_aliases,
    clean_name,
)
from knowledge.graph.selectors import category_by_path_label
from knowledge.models import (
    Brand,
    BrandAlias,
    BrandCategory,
    Category,
    CategoryAlias,
    CategoryAttribute,
    NoiseTerm,
)
from knowledge.ports import Actor

MAX_IMPORT_PROBLEMS = 20


class BrandRowInput(TypedDict):
    """One parsed row of a brands CSV."""

    line: int
    name: str
    aliases: list[str]
    categories: list[str]


@transaction.atomic
def brands_import_rows(*, actor: Actor, rows: Sequence[BrandRowInput], reason: str = "") -> dict[str, int]:
    """Upsert brands from parsed CSV rows ({"line", "name", "aliases", "categories"}); all or nothing.

    Unknown category paths and aliases owned by another brand are refused naming the line.
    """
    counts = {"created": 0, "updated": 0, "aliases": 0, "relations": 0}
    for row in rows:
        line = row["line"]
        try:
            name = clean_name(row["name"], what="brand", max_len=BRAND_NAME_MAX)
            brand = Brand.objects.filter(name__iexact=name).first()
            if brand is None:
                alias_owner = BrandAlias.objects.filter(alias__iexact=name).select_related("brand").first()
                if alias_owner is not None:
                    raise KnowledgeError(f"{name!r} is already an alias of brand {alias_owner.brand.name!r}")
                brand = Brand.objects.create(name=name)
                counts["created"] += 1
            else:
                counts["updated"] += 1
            clean = clean_aliases(row.get("aliases", []), own_name=brand.name)
            check_brand_aliases_free(clean, brand=brand)
            existing = {a.lower() for a in brand.aliases.values_list("alias", flat=True)}
            new = [a for a in clean if a.lower() not in existing]
            BrandAlias.objects.bulk_create([BrandAlias(brand=brand, alias=a) for a in new])
            counts["aliases"] += len(new)
            for path in row.get("categories", []):
                category = category_by_path_label(path)
                if category is None:
                    raise KnowledgeError(f"unknown category {path!r}")
                _, created = BrandCategory.objects.get_or_create(
                    brand=brand, category=category, defaults={"source": BrandCategory.Source.IMPORT}
                )
                counts["relations"] += int(created)
        except KnowledgeError as exc:
            raise KnowledgeError(f"line {line}: {exc}") from exc
    change_record(
        actor=actor,
        action="import",
        object_type="brands",
        object_id="csv",
        label=f"{len(rows)} brand rows",
        reason=reason,
        after=counts,
    )
    return counts


def snapshot_problems(snapshot: KnowledgeSnapshot) -> list[str]:
    """Everything that stops `snapshot` from being imported, in words (empty when it can be).

    Checked before anything is written: duplicate ids, a parent that does not exist, a cycle in
    the tree, two nodes of one name under one parent, names too long, a brand named twice, an alias
    that is another brand's name or alias (in the file or in the graph), a relation to a category
    the file does not have.
    """
    parents = {c.id: c.parent_id for c in snapshot.categories}
    return [
        *_category_problems(snapshot, parents),
        *_brand_problems(snapshot, parents),
        *_graph_alias_problems(snapshot),
    ]


def _category_problems(snapshot: KnowledgeSnapshot, parents: dict[str, str | None]) -> list[str]:
    problems: list[str] = []
    seen_ids: set[str] = set()
    for cid in (c.id for c in snapshot.categories):
        if cid in seen_ids:
            problems.append(f"category id {cid!r} appears twice")
        seen_ids.add(cid)
    for c in snapshot.categories:
        if not (c.name or "").strip():
            problems.append(f"category {c.id!r} has no name")
        elif len(c.name) > NAME_MAX:
            problems.append(f"category {c.id!r}: name longer than {NAME_MAX} characters")
        if c.parent_id is not None and c.parent_id not in parents:
            problems.append(f"category {c.id!r}: parent {c.parent_id!r} is not in the file")
    reported_cycles: set[frozenset[str]] = set()
    for cid in parents:
        path: list[str] = []
        cur: str | None = cid
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
        slot = (c.parent_id, (c.name or "").strip().lower())
        if slot in siblings and siblings[slot] != c.id:
            problems.append(f"two categories named {c.name!r} under {c.parent_id or 'the root'}")
        siblings.setdefault(slot, c.id)
    return problems


def _brand_problems(snapshot: KnowledgeSnapshot, parents: dict[str, str | None]) -> list[str]:
    problems: list[str] = []
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
        for category_id in b.category_ids:
            if category_id not in parents:
                problems.append(f"brand {b.name!r} sells {category_id!r}, which is not in the file")
    return problems


def _graph_alias_problems(snapshot: KnowledgeSnapshot) -> list[str]:
    """An alias of the file that the graph gives to another brand, or that is another brand's name."""
    aliases = {a.strip().lower(): b.name.strip() for b in snapshot.brands for a in b.aliases}
    if not aliases:
        return []
    graph_aliases = {
        a.lower(): n
        for a, n in BrandAlias.objects.values_list("alias", "brand__name").iterator(chunk_size=10000)
    }
    graph_names = {
        n.lower(): n for n in Brand.objects.values_list("name", flat=True).iterator(chunk_size=10000)
    }
    problems: list[str] = []
    for alias, brand_name in aliases.items():
        holder = graph_aliases.get(alias) or graph_names.get(alias)
        if holder is not None and holder.lower() != brand_name.lower():
            problems.append(f"alias {alias!r} of brand {brand_name!r} already belongs to brand {holder!r}")
    return problems


@transaction.atomic
def graph_import_snapshot(
    *,
    snapshot: KnowledgeSnapshot,
    actor: Actor = None,
    reason: str = "",
    relation_source: str = BrandCategory.Source.IMPORT,
) -> dict[str, object]:
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
    created = {"categories": _import_categories(snapshot, by_label)}
    created.update(_import_brands(snapshot, by_label, relation_source))
    _import_rules_and_noise(snapshot, by_label)
    merges = json.loads(dict(snapshot.meta).get("merge_report") or "[]")
    change_record(
        actor=actor,
        action="import",
        object_type="graph",
        object_id=dict(snapshot.meta).get("source", "snapshot")[:64],
        label=f"{len(snapshot.categories)} categories, {len(snapshot.brands)} brands",
        reason=reason,
        after={**created, "merges": merges},
    )
    return {**created, "merges": merges}


def _import_categories(snapshot: KnowledgeSnapshot, by_label: dict[str, Category]) -> int:
    """Every node, parents before children (by depth), matched by parent and name; how many were new."""
    created = 0
    for node in sorted(snapshot.categories, key=lambda n: len(snapshot.path_of(n.id))):
        parent = by_label.get(node.parent_id) if node.parent_id else None
        category = Category.objects.filter(parent=parent, name__iexact=node.name).first()
        if category is None:
            category = Category.objects.create(parent=parent, name=node.name, description=node.description)
            created += 1
        by_label[node.id] = category
        for alias in node.aliases:
            if not CategoryAlias.objects.filter(category=category, alias__iexact=alias).exists():
                CategoryAlias.objects.create(category=category, alias=alias)
    return created


def _import_brands(
    snapshot: KnowledgeSnapshot, by_label: dict[str, Category], relation_source: str
) -> dict[str, int]:
    """Brands, aliases and relations in bulk: one read of what the graph has, then inserts."""
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
    new_aliases: list[BrandAlias] = []
    relations: dict[tuple[int, int], int] = {}
    for entry in snapshot.brands:
        key = entry.name.strip().lower()
        brand_pk = brand_by_lower.get(key) or alias_owner.get(key)  # known under another brand's alias
        if brand_pk is None:
            continue  # a nameless brand: snapshot_problems refused the file already
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
    return {
        "brands": len(new_brands),
        "aliases": len(new_aliases),
        "relations": _import_relations(relations, relation_source),
    }


def _import_relations(relations: dict[tuple[int, int], int], relation_source: str) -> int:
    """Missing relations created with their support; a re-import brings the count up to the
    source's, never down (decisions add to it). Returns how many were created."""
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
    for pair, support in relations.items():
        if pair in existing and existing[pair][1] < support:
            BrandCategory.objects.filter(pk=existing[pair][0]).update(support=support)
    return len(missing)


def _import_rules_and_noise(snapshot: KnowledgeSnapshot, by_label: dict[str, Category]) -> None:
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
