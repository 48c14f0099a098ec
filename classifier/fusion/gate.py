"""The promotion gate's evaluation: the frozen evaluation set, :func:`evaluate` (an engine over labelled
items) and :func:`gate_compare` (a candidate's metrics against production's on the same sets).

No Django here: the registry calls :func:`evaluate` on a frozen evaluation set and on recently reviewed items,
then :func:`gate_compare` on the two metric dicts. The figures are :mod:`classifier.fusion.evaluation`'s.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from classifier.fusion.finetune import FinetuneCancelled, ImageSource, ProgressCallback

if TYPE_CHECKING:
    import PIL.Image

    from classifier.fusion.engine import ListingInput

Metrics = Mapping[str, object]  # what evaluate() returns (JSON: stored on the model version)


class Prediction(Protocol):
    """What :func:`evaluate` reads of a prediction (the engine's ``FusionPrediction`` has it)."""

    @property
    def category_id(self) -> str: ...
    @property
    def master_category(self) -> str: ...
    @property
    def sub_category(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def needs_review(self) -> bool: ...


class Predictor(Protocol):
    """An engine, or a wrapper that records its answers."""

    def predict_batch(self, items: list[ListingInput]) -> Sequence[Prediction]: ...


@dataclass(frozen=True)
class LabelledItem:
    """One evaluation item: an image (path or bytes), a title and its true leaf category id."""

    image: ImageSource
    title: str
    category_id: str
    brand: str = ""
    key: str = ""


# ---- the frozen evaluation set ------------------------------------------------------------------------
def frozen_eval_set(
    catalogue_csv: str | Path,
    *,
    split: str = "test",
    size: int = 300,
    seed: int = 0,
    leaves: set[str] | None = None,
) -> tuple[str, list[LabelledItem]]:
    """A fixed slice of the catalogue's ``split``: ``size`` rows sampled with ``seed`` from the rows whose
    leaf is one the model knows (``leaves``; all rows when None).

    Returns:
        (name, items): ``name`` identifies the set exactly (split, size, seed and a digest of the ids), so a
        metric is only ever compared with one computed on the same items.
    """
    from classifier.fusion.data import read_catalogue

    catalogue_csv = Path(catalogue_csv)
    rows = [r for r in read_catalogue(catalogue_csv) if r.split == split]
    if leaves is not None:
        rows = [r for r in rows if r.leaf_id in leaves]
    rows.sort(key=lambda r: (len(r.id), r.id))
    if len(rows) > size:
        rows = random.Random(seed).sample(rows, size)
        rows.sort(key=lambda r: (len(r.id), r.id))
    digest = hashlib.sha256(",".join(r.id for r in rows).encode()).hexdigest()[:10]
    name = f"{catalogue_csv.parent.name}:{split}:n={len(rows)}:seed={seed}:{digest}"
    base = catalogue_csv.parent
    items = [LabelledItem(str(base / r.image), r.title, r.leaf_id, key=r.id) for r in rows]
    return name, items


# ---- evaluation -------------------------------------------------------------------------------------
def _image_bytes(src: ImageSource) -> bytes | PIL.Image.Image:
    if isinstance(src, (bytes, bytearray)):
        return bytes(src)
    if isinstance(src, (str, Path)):
        return Path(src).read_bytes()
    return src  # a PIL image


def evaluate(
    engine: Predictor,
    items: Sequence[LabelledItem],
    *,
    batch_size: int = 32,
    progress_callback: ProgressCallback | None = None,
) -> dict[str, object]:
    """Run ``engine.predict_batch`` over ``items`` and summarise.

    Returns:
        ``{"n", "accuracy": {"master", "sub", "article"}, "per_category": {leaf: [n, correct]}, "ece",
        "review_rate", "auto_accept_precision", "auto_accepted", "latency_ms": {"mean", "p95"},
        "seconds_per_item", "unreadable"}``. Accuracies are fractions in [0, 1].
    """
    from classifier.fusion.engine import ListingInput
    from classifier.fusion.evaluation import accuracy, ece

    hits: dict[str, list[bool]] = {"master": [], "sub": [], "article": []}
    per_cat: dict[str, list[int]] = {}
    conf: list[float] = []
    auto_ok: list[bool] = []  # correctness of the auto-accepted answers
    review = unreadable = 0
    lat: list[float] = []
    t0 = time.perf_counter()
    done = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs, kept = [], []
        for it in chunk:
            try:
                inputs.append(ListingInput(image=_image_bytes(it.image), title=it.title, key=it.key))
                kept.append(it)
            except OSError:
                unreadable += 1
        preds = engine.predict_batch(inputs) if inputs else []
        for it, p in zip(kept, preds, strict=True):
            truth = [s.strip() for s in it.category_id.split(">")]
            ok_leaf = p.category_id == it.category_id
            hits["master"].append(len(truth) > 0 and p.master_category == truth[0])
            hits["sub"].append(
                len(truth) > 1 and p.master_category == truth[0] and p.sub_category == truth[1]
            )
            hits["article"].append(ok_leaf)
            pc = per_cat.setdefault(it.category_id, [0, 0])
            pc[0] += 1
            pc[1] += int(ok_leaf)
            conf.append(float(p.confidence))
            lat.append(float(p.latency_ms))
            if p.needs_review:
                review += 1
            else:
                auto_ok.append(ok_leaf)
        done += len(chunk)
        if progress_callback is not None:
            ev = {"phase": "evaluating", "done": done, "total": len(items), "message": None}
            if progress_callback(ev) is False:
                raise FinetuneCancelled()
    n = len(conf)
    lat_sorted = sorted(lat)
    return {
        "n": n,
        "accuracy": {k: accuracy(v) for k, v in hits.items()},
        "per_category": per_cat,
        "ece": ece(np.asarray(conf, dtype=float), np.asarray(hits["article"], dtype=bool)),
        "review_rate": review / n if n else 0.0,
        "auto_accepted": len(auto_ok),
        "auto_accept_precision": accuracy(auto_ok) if auto_ok else None,
        "latency_ms": {
            "mean": sum(lat) / n if n else 0.0,
            "p95": lat_sorted[min(n - 1, math.ceil(0.95 * n) - 1)] if n else 0.0,
        },
        "seconds_per_item": (time.perf_counter() - t0) / n if n else 0.0,
        "unreadable": unreadable,
    }


def gate_compare(
    candidate: Mapping[str, Metrics | None],
    baseline: Mapping[str, Metrics | None] | None,
    *,
    margin_points: float = 0.5,
    category_margin_points: float = 5.0,
    large_category_min: int = 30,
    recent_min_items: int = 20,
) -> tuple[bool, list[str], list[str]]:
    """Compare a candidate with the production version on the same evaluation sets.

    Args:
        candidate, baseline: ``{"frozen": evaluate(...), "recent": evaluate(...) or None}``.
        margin_points: refuse when leaf accuracy drops by more than this many percentage points on the frozen
            set or on the recently reviewed items.
        category_margin_points: ... or by more than this on any category with >= ``large_category_min``
            frozen items (per-category samples are small: one item in 30 is 3.3 points).
        recent_min_items: fewer recently reviewed items than this and that check is skipped (said in notes).

    Returns:
        (passed, reasons it is refused, notes).
    """
    reasons: list[str] = []
    notes: list[str] = []
    if baseline is None:
        notes.append("no version in production: nothing to compare with")
        return True, reasons, notes

    # the metrics are JSON (evaluate()'s dicts, as stored on the model versions): read as such
    cand = cast("Mapping[str, dict[str, Any] | None]", candidate)
    base = cast("Mapping[str, dict[str, Any] | None]", baseline)

    def acc(m: dict[str, Any] | None) -> float | None:
        return None if not m or not m.get("n") else float(m["accuracy"]["article"])

    for key, label in (("frozen", "frozen evaluation set"), ("recent", "recently reviewed items")):
        c, b = cand.get(key), base.get(key)
        ca, ba = acc(c), acc(b)
        if c is None or ca is None or ba is None:
            notes.append(f"{label}: not evaluated (no items)")
            continue
        if key == "recent" and c["n"] < recent_min_items:
            notes.append(f"{label}: only {c['n']} items (< {recent_min_items}), check skipped")
            continue
        drop = 100.0 * (ba - ca)
        line = (
            f"{label}: leaf accuracy {100 * ca:.1f}% vs {100 * ba:.1f}% in production "
            f"({-drop:+.1f} points, n={c['n']})"
        )
        if drop > margin_points + 1e-9:
            reasons.append(f"{line}; worse than the {margin_points:g}-point margin")
        else:
            notes.append(line)
    cf, bf = cand.get("frozen") or {}, base.get("frozen") or {}
    for cat, (n, ok) in sorted((cf.get("per_category") or {}).items()):
        if n < large_category_min or cat not in (bf.get("per_category") or {}):
            continue
        bn, bok = bf["per_category"][cat]
        drop = 100.0 * (bok / bn - ok / n)
        if drop > category_margin_points + 1e-9:
            reasons.append(
                f"category {cat} ({n} frozen items): {100 * ok / n:.1f}% vs {100 * bok / bn:.1f}% "
                f"({-drop:+.1f} points; margin {category_margin_points:g} for large categories)"
            )
    return not reasons, reasons, notes
