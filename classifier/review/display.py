"""Reads for the review and listing pages' presentation: unambiguous category names, the category
picker's suggested and recent entries, the title words behind the attention map, and what the model
predicted for listings still in review.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import NotRequired, TypedDict

from django.contrib.auth.models import User
from django.db import connection
from django.urls import reverse
from django.utils.text import Truncator

from classifier.listings.models import Prediction
from classifier.review.item import CategoryEntry, Leaf, TopKRow, category_leaf_search, category_leaves
from classifier.review.models import ReviewDecision, ReviewTask
from classifier.review.selectors import cached_compute
from knowledge.graph.selectors import category_path_labels
from knowledge.models import Category

DISPLAY_KEY = "review:category-display:v1"
DISPLAY_TTL = 60
SEP = " > "


def _labels_key() -> str:
    """A cache key that changes with any category edit (count, newest edit, newest id): one aggregate
    query instead of walking parents row by row, and never a stale name after a rename."""

    # In SQL: the ORM's aggregate cost three times what PostgreSQL takes to answer it.
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*), max("id"), max("updated_at") FROM "{Category._meta.db_table}"')
        n, top, last = cursor.fetchone()
    return labels_key_from(n, top, last)


def labels_key_from(count: int, top_id: int | None, last_edit: datetime | str | None) -> str:
    """The labels' cache key from the category stamp. A raw query gives PostgreSQL's newest edit as a
    datetime and SQLite's (the demo) as text; either becomes a key without spaces."""
    if isinstance(last_edit, datetime):
        stamp = str(last_edit.timestamp())
    else:
        stamp = str(last_edit or 0).replace(" ", "T")
    return f"{DISPLAY_KEY}:{count}:{top_id}:{stamp}"


def _labels() -> dict[str, dict[int, str]]:
    def compute() -> dict[str, dict[int, str]]:
        paths = category_path_labels()
        names = Counter(label.rsplit(SEP, 1)[-1].lower() for label in paths.values())
        display = {
            pk: (label if names[label.rsplit(SEP, 1)[-1].lower()] > 1 else label.rsplit(SEP, 1)[-1])
            for pk, label in paths.items()
        }
        return {"paths": paths, "display": display}

    # The key changes with every category edit, so this process may keep what it read.
    return cached_compute(_labels_key(), DISPLAY_TTL, compute, local_ttl=DISPLAY_TTL)


def category_paths() -> dict[int, str]:
    """id -> path label of every category."""
    return _labels()["paths"]


def category_display_labels() -> dict[int, str]:
    """id -> the category's leaf name when no other category has that name, else its full path.

    "Tshirts" alone is fine while there is one; once Men > Tshirts and Women > Tshirts both exist, a
    bare "Tshirts" is ambiguous, so both are shown with their paths.
    """
    return _labels()["display"]


Leaves = list[Leaf]
ByName = dict[str, list[tuple[int, str]]]


class Picker(TypedDict):
    suggested: list[CategoryEntry]
    recent: list[CategoryEntry]
    results: list[CategoryEntry]
    q: str


class AttentionWord(TypedDict):
    text: str
    type: str
    weight: float
    pct: NotRequired[int]


class PredictedLabel(TypedDict):
    label: str
    path: str
    confidence: float
    brand: str


class QueueRow(TypedDict):
    pk: int
    title: str
    label: str
    confidence: str
    reason: str
    reason_label: str
    overdue: bool
    age: str
    claim_url: str


# The last leaves list indexed and its index: the item page resolves the top-k names twice (the
# top-k panel and the picker) from the same list, read once per request.
_by_name_last: tuple[Leaves, ByName] | None = None


def _leaves_by_name(leaves: Leaves | None = None) -> ByName:
    global _by_name_last
    leaves = category_leaves() if leaves is None else leaves
    last = _by_name_last
    if last is not None and last[0] is leaves:
        return last[1]
    by_name: ByName = {}
    for pk, label, _text in leaves:
        by_name.setdefault(label.rsplit(SEP, 1)[-1].lower(), []).append((pk, label))
    _by_name_last = (leaves, by_name)
    return by_name


