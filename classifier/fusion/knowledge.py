"""Knowledge snapshot: the plain, versioned, immutable view of the knowledge graph the model consults.

The Django ``knowledge`` app builds a :class:`KnowledgeSnapshot` from its database; the fusion model
only ever sees this structure (no Django imports here). Everything is JSON-serialisable and frozen,
so a worker can swap snapshots atomically between batches.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

PATH_SEP = " > "

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
    """A brand, its aliases (any script) and the categories (any level) it sells.

    ``category_support`` runs parallel to ``category_ids``: how many approved listings back each
    relation. Empty (older snapshots) or ``-1`` for one relation means "not counted": such a
    relation still says the brand sells there, but it is never evidence against anything.
    """

    id: str
    name: str
    aliases: tuple[str, ...] = ()
    category_ids: tuple[str, ...] = ()
    category_support: tuple[int, ...] = ()

    def support_of(self, index: int) -> int | None:
        """Listings backing relation ``index``; None when the relation was never counted."""
        if len(self.category_support) != len(self.category_ids):
            return None
        value = int(self.category_support[index])
        return value if value >= 0 else None

    @property
    def support_total(self) -> int | None:
        """Listings backing all the brand's relations; None when any relation is uncounted."""
        if not self.category_ids or len(self.category_support) != len(self.category_ids):
            return None
        if any(int(v) < 0 for v in self.category_support):
            return None
        return int(sum(self.category_support))


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


def _tuple(x: Iterable[str] | None) -> tuple[str, ...]:
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
    def to_dict(self) -> dict[str, object]:
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
    def from_dict(cls, data: Mapping[str, object]) -> KnowledgeSnapshot:
        d = cast("dict[str, Any]", data)  # parsed JSON: each field is read and converted below
        return cls(
            version=int(d["version"]),
            categories=tuple(
                CategoryNode(
                    c["id"], c["name"], c.get("parent_id"), _tuple(c.get("aliases")), c.get("description", "")
                )
                for c in d["categories"]
            ),
            brands=tuple(
                BrandEntry(
                    b["id"],
                    b["name"],
                    _tuple(b.get("aliases")),
                    _tuple(b.get("category_ids")),
                    tuple(int(v) for v in b.get("category_support") or ()),
                )
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
                idx.setdefault(fold_text(n).strip(), b)
        return idx

    def find_brand(self, name: str) -> BrandEntry | None:
        """The brand named ``name`` or one of its aliases (case- and accent-folded)."""
        return self._brand_index.get(fold_text(name or "").strip())

    def redirect(self, category_id: str) -> str:
        """The id a category has now: a merged-away id (``meta["merged"]``) leads to its target."""
        return self._merged.get(category_id, category_id)

    @cached_property
    def _merged(self) -> dict[str, str]:
        raw = dict(self.meta).get("merged")
        return json.loads(raw) if raw else {}

    def rules_for(self, category_id: str) -> tuple[AttributeRule, ...]:
        ids = set(self.ancestors(category_id, include_self=True))
        return tuple(r for r in self.attribute_rules if r.category_id in ids)

    def with_changes(
        self,
        *,
        version: int | None = None,
        categories: tuple[CategoryNode, ...] | None = None,
        brands: tuple[BrandEntry, ...] | None = None,
        attribute_rules: tuple[AttributeRule, ...] | None = None,
        noise_terms: tuple[str, ...] | None = None,
        entity_terms: tuple[EntityTerm, ...] | None = None,
        meta: tuple[tuple[str, str], ...] | None = None,
    ) -> KnowledgeSnapshot:
        """A new snapshot with some fields replaced (version bumped unless given)."""
        return KnowledgeSnapshot(
            version=self.version + 1 if version is None else version,
            categories=self.categories if categories is None else categories,
            brands=self.brands if brands is None else brands,
            attribute_rules=self.attribute_rules if attribute_rules is None else attribute_rules,
            noise_terms=self.noise_terms if noise_terms is None else noise_terms,
            entity_terms=self.entity_terms if entity_terms is None else entity_terms,
            meta=self.meta if meta is None else meta,
        )


# ---- text folding --------------------------------------------------------------------------------


def fold_char(ch: str) -> str:
    """One character, lower-cased and without accents ("É" -> "e"); always one character long,
    so offsets in a folded string are offsets in the original."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)).lower()
    return folded[0] if len(folded) == 1 else ch.lower()[:1] or ch


def fold_text(text: str) -> str:
    """Case- and accent-folded text of the same length ("Lakmé" -> "lakme")."""
    return "".join(fold_char(c) for c in text)


_BRAND_WORD = re.compile(r"[^\W_]+(?:['&.\-][^\W_]+)*")


def brand_words(text: str) -> tuple[str, ...]:
    """Folded whole words of a brand name or title start ("ADIDAS Originals" -> ("adidas", "originals")).

    No plural stripping: "Originals" and "Original" are different words in a brand name.
    """
    return tuple(m.group(0) for m in _BRAND_WORD.finditer(fold_text(text)))
