"""Knowledge snapshot: the plain, versioned, immutable view of the knowledge graph the model consults.

The Django ``knowledge`` app builds a :class:`KnowledgeSnapshot` from its database; the fusion model
only ever sees this structure (no Django imports here). Everything is JSON-serialisable and frozen,
so a worker can swap snapshots atomically between batches.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

PATH_SEP = " > "
GENDER_WORDS = ("men", "women", "boys", "girls", "unisex")

DEFAULT_NOISE_TERMS: tuple[str, ...] = (
    "hot sale",
    "limited offer",
    "best seller",
    "bestseller",
    "new arrival",
    "free shipping",
    "big sale",
    "sale",
    "offer",
    "deal",
    "best price",
    "top quality",
    "premium quality",
    "2024 new",
    "new",
    "original",
    "genuine",
    "cheap",
    "discount",
    "clearance",
    "trending",
    "must have",
    "爆款",
    "限时抢购",
    "热卖",
    "包邮",
    "新款",
    "特价",
    "促销",
    "正品",
    "秒杀",
    "清仓",
    "限时",
    "抢购",
)


@dataclass(frozen=True)
class CategoryNode:
    """One node of the category tree; ``id`` is a stable key (catalogue: the path joined by " > ")."""

    id: str
    name: str
    parent_id: str | None
    aliases: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class BrandEntry:
    """A brand, its aliases (any script) and the categories (any level) it sells."""

    id: str
    name: str
    aliases: tuple[str, ...] = ()
    category_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttributeRule:
    """A plausibility rule for one attribute of a category (e.g. audience of Kurtas)."""

    category_id: str
    attribute: str
    allowed_values: tuple[str, ...] = ()
    required: bool = False
    excluded: bool = False


@dataclass(frozen=True)
class EntityTerm:
    """An extra gazetteer term (colour, material, function, ...) beyond the built-in lexicons."""

    text: str
    type: str
    weight: float = 1.0


def _tuple(x) -> tuple:
    return tuple(x) if x is not None else ()


@dataclass(frozen=True)
class KnowledgeSnapshot:
    """Immutable, versioned knowledge graph view.

    Args:
        version: monotonically increasing version of the knowledge graph.
        categories: every node of the tree (any depth); leaves are nodes without children.
        brands: known brands with aliases and the categories they sell.
        attribute_rules: plausibility rules per category.
        noise_terms: marketing phrases to down-weight in titles.
        entity_terms: extra gazetteer entries.
    """

    version: int
    categories: tuple[CategoryNode, ...]
    brands: tuple[BrandEntry, ...]
    attribute_rules: tuple[AttributeRule, ...] = ()
    noise_terms: tuple[str, ...] = ()
    entity_terms: tuple[EntityTerm, ...] = ()
    meta: tuple[tuple[str, str], ...] = field(default=())

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "categories": [asdict(c) for c in self.categories],
            "brands": [asdict(b) for b in self.brands],
            "attribute_rules": [asdict(r) for r in self.attribute_rules],
            "noise_terms": list(self.noise_terms),
            "entity_terms": [asdict(t) for t in self.entity_terms],
            "meta": [list(m) for m in self.meta],
        }

    @classmethod
    def from_dict(cls, d: dict) -> KnowledgeSnapshot:
        return cls(
            version=int(d["version"]),
            categories=tuple(
                CategoryNode(
                    c["id"], c["name"], c.get("parent_id"), _tuple(c.get("aliases")), c.get("description", "")
                )
                for c in d["categories"]
            ),
            brands=tuple(
                BrandEntry(b["id"], b["name"], _tuple(b.get("aliases")), _tuple(b.get("category_ids")))
                for b in d.get("brands", ())
            ),
            attribute_rules=tuple(
                AttributeRule(
                    r["category_id"],
                    r["attribute"],
                    _tuple(r.get("allowed_values")),
                    bool(r.get("required", False)),
                    bool(r.get("excluded", False)),
                )
                for r in d.get("attribute_rules", ())
            ),
            noise_terms=_tuple(d.get("noise_terms")),
            entity_terms=tuple(
                EntityTerm(t["text"], t["type"], float(t.get("weight", 1.0)))
                for t in d.get("entity_terms", ())
            ),
            meta=tuple((str(k), str(v)) for k, v in d.get("meta", ())),
        )

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> KnowledgeSnapshot:
        return cls.from_dict(json.loads(s))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeSnapshot:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def checksum(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:16]

    # ---- tree queries --------------------------------------------------------------------------
    @cached_property
    def _by_id(self) -> dict[str, CategoryNode]:
        return {c.id: c for c in self.categories}

    @cached_property
    def _children(self) -> dict[str | None, list[str]]:
        ch: dict[str | None, list[str]] = defaultdict(list)
        for c in self.categories:
            ch[c.parent_id].append(c.id)
        return ch

    def category(self, category_id: str) -> CategoryNode:
        try:
            return self._by_id[category_id]
        except KeyError:
            raise KeyError(f"unknown category {category_id!r}") from None

    def has_category(self, category_id: str) -> bool:
        return category_id in self._by_id

    def children(self, category_id: str | None) -> tuple[str, ...]:
        return tuple(self._children.get(category_id, ()))

    def path_of(self, category_id: str) -> tuple[str, ...]:
        """Names from the root to ``category_id`` (e.g. ("Apparel", "Topwear", "Tshirts"))."""
        return tuple(self.category(i).name for i in self.ancestors(category_id, include_self=True))

    def ancestors(self, category_id: str, *, include_self: bool = False) -> tuple[str, ...]:
        """Ids from the root down to the parent of ``category_id`` (and itself when asked)."""
        out: list[str] = []
        cur: str | None = category_id if include_self else self.category(category_id).parent_id
        seen = set()
        while cur is not None and cur not in seen:  # guard against cycles an editor might create
            seen.add(cur)
            out.append(cur)
            cur = self.category(cur).parent_id if cur in self._by_id else None
        return tuple(reversed(out))

    def leaves(self) -> tuple[CategoryNode, ...]:
        return tuple(c for c in self.categories if not self._children.get(c.id))

    @cached_property
    def _brand_index(self) -> dict[str, BrandEntry]:
        idx: dict[str, BrandEntry] = {}
        for b in self.brands:
            for n in (b.name, *b.aliases):
                idx.setdefault(n.lower(), b)
        return idx

    def find_brand(self, name: str) -> BrandEntry | None:
        return self._brand_index.get(name.lower())

    def rules_for(self, category_id: str) -> tuple[AttributeRule, ...]:
        ids = set(self.ancestors(category_id, include_self=True))
        return tuple(r for r in self.attribute_rules if r.category_id in ids)

    def with_changes(self, **kw) -> KnowledgeSnapshot:
        """A new snapshot with some fields replaced (version bumped unless given)."""
        d = {
            "version": self.version + 1,
            "categories": self.categories,
            "brands": self.brands,
            "attribute_rules": self.attribute_rules,
            "noise_terms": self.noise_terms,
            "entity_terms": self.entity_terms,
            "meta": self.meta,
        }
        d.update(kw)
        return KnowledgeSnapshot(**d)


# ---- building from the catalogue ---------------------------------------------------------------
_WORD = re.compile(r"\S+")


def _brand_prefix(title: str) -> str | None:
    words = title.split()
    for i, w in enumerate(words):
        if w.lower().strip(",.-") in GENDER_WORDS:
            return " ".join(words[:i]) if i > 0 else None
    return None


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def snapshot_from_catalogue(
    csv_path: str | Path,
    *,
    splits: tuple[str, ...] = ("train", "val"),
    version: int = 1,
    min_rule_rows: int = 20,
) -> KnowledgeSnapshot:
    """Build a snapshot from a catalogue CSV (``id,title,master_category,sub_category,article_type,...``).

    Categories come from the rows' paths; brands are mined from the title prefix before the gender word
    (Men/Women/Boys/Girls/Unisex), merged case-insensitively (the most frequent spelling is the name,
    the others aliases); a brand sells the leaf categories of the rows whose title starts with it.
    Audience rules (allowed gender words) are mined for leaves with at least ``min_rule_rows`` rows.
    """
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if not splits or r.get("split", "") in splits]
    cats: dict[str, CategoryNode] = {}
    for r in rows:
        parent = None
        names = [r["master_category"], r["sub_category"], r["article_type"]]
        for depth in range(3):
            cid = PATH_SEP.join(names[: depth + 1])
            if cid not in cats:
                cats[cid] = CategoryNode(cid, names[depth], parent)
            parent = cid
    spellings: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        p = _brand_prefix(r["title"])
        if p:
            spellings[p.lower()][p] += 1
    # longest-first prefix matching so "United Colors of Benetton" wins over "United"
    keys = sorted(spellings, key=lambda k: -len(k))
    brand_cats: dict[str, set[str]] = defaultdict(set)
    audience: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        leaf = PATH_SEP.join([r["master_category"], r["sub_category"], r["article_type"]])
        t = r["title"].lower()
        for k in keys:
            if t == k or t.startswith(k + " "):
                brand_cats[k].add(leaf)
                break
        g = (r.get("gender") or "").strip()
        if g and g != "NA":
            audience[leaf][g] += 1
    brands = []
    for k in sorted(spellings):
        name = spellings[k].most_common(1)[0][0]
        aliases = tuple(sorted(s for s in spellings[k] if s != name))
        brands.append(BrandEntry(_slug(k) or k, name, aliases, tuple(sorted(brand_cats[k]))))
    rules = []
    for leaf, cnt in sorted(audience.items()):
        if sum(cnt.values()) >= min_rule_rows:
            rules.append(AttributeRule(leaf, "audience", tuple(sorted(cnt))))
    return KnowledgeSnapshot(
        version=version,
        categories=tuple(sorted(cats.values(), key=lambda c: c.id)),
        brands=tuple(brands),
        attribute_rules=tuple(rules),
        noise_terms=DEFAULT_NOISE_TERMS,
        meta=(("source", Path(csv_path).name), ("splits", ",".join(splits))),
    )
