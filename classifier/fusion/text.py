"""Title processing: gazetteer + pattern entity extraction for Latin and CJK titles, noise down-weighting,
per-category keyword weights, and alignment of entities to sub-word tokens.

Latin script is matched on normalised word sequences (lower case, no hyphen, plural ``s`` stripped, the
same normalisation as the vague-title tool); brands on whole case- and accent-folded words with no
plural stripping (a brand's spelling is exact); CJK has no spaces, so gazetteer terms containing CJK
characters are matched as substrings. Overlaps are resolved longest-first.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from classifier.fusion.knowledge import _BRAND_WORD, KnowledgeSnapshot, brand_words, fold_text
from classifier.fusion.lexicons import AUDIENCES, COLOURS, FUNCTIONS, MATERIALS

ENTITY_TYPES: tuple[str, ...] = (
    "other",
    "brand",
    "product_type",
    "material",
    "colour",
    "audience",
    "capacity",
    "function",
    "noise",
)
TYPE_ID = {t: i for i, t in enumerate(ENTITY_TYPES)}

# prior weight of a token by the entity it belongs to; marketing noise is down-weighted to 0.1
DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "other": 1.0,
    "brand": 1.0,
    "product_type": 1.5,
    "material": 0.8,
    "colour": 0.6,
    "audience": 0.7,
    "capacity": 0.8,
    "function": 0.8,
    "noise": 0.1,
}

CAPACITY_RE = re.compile(
    r"(?<![A-Za-z0-9.])\d+(?:\.\d+)?\s?(?:ml|l|ltr|litre|liter|litres|g|gm|kg|mm|cm|m|inch|inches|in|gb|tb|mah|w|oz"
    r"|升|毫升|克|千克|公斤|寸|英寸|瓦)(?![A-Za-z])",
    re.IGNORECASE,
)
SIZE_RE = re.compile(
    r"(?<![A-Za-z])(?:size\s?\w+|xxs|xs|xxl|xxxl|xl|\d{1,2}\s?-\s?\d{1,2}\s?(?:years|yrs|months))(?![A-Za-z])",
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def norm_word(w: str) -> str:
    """Normalise one Latin word: lower case, hyphens/dots dropped, plural ``s`` stripped (as vague_titles.py)."""
    w = w.lower().replace("-", "").replace(".", "")
    if len(w) <= 3:
        return w
    if w.endswith(("sses", "ches", "shes", "xes")):
        return w[:-2]
    if w.endswith("ies") and len(w) > 5:
        return w[:-3] + "y"
    if w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def latin_words(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) for each Latin word; hyphenated words count as one ("T-shirt")."""
    out = []
    for m in re.finditer(r"[A-Za-z0-9]+(?:[\-'&\.][A-Za-z0-9]+)*", text):
        out.append((norm_word(m.group(0)), m.start(), m.end()))
    return out


@dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int
    end: int
    weight: float
    value: str = ""  # canonical value: brand name, category id, ...

    def to_dict(self) -> dict[str, str | int | float]:
        return {
            "text": self.text,
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "weight": round(float(self.weight), 4),
            "value": self.value,
        }