def _resolve_leaf(name: str, prediction: Prediction, by_name: ByName) -> list[tuple[int, str]]:
    """The active leaves a top-k name stands for; the predicted master/sub break ties."""
    if SEP in name:  # already a path (a snapshot id)
        return [
            (pk, label) for pk, label in by_name.get(name.rsplit(SEP, 1)[-1].lower(), []) if label == name
        ]
    candidates = by_name.get(name.lower(), [])
    if len(candidates) <= 1:
        return candidates
    for prefix in (
        f"{prediction.master_category}{SEP}{prediction.sub_category}{SEP}",
        f"{prediction.master_category}{SEP}",
    ):
        narrowed = [c for c in candidates if c[1].startswith(prefix)]
        if narrowed:
            return narrowed
    return candidates


def category_suggestions(
    *, prediction: Prediction, limit: int = 5, leaves: Leaves | None = None
) -> list[CategoryEntry]:
    """The model's top-k leaf categories as picker entries: [{id, label, pct}], most probable first.

    `leaves`: `category_leaves()` when the caller already has them (one cache read per page)."""
    by_name = _leaves_by_name(leaves)
    out: list[CategoryEntry] = []
    seen: set[int] = set()
    top = (prediction.top_k or {}).get("article", []) if isinstance(prediction.top_k, dict) else []
    for item in top[:limit]:
        try:
            name, prob = str(item[0]), float(item[1])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        for pk, label in _resolve_leaf(name, prediction, by_name):
            if pk not in seen:
                seen.add(pk)
                out.append({"id": pk, "label": label, "pct": round(100 * prob, 1)})
    return out[: limit + 2]


def category_recent_for(
    *, auditor: User, limit: int = 5, scan: int = 50, leaves: Leaves | None = None
) -> list[CategoryEntry]:
    """Leaf categories this auditor chose most recently (approve/correct), newest first, no repeats."""
    live = {pk: label for pk, label, _text in (category_leaves() if leaves is None else leaves)}
    out: list[CategoryEntry] = []
    for category_id in (
        ReviewDecision.objects.filter(
            auditor=auditor,
            action__in=[ReviewDecision.Action.CORRECT, ReviewDecision.Action.APPROVE],
            category__isnull=False,
        )
        .order_by("-created_at", "-id")
        .values_list("category_id", flat=True)[:scan]
    ):
        if category_id in live and all(row["id"] != category_id for row in out):
            out.append({"id": category_id, "label": live[category_id]})
            if len(out) >= limit:
                break
    return out


def category_picker(
    *, q: str, prediction: Prediction | None, auditor: User, limit: int = 12, leaves: Leaves | None = None
) -> Picker:
    """The picker's content: with no query, the model's suggestions then the auditor's recent picks;
    with a query, every matching leaf, suggested and recent ones first. Labels are full paths."""

    leaves = category_leaves() if leaves is None else leaves
    suggested = category_suggestions(prediction=prediction, leaves=leaves) if prediction is not None else []
    recent = category_recent_for(auditor=auditor, leaves=leaves)
    suggested_ids = {row["id"] for row in suggested}
    recent = [row for row in recent if row["id"] not in suggested_ids]
    words = q.lower().split()
    if not words:
        return {"suggested": _split(suggested), "recent": _split(recent), "results": [], "q": ""}
    hits = category_leaf_search(q=q, limit=200)
    first = {row["id"]: 0 for row in suggested} | {row["id"]: 1 for row in recent}
    pct = {row["id"]: row.get("pct") for row in suggested}
    hits.sort(key=lambda row: first.get(row["id"], 2))  # stable: keeps the search's own ranking within
    results: list[CategoryEntry] = [
        {
            **row,
            "pct": pct.get(row["id"]),
            "tag": "suggested" if first.get(row["id"]) == 0 else "recent" if row["id"] in first else "",
        }
        for row in hits[:limit]
    ]
    return {"suggested": [], "recent": [], "results": _split(results), "q": q}


