"""What changed between two published versions, entry by entry, with the edits in between."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, cast

from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Func, IntegerField, Value
from django.db.models.sql.compiler import SQLCompiler

from knowledge.models import ChangeLog, KnowledgeVersion
from knowledge.ports import RowIds
from knowledge.versions.snapshot import RuleDict, SnapshotDict

DiffRow = dict[str, object]
Kind = Literal["added", "removed", "changed"]


@dataclass
class DiffSection:
    """What changed in one kind of entry between two snapshots (each list capped at `limit` rows)."""

    added: list[DiffRow] = field(default_factory=list)
    removed: list[DiffRow] = field(default_factory=list)
    changed: list[DiffRow] = field(default_factory=list)
    n_added: int = 0
    n_removed: int = 0
    n_changed: int = 0

    @property
    def empty(self) -> bool:
        return not (self.n_added or self.n_removed or self.n_changed)

    def add(self, kind: Kind, row: DiffRow, limit: int) -> None:
        setattr(self, f"n_{kind}", getattr(self, f"n_{kind}") + 1)
        rows: list[DiffRow] = getattr(self, kind)
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


def _set_change(old: Iterable[str] | None, new: Iterable[str] | None) -> tuple[list[str], list[str]]:
    before, after = list(old or ()), list(new or ())
    return [x for x in after if x not in before], [x for x in before if x not in after]


def _alias_notes(added: list[str], removed: list[str]) -> list[str]:
    return [
        *(["aliases added: " + ", ".join(added)] if added else []),
        *(["aliases removed: " + ", ".join(removed)] if removed else []),
    ]


def snapshot_diff(
    old: SnapshotDict,
    new: SnapshotDict,
    *,
    old_row_ids: RowIds | None = None,
    new_row_ids: RowIds | None = None,
    limit: int = 500,
) -> SnapshotDiff:
    """The difference between two snapshot dicts, entry by entry (pure: no database).

    Categories are keyed by their path; with the versions' row-id maps a node whose path changed
    (renamed or moved) is one "changed" row instead of a removal plus an addition. Brands are keyed
    by id; a change lists the name, aliases and categories added and removed.
    """
    return SnapshotDiff(
        categories=_category_diff(old, new, old_row_ids or {}, new_row_ids or {}, limit),
        brands=_brand_diff(old, new, limit),
        rules=_rule_diff(old, new, limit),
        noise_terms=_noise_diff(old, new, limit),
    )


def _category_diff(
    old: SnapshotDict, new: SnapshotDict, old_row_ids: RowIds, new_row_ids: RowIds, limit: int
) -> DiffSection:
    cats = DiffSection()
    old_cats = {c["id"]: c for c in old.get("categories", ())}
    new_cats = {c["id"]: c for c in new.get("categories", ())}
    old_cat_pk = old_row_ids.get("categories", {})
    new_pk_label = {pk: label for label, pk in new_row_ids.get("categories", {}).items()}
    moved_to: dict[str, str] = {}
    for label in old_cats.keys() - new_cats.keys():
        old_pk = old_cat_pk.get(label)
        target = new_pk_label.get(old_pk) if old_pk is not None else None
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
        notes = [f"was {before_id}"] if before_id != after_id else []
        notes += _alias_notes(*_set_change(a.get("aliases"), b.get("aliases")))
        if (a.get("description") or "") != (b.get("description") or ""):
            notes.append("description changed")
        if notes:
            cats.add("changed", {"id": after_id, "notes": notes}, limit)
    return cats


def _brand_diff(old: SnapshotDict, new: SnapshotDict, limit: int) -> DiffSection:
    brands = DiffSection()
    old_brands = {b["id"]: b for b in old.get("brands", ())}
    new_brands = {b["id"]: b for b in new.get("brands", ())}
    for key in sorted(old_brands.keys() - new_brands.keys(), key=lambda k: old_brands[k]["name"].lower()):
        brands.add("removed", {"id": key, "name": old_brands[key]["name"]}, limit)
    for key in sorted(new_brands.keys() - old_brands.keys(), key=lambda k: new_brands[k]["name"].lower()):
        b = new_brands[key]
        row: DiffRow = {
            "id": key,
            "name": b["name"],
            "aliases": b.get("aliases", []),
            "categories": b.get("category_ids", []),
        }
        brands.add("added", row, limit)
    for key in sorted(old_brands.keys() & new_brands.keys(), key=lambda k: new_brands[k]["name"].lower()):
        a, b = old_brands[key], new_brands[key]
        notes = [f"renamed from {a['name']}"] if a["name"] != b["name"] else []
        notes += _alias_notes(*_set_change(a.get("aliases"), b.get("aliases")))
        cats_added, cats_removed = _set_change(a.get("category_ids"), b.get("category_ids"))
        if cats_added:
            notes.append("now sells: " + "; ".join(cats_added))
        if cats_removed:
            notes.append("no longer sells: " + "; ".join(cats_removed))
        if notes:
            brands.add("changed", {"id": key, "name": b["name"], "notes": notes}, limit)
    return brands


def _rule_key(r: RuleDict) -> tuple[str, str]:
    return (r["category_id"], r["attribute"].lower())


def _rule_text(r: RuleDict) -> str:
    kind = "required" if r.get("required") else "excluded" if r.get("excluded") else "allowed"
    values = ", ".join(r.get("allowed_values") or ()) or "any value"
    return f"{kind}: {values}"


def _rule_id(r: RuleDict) -> str:
    return f"{r['category_id']} · {r['attribute']}"


def _rule_diff(old: SnapshotDict, new: SnapshotDict, limit: int) -> DiffSection:
    rules = DiffSection()
    old_rules = {_rule_key(r): r for r in old.get("attribute_rules", ())}
    new_rules = {_rule_key(r): r for r in new.get("attribute_rules", ())}
    for key in sorted(old_rules.keys() - new_rules.keys()):
        rules.add("removed", {"id": _rule_id(old_rules[key]), "text": _rule_text(old_rules[key])}, limit)
    for key in sorted(new_rules.keys() - old_rules.keys()):
        rules.add("added", {"id": _rule_id(new_rules[key]), "text": _rule_text(new_rules[key])}, limit)
    for key in sorted(old_rules.keys() & new_rules.keys()):
        before, after = _rule_text(old_rules[key]), _rule_text(new_rules[key])
        if before != after:
            rules.add("changed", {"id": _rule_id(new_rules[key]), "notes": [f"{before} → {after}"]}, limit)
    return rules


def _noise_diff(old: SnapshotDict, new: SnapshotDict, limit: int) -> DiffSection:
    noise = DiffSection()
    old_noise, new_noise = set(old.get("noise_terms", ())), set(new.get("noise_terms", ()))
    for term in sorted(new_noise - old_noise):
        noise.add("added", {"id": term}, limit)
    for term in sorted(old_noise - new_noise):
        noise.add("removed", {"id": term}, limit)
    return noise


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


def _changed_entries_sql(old_pk: int | None, new_pk: int) -> dict[str, tuple[list[object], list[object]]]:
    """Per section, the entries that differ between two versions' snapshots, compared in PostgreSQL.

    A 50,000-brand snapshot is ~5 MB of JSON: decoding two of them in Python costs seconds, while
    PostgreSQL matches the entries by key and returns only the (few) differing ones.
    """

    out: dict[str, tuple[list[object], list[object]]] = {}
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
            old_rows: list[object] = []
            new_rows: list[object] = []
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
        # JSON from the database: the entries are the snapshot's own (SnapshotDict's shapes).
        old = cast(SnapshotDict, {name: rows[0] for name, rows in sections.items()})
        new = cast(SnapshotDict, {name: rows[1] for name, rows in sections.items()})
        counts_row: tuple[int | None, ...] = (
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
        old = cast(SnapshotDict, snapshots.get(base.pk, {}) if base else {})
        new = cast(SnapshotDict, snapshots[version.pk])
        counts_row = (len(new.get("categories") or ()), len(new.get("brands") or ()))
        counts_row += (len(new.get("attribute_rules") or ()), len(new.get("noise_terms") or ()))
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

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: object
    ) -> tuple[str, list[object]]:
        column_sql, column_params = compiler.compile(self.source_expressions[0])
        key_sql, key_params = compiler.compile(self.source_expressions[1])
        sql = f"COALESCE(jsonb_array_length({column_sql} -> {key_sql}), 0)"
        return sql, [*column_params, *key_params]