class EntityExtractor:
    """Gazetteer (from a knowledge snapshot + built-in lexicons) and regex entity extraction.

    Args:
        snapshot: categories (names + aliases -> product types), brands (+ aliases), noise terms and extra
            entity terms come from here.
        type_weights: prior weight per entity type (noise gets a small one).
    """

    PRIORITY = {
        "brand": 0,
        "product_type": 1,
        "noise": 2,
        "capacity": 3,
        "material": 4,
        "function": 5,
        "colour": 6,
        "audience": 7,
    }

    def __init__(self, snapshot: KnowledgeSnapshot, type_weights: dict[str, float] | None = None):
        self.type_weights = dict(DEFAULT_TYPE_WEIGHTS, **(type_weights or {}))
        self.latin: dict[tuple[str, ...], tuple[str, str, float]] = {}
        self.cjk: dict[str, tuple[str, str, float]] = {}
        self.max_len = 1

        def add(term: str, etype: str, value: str, weight: float | None = None) -> None:
            term = term.strip()
            if not term:
                return
            w = self.type_weights.get(etype, 1.0) if weight is None else weight
            if _CJK.search(term):
                self.cjk.setdefault(term, (etype, value, w))
            else:
                key = tuple(n for n, _, _ in latin_words(term))
                if key:
                    # a brand name wins over a colour/material word of the same spelling only if added first
                    self.latin.setdefault(key, (etype, value, w))
                    self.max_len = max(self.max_len, len(key))

        for n in snapshot.noise_terms:
            add(n, "noise", n)
        # Brands match by whole folded words without plural stripping, longest first:
        # "ADIDAS Originals" is not "ADIDAS Original", "Lakmé" is "LAKME".
        self.brands: dict[tuple[str, ...], str] = {}
        self.brand_max_len = 1
        for b in snapshot.brands:
            for n in (b.name, *b.aliases):
                if _CJK.search(n):
                    add(n, "brand", b.name)
                    continue
                key = brand_words(n)
                if key:
                    self.brands.setdefault(key, b.name)
                    self.brand_max_len = max(self.brand_max_len, len(key))
        # product types: deeper (more specific) categories first so their name wins a clash
        depth = {c.id: len(snapshot.ancestors(c.id)) for c in snapshot.categories}
        for c in sorted(snapshot.categories, key=lambda c: -depth[c.id]):
            for n in (c.name, *c.aliases):
                add(n, "product_type", c.id)
        for t in snapshot.entity_terms:
            add(t.text, t.type, t.text, t.weight)
        for etype, words in (
            ("material", MATERIALS),
            ("colour", COLOURS),
            ("audience", AUDIENCES),
            ("function", FUNCTIONS),
        ):
            for w in words:
                add(w, etype, w)

    def extract(self, title: str) -> list[Entity]:
        """Entities of ``title`` with character offsets, sorted by start."""
        cands: list[Entity] = []
        words = latin_words(title)
        for i in range(len(words)):
            for n in range(min(self.max_len, len(words) - i), 0, -1):
                key = tuple(w for w, _, _ in words[i : i + n])
                hit = self.latin.get(key)
                if hit:
                    s, e = words[i][1], words[i + n - 1][2]
                    cands.append(Entity(title[s:e], hit[0], s, e, hit[2], hit[1]))
                    break
        folded = fold_text(title)
        bwords = [(m.group(0), m.start(), m.end()) for m in _BRAND_WORD.finditer(folded)]
        brand_weight = self.type_weights.get("brand", 1.0)
        for i in range(len(bwords)):
            for n in range(min(self.brand_max_len, len(bwords) - i), 0, -1):
                name = self.brands.get(tuple(w for w, _, _ in bwords[i : i + n]))
                if name is not None:
                    s, e = bwords[i][1], bwords[i + n - 1][2]
                    cands.append(Entity(title[s:e], "brand", s, e, brand_weight, name))
                    break
        for term, (etype, value, w) in self.cjk.items():
            start = title.find(term)
            while start >= 0:
                cands.append(Entity(term, etype, start, start + len(term), w, value))
                start = title.find(term, start + 1)
        for rx, etype in ((CAPACITY_RE, "capacity"), (SIZE_RE, "capacity")):
            for m in rx.finditer(title):
                cands.append(
                    Entity(m.group(0), etype, m.start(), m.end(), self.type_weights[etype], m.group(0))
                )
        # longest first, then by type priority; keep non-overlapping spans
        cands.sort(key=lambda e: (-(e.end - e.start), self.PRIORITY.get(e.type, 9), e.start))
        taken: list[Entity] = []
        used = [False] * (len(title) + 1)
        for ent in cands:
            if any(used[ent.start : ent.end]):
                continue
            for k in range(ent.start, ent.end):
                used[k] = True
            taken.append(ent)
        return sorted(taken, key=lambda e: e.start)

    def token_features(
        self, title: str, offsets: list[tuple[int, int]], entities: list[Entity] | None = None
    ) -> tuple[list[int], list[float]]:
        """Entity type id and prior weight for each sub-word token given its character ``offsets``.

        Special tokens (offset (0, 0)) get type "other" and weight 1.
        """
        ents = self.extract(title) if entities is None else entities
        types, weights = [], []
        for s, e in offsets:
            t, w = TYPE_ID["other"], self.type_weights["other"]
            if e > s:
                for ent in ents:
                    if s < ent.end and e > ent.start:
                        t, w = TYPE_ID[ent.type], ent.weight
                        break
            types.append(t)
            weights.append(w)
        return types, weights


class KeywordModel:
    """Per-category keyword weights learned from labelled titles (smoothed log-odds, JSON-serialisable).

    ``weights[word][category_id]`` = log P(category | word) - log P(category); only words seen at least
    ``min_count`` times are kept, each with its ``top`` strongest categories.
    """

    def __init__(self, weights: dict[str, dict[str, float]] | None = None):
        self.weights = weights or {}

    @staticmethod
    def keys(title: str) -> set[str]:
        ks = {w for w, _, _ in latin_words(title) if not w.isdigit()}
        ks |= {m.group(0) for m in re.finditer(r"[\u3400-\u9fff]{2,}", title)}
        return ks

    @classmethod
    def fit(
        cls, titles: list[str], labels: list[str], *, min_count: int = 3, top: int = 3, alpha: float = 0.5
    ) -> KeywordModel:
        n_c = Counter(labels)
        n = len(labels)
        n_wc: dict[str, Counter[str]] = defaultdict(Counter)
        for t, y in zip(titles, labels, strict=True):
            for k in cls.keys(t):
                n_wc[k][y] += 1
        k_classes = len(n_c)
        weights: dict[str, dict[str, float]] = {}
        for w, cnt in n_wc.items():
            tot = sum(cnt.values())
            if tot < min_count:
                continue
            scored = {
                c: math.log((cnt[c] + alpha) / (tot + alpha * k_classes)) - math.log(n_c[c] / n) for c in cnt
            }
            best = sorted(scored.items(), key=lambda kv: -kv[1])[:top]
            weights[w] = {c: round(v, 4) for c, v in best if v > 0}
        return cls({w: v for w, v in weights.items() if v})

    def scores(self, title: str, category_ids: list[str], noise: set[str] | None = None) -> list[float]:
        """Sum of keyword weights per category (noise words skipped)."""
        idx = {c: i for i, c in enumerate(category_ids)}
        out = [0.0] * len(category_ids)
        for k in self.keys(title):
            if noise and k in noise:
                continue
            for c, v in self.weights.get(k, {}).items():
                if c in idx:
                    out[idx[c]] += v
        return out

    def to_dict(self) -> dict[str, dict[str, float]]:
        return self.weights

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, float]]) -> KeywordModel:
        return cls({str(k): {str(c): float(v) for c, v in vv.items()} for k, vv in d.items()})


def category_text(snapshot: KnowledgeSnapshot, category_id: str) -> str:
    """The text a category prototype is initialised from: path, name, aliases, description."""
    c = snapshot.category(category_id)
    parts = [" > ".join(snapshot.path_of(category_id)), c.name]
    if c.aliases:
        parts.append(", ".join(c.aliases))
    if c.description:
        parts.append(c.description)
    return ". ".join(parts)
