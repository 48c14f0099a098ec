"""The item page's pieces: title segments, top-k rows, findings, similar reviewed listings, completion."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from django.db.models import Q

from classifier.listings.models import Listing
from classifier.review.models import ReviewTask
from classifier.review.selectors import cached_compute
from knowledge.graph.selectors import category_path_labels
from knowledge.models import Brand, BrandAlias, Category, CategoryAlias

CATEGORY_LABELS_KEY = "review:category-leaves:v1"
CATEGORY_LABELS_TTL = 60
SIMILAR_POOL_TTL = 300
LEAVES_LOCAL_TTL = 10  # seconds a worker reuses the leaf list it read without asking Redis again
SIMILAR_LOCAL_TTL = 60  # the similar-listings pools are advice, already minutes old

# (id, path label, searchable text) of an active leaf category.
Leaf = tuple[int, str, str]


class CategoryEntry(TypedDict):
    """A leaf category in the picker: id and full path; the picker adds its display parts."""

    id: int
    label: str
    pct: NotRequired[float | None]
    tag: NotRequired[str]
    prefix: NotRequired[str]
    leaf: NotRequired[str]


class TopKOption(TypedDict):
    name: str
    pct: float


class TopKRow(TypedDict):
    level: str
    label: str
    options: list[TopKOption]


@dataclass(frozen=True)
class TitleSegment:
    text: str
    entity_type: str = ""
    weight: float | None = None


_TYPE_RE = re.compile(r"[^a-z0-9_]")


def title_segments(title: str, entities: object) -> list[TitleSegment]:
    """Split the title into plain and entity segments by char offsets; bad or overlapping spans are dropped.

    The template escapes every segment's text, so a title can never inject markup.
    """
    spans = []
    for ent in entities if isinstance(entities, list) else []:
        if not isinstance(ent, dict):
            continue
        try:
            start, end = int(ent.get("start", "")), int(ent.get("end", ""))
        except (TypeError, ValueError):
            continue
        if 0 <= start < end <= len(title):
            etype = _TYPE_RE.sub("", str(ent.get("type", "entity")).lower())[:20] or "entity"
            try:
                weight = float(ent["weight"]) if ent.get("weight") is not None else None
            except (TypeError, ValueError):
                weight = None
            spans.append((start, end, etype, weight))
    spans.sort()
    segments: list[TitleSegment] = []
    pos = 0
    for start, end, etype, weight in spans:
        if start < pos:
            continue  # overlaps the previous span
        if start > pos:
            segments.append(TitleSegment(title[pos:start]))
        segments.append(TitleSegment(title[start:end], etype, weight))
        pos = end
    if pos < len(title):
        segments.append(TitleSegment(title[pos:]))
    return segments


LEVELS = (("master", "Master category"), ("sub", "Sub-category"), ("article", "Article type"))


def top_k_rows(top_k: object) -> list[TopKRow]:
    """[{level, label, options: [(name, pct)]}] from Prediction.top_k, tolerant of odd shapes."""
    rows: list[TopKRow] = []
    top_k = top_k if isinstance(top_k, dict) else {}
    for key, label in LEVELS:
        options: list[TopKOption] = []
        for item in top_k.get(key, [])[:5]:
            try:
                name, prob = item[0], float(item[1])
            except (TypeError, ValueError, IndexError, KeyError):
                continue
            options.append({"name": str(name), "pct": round(100 * prob, 1)})
        rows.append({"level": key, "label": label, "options": options})
    return rows


def findings_in_words(findings: object) -> list[dict[str, str]]:
    out = []
    for f in findings if isinstance(findings, list) else []:
        if isinstance(f, dict):
            severity = str(f.get("severity", "info"))
            out.append(
                {
                    "code": str(f.get("code", "")),
                    "message": str(f.get("message") or f.get("code") or "finding"),
                    "severity": severity if severity in ("info", "warning", "error", "conflict") else "info",
                }
            )
    return out


_TOKEN_RE = re.compile(r"[\w]+", re.UNICODE)


def _tokens(text: str) -> set[str]:
    tokens = set()
    for tok in _TOKEN_RE.findall(text.lower()):
        if len(tok) > 1 or not tok.isascii():
            tokens.add(tok)
    # CJK titles have no spaces: character bigrams stand in for words.
    for run in re.findall(r"[\u3400-\u9fff]+", text):
        tokens.update(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


@dataclass(frozen=True)
class SimilarListing:
    """A reviewed listing as the similar panel shows it (plain values: cached, no model instance)."""

    pk: int
    title: str
    final_category_id: int | None
    final_brand: str
    tokens: frozenset[str]


class SimilarRow(TypedDict):
    listing: SimilarListing
    overlap: int
    category_label: NotRequired[str]


def review_similar_reviewed(*, task: ReviewTask, limit: int = 5, pool: int = 200) -> list[SimilarRow]:
    """Already-reviewed listings with the same predicted category (or brand), ranked by title-token overlap.

    Cheap: a bounded pool of recent reviewed listings, Jaccard in Python. The pool is cached per
    (category, brand) for SIMILAR_POOL_TTL seconds: at a million listings the query visits every
    reviewed listing of the category (~40 ms for 7,000 rows), and every auditor in the same category
    would run it again (the lasting fix is an index on (final_category, status, -updated_at)); the
    panel is advice, so a few minutes of staleness is fine.
    """
    prediction = task.prediction
    cond = Q()
    if prediction.category_id:
        cond |= Q(final_category_id=prediction.category_id)
    if prediction.brand_id:
        cond |= Q(final_brand_id=prediction.brand_id)
    if not cond:
        return []

    def compute() -> list[SimilarListing]:
        rows = (
            Listing.objects.filter(cond, status=Listing.Status.REVIEWED)
            .order_by("-updated_at")
            .values_list("id", "title", "final_category_id", "final_brand__name")[: pool + 1]
        )
        return [
            SimilarListing(pk, title, category_id, brand or "", frozenset(_tokens(title)))
            for pk, title, category_id, brand in rows
        ]

    key = f"review:similar:v2:{prediction.category_id or 0}:{prediction.brand_id or 0}:{pool}"
    candidates = [
        c
        for c in cached_compute(key, SIMILAR_POOL_TTL, compute, local_ttl=SIMILAR_LOCAL_TTL)
        if c.pk != task.listing_id
    ][:pool]
    mine = _tokens(task.listing.title)
    scored = []
    for listing in candidates:
        theirs = listing.tokens
        overlap = len(mine & theirs) / len(mine | theirs) if (mine or theirs) else 0.0
        scored.append((overlap, listing))
    scored.sort(key=lambda pair: pair[0], reverse=True)
    return [{"listing": listing, "overlap": round(100 * overlap)} for overlap, listing in scored[:limit]]


def category_leaves() -> list[Leaf]:
    """(id, path label, searchable text) of every active leaf category, cached for a minute."""

    def compute() -> list[Leaf]:
        labels = category_path_labels()
        rows = list(Category.objects.values_list("id", "parent_id", "is_active"))
        inactive = {pk for pk, _, active in rows if not active}
        parents = dict((pk, parent) for pk, parent, _ in rows)
        with_active_children = {parent for pk, parent, active in rows if parent and active}
        aliases: dict[int, list[str]] = {}
        for cat_id, alias in CategoryAlias.objects.values_list("category_id", "alias"):
            aliases.setdefault(cat_id, []).append(alias)
        leaves: list[Leaf] = []
        for pk, _parent, active in rows:
            if not active or pk in with_active_children:
                continue
            node, ok = parents.get(pk), True
            while node:
                if node in inactive:
                    ok = False
                    break
                node = parents.get(node)
            if ok:
                label = labels[pk]
                leaves.append((pk, label, (label + " " + " ".join(aliases.get(pk, []))).lower()))
        leaves.sort(key=lambda row: row[1])
        return leaves

    return cached_compute(CATEGORY_LABELS_KEY, CATEGORY_LABELS_TTL, compute, local_ttl=LEAVES_LOCAL_TTL)


def category_leaf_search(*, q: str, limit: int = 12) -> list[CategoryEntry]:
    """Active leaf categories whose path or aliases contain every word of `q`, leaf-name matches first."""
    words = [w for w in q.lower().split() if w][:6]
    if not words:
        return []
    hits = []
    for pk, label, text in category_leaves():
        if all(w in text for w in words):
            leaf = label.rsplit(" > ", 1)[-1].lower()
            rank = 0 if leaf.startswith(words[0]) else 1 if words[0] in leaf else 2
            hits.append((rank, label, pk))
    hits.sort()
    return [{"id": pk, "label": label} for _, label, pk in hits[:limit]]


def brand_search(*, q: str, limit: int = 10) -> list[str]:
    q = q.strip()
    if not q:
        return []
    names = list(
        Brand.objects.filter(is_active=True, name__istartswith=q)
        .order_by("name")
        .values_list("name", flat=True)[:limit]
    )
    if len(names) < limit:
        names += [
            n
            for n in Brand.objects.filter(is_active=True, name__icontains=q)
            .exclude(name__istartswith=q)
            .order_by("name")
            .values_list("name", flat=True)[: limit - len(names)]
        ]
    if len(names) < limit:
        for _alias, brand in BrandAlias.objects.filter(
            alias__istartswith=q, brand__is_active=True
        ).values_list("alias", "brand__name")[: limit - len(names)]:
            if brand not in names:
                names.append(brand)
    return names