def _split(rows: list[CategoryEntry]) -> list[CategoryEntry]:
    """Adds `prefix` ("Apparel > Topwear > ") and `leaf` ("Tshirts") for display."""
    for row in rows:
        prefix, _, leaf = row["label"].rpartition(SEP)
        row["prefix"], row["leaf"] = (prefix + SEP if prefix else ""), leaf
    return rows


def attention_words(entities: object, *, limit: int = 6) -> list[AttentionWord]:
    """The title words that steered the attention map: extracted entities by weight, noise left out.

    The model weights each title token by its entity type before the text guides channel and spatial
    attention over the photo, so the heaviest entities are the words the heatmap answers to.
    """
    rows: list[AttentionWord] = []
    for ent in entities if isinstance(entities, list) else []:
        if not isinstance(ent, dict) or str(ent.get("type", "")) == "noise":
            continue
        try:
            weight = float(ent.get("weight", 0.0))
        except (TypeError, ValueError):
            continue
        text = str(ent.get("text", "")).strip()
        if text and weight > 0:
            rows.append({"text": text[:60], "type": str(ent.get("type", "entity"))[:20], "weight": weight})
    rows.sort(key=lambda r: -r["weight"])
    top = max((r["weight"] for r in rows), default=1.0) or 1.0
    for r in rows:
        r["pct"] = round(100 * r["weight"] / top)
    return rows[:limit]


def top_k_rows_unambiguous(
    top_k_rows: list[TopKRow], prediction: Prediction, leaves: Leaves | None = None
) -> list[TopKRow]:
    """The item page's top-k rows, with article names that several leaves share shown as paths."""
    by_name = _leaves_by_name(leaves)
    for row in top_k_rows:
        if row.get("level") != "article":
            continue
        for opt in row["options"]:
            if len(by_name.get(opt["name"].lower(), [])) > 1:
                resolved = _resolve_leaf(opt["name"], prediction, by_name)
                opt["name"] = resolved[0][1] if len(resolved) == 1 else opt["name"] + " (ambiguous)"
    return top_k_rows


def listings_predicted(*, listing_ids: list[int]) -> dict[int, PredictedLabel]:
    """For listings waiting in review: what the model predicted (the open task's prediction)."""
    rows = (
        ReviewTask.objects.filter(listing_id__in=listing_ids)
        .exclude(status=ReviewTask.Status.DONE)
        .values_list(
            "listing_id",
            "prediction__category_id",
            "prediction__category_label",
            "prediction__confidence",
            "prediction__brand_label",
        )
    )
    display = category_display_labels()
    out: dict[int, PredictedLabel] = {}
    for listing_id, category_id, label, confidence, brand in rows:
        out[listing_id] = {
            "label": display.get(category_id, label) if category_id else label,
            "path": label,
            "confidence": confidence,
            "brand": brand,
        }
    return out


def category_display(category: Category | None) -> str:
    if category is None:
        return ""
    return category_display_labels().get(category.pk, category.name)


def decimal_text(value: float, places: int) -> str:
    """What `{{ value|floatformat:places }}` shows (half-up on the shortest decimal form), without the
    template filter's per-call locale machinery: the queue list formats two numbers on each of 50 rows."""
    rounded = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return f"{rounded if rounded else abs(rounded):f}"


_PK_MARK = 987654321


def review_queue_rows(tasks: list[ReviewTask]) -> list[QueueRow]:
    """The queue list's rows as plain strings: the template loops over values, not over model
    lookups, filters and a URL reversal per row (most of the queue page's time was spent there)."""
    claim_url = reverse("review-claim", args=[_PK_MARK])
    reasons = dict(ReviewTask.Reason.choices)
    rows: list[QueueRow] = []
    for task in tasks:
        overdue = bool(task.is_overdue)
        rows.append(
            {
                "pk": task.pk,
                "title": Truncator(task.listing.title).chars(70),
                "label": task.prediction.category_label,
                "confidence": decimal_text(task.prediction.confidence, 2),
                "reason": task.reason,
                "reason_label": reasons.get(task.reason, task.reason),
                "overdue": overdue,
                "age": decimal_text(task.age_hours, 0 if overdue else 1),
                "claim_url": claim_url.replace(str(_PK_MARK), str(task.pk)),
            }
        )
    return rows
