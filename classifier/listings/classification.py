"""Classify listings with the fusion model and route each one: auto-accept or review.

`listings_classify` is what the `classify_listings` task calls. It is idempotent: a listing
that already has a prediction from the serving model version is skipped, so a redelivered
task (worker killed mid-batch, broker visibility timeout) changes nothing the second time.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from numpy.typing import ArrayLike
from PIL import Image

from classifier.audit import audit_record
from classifier.fusion.outcome import prediction_names_type
from classifier.fusion.routing import (
    TITLE_NAMES_NO_TYPE,
    Finding,
    RouteDecision,
    RouteReason,
    from_the_model,
    route,
)
from classifier.listings.models import Listing, Prediction
from classifier.registry.serving import LoadedEngine, engine_for_batch
from classifier.review.models import ReviewTask
from classifier.review.services import review_task_open
from knowledge.graph.selectors import brand_by_name, category_by_path_label

log = logging.getLogger(__name__)


# Statuses a prediction may route from. A listing a person already decided keeps its label.
ROUTABLE = (Listing.Status.QUEUED, Listing.Status.FAILED)


@dataclass
class BatchReport:
    """What one call did, with per-stage timings for the benchmark."""

    model_version: str = ""
    requested: int = 0
    classified: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    in_review: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    # seconds
    load_s: float = 0.0
    inference_s: float = 0.0
    write_s: float = 0.0

    def as_dict(self) -> dict[str, str | int | float]:
        return {
            "model_version": self.model_version,
            "requested": self.requested,
            "classified": len(self.classified),
            "accepted": len(self.accepted),
            "in_review": len(self.in_review),
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "missing": len(self.missing),
            "load_s": round(self.load_s, 4),
            "inference_s": round(self.inference_s, 4),
            "write_s": round(self.write_s, 4),
            "inference_ms_per_item": round(
                1000 * self.inference_s / max(1, len(self.classified) + len(self.failed)), 2
            ),
        }


# A perceptual dark-blue -> cyan -> yellow -> red ramp (anchor colours, linearly interpolated).
_RAMP = np.array(
    [
        [0, 0, 64],
        [0, 64, 192],
        [0, 192, 224],
        [96, 224, 96],
        [255, 224, 0],
        [255, 96, 0],
        [200, 0, 0],
    ],
    dtype=np.float32,
)


def attention_png(
    attention: ArrayLike | None, *, width: int, height: int, max_side: int = 448
) -> bytes | None:
    """A colour heatmap PNG of an attention map [h, w] in [0, 1], shaped like the photo."""
    if attention is None:
        return None
    values = np.asarray(attention, dtype=np.float32)
    if values.ndim != 2 or values.size == 0:
        return None
    values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    pos = values * (len(_RAMP) - 1)
    low = np.floor(pos).astype(np.int64).clip(0, len(_RAMP) - 1)
    high = (low + 1).clip(0, len(_RAMP) - 1)
    frac = (pos - low)[..., None]
    rgb = (_RAMP[low] * (1 - frac) + _RAMP[high] * frac).astype(np.uint8)  # [h, w, 3]
    scale = min(1.0, max_side / max(width, height, 1))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(rgb, mode="RGB").resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def serving_threshold(loaded: LoadedEngine) -> float:
    """The review threshold in force: REVIEW_THRESHOLD when set, else the serving ModelVersion's
    (chosen on `val` when it was registered), else the one calibrated into the artifact."""
    if settings.REVIEW_THRESHOLD is not None:
        return float(settings.REVIEW_THRESHOLD)
    stored = getattr(loaded.version, "review_threshold", None)
    if stored is not None:
        return float(stored)
    return float(loaded.engine.review_threshold)


def item_threshold(loaded: LoadedEngine, pred: Any, threshold: float) -> float:
    """The threshold one fresh prediction is routed at, as the engine routed it: `threshold`, or the
    model's stricter untyped threshold when the title names no product type."""
    return threshold if prediction_names_type(pred) else float(loaded.engine.untyped_threshold(threshold))


def prediction_route(
    *, confidence: float, findings: Iterable[Finding | Mapping[str, object]] | None, threshold: float
) -> RouteDecision:
    """`classifier.fusion.routing.route` for a stored or fresh prediction: the one routing rule."""
    return route(confidence=float(confidence), threshold=float(threshold), findings=list(findings or []))


def task_reason_for(decision: RouteDecision) -> str:
    """The queue's `ReviewTask.reason` for a routing decision (knowledge reasons share one queue)."""
    knowledge = {RouteReason.KNOWLEDGE_CONFLICT, RouteReason.UNKNOWN_CATEGORY}
    if any(r in knowledge for r in decision.reasons):
        return ReviewTask.Reason.KNOWLEDGE_CONFLICT
    return ReviewTask.Reason.LOW_CONFIDENCE


def _findings_in_words(pred: Any, *, threshold: float) -> str:
    lines = [
        str(f.get("message") or f.get("code"))
        for f in pred.knowledge_findings or []
        if str(f.get("severity", "")).lower() == "conflict" or from_the_model(f)
    ]
    held_by_title = any(f.get("code") == TITLE_NAMES_NO_TYPE for f in pred.knowledge_findings or [])
    if pred.confidence < threshold and not held_by_title:  # the hint above already says why
        if threshold > 1:  # the model's untyped threshold: no confidence is enough for such a title
            lines.append("the title names no product type: such titles always go to a person")
        else:
            lines.append(f"confidence {pred.confidence:.2f} is below the review threshold {threshold:.2f}")
    return "\n".join(line for line in lines if line)


class _Lookups:
    """Category and brand rows by the names the model gave, looked up once per batch."""

    def __init__(self) -> None:
        self._categories: dict[str, Any] = {}
        self._brands: dict[str, Any] = {}

    def category(self, label: str | None) -> Any:
        if not label:
            return None
        if label not in self._categories:
            self._categories[label] = category_by_path_label(label)
        return self._categories[label]

    def brand(self, name: str | None) -> Any:
        if not name:
            return None
        if name not in self._brands:
            self._brands[name] = brand_by_name(name)
        return self._brands[name]


def _write_one(
    listing_id: int, pred: Any, *, loaded: Any, threshold: float, report: BatchReport, lookups: _Lookups
) -> None:
    version = loaded.version
    with transaction.atomic():
        # The row lock serialises two workers that both got this listing; the second sees the
        # first's prediction below and stops.
        listing = Listing.objects.select_for_update().filter(pk=listing_id).first()
        if listing is None:
            report.missing.append(listing_id)
            return
        if Prediction.objects.filter(listing_id=listing_id, model_version=version).exists():
            report.skipped.append(listing_id)
            return
        routed_at = item_threshold(loaded, pred, threshold)
        decision = prediction_route(
            confidence=pred.confidence, findings=pred.knowledge_findings, threshold=routed_at
        )
        levels = [*list(pred.level_confidences), 0.0, 0.0, 0.0]
        prediction = Prediction(
            listing=listing,
            model_version=version,
            category=lookups.category(pred.category_id),
            category_label=pred.category_id or "",
            master_category=pred.master_category or "",
            sub_category=pred.sub_category or "",
            article_type=pred.article_type or "",
            master_confidence=float(levels[0]),
            sub_confidence=float(levels[1]),
            article_confidence=float(levels[2]),
            confidence=float(pred.confidence),
            top_k=_jsonable(pred.top_k),
            brand=lookups.brand(pred.brand),
            brand_label=(pred.brand or "")[:200],
            brand_confidence=float(pred.brand_confidence or 0.0),
            compute_path=pred.path,
            latency_ms=float(pred.latency_ms),
            complexity=float(pred.complexity or 0.0),
            knowledge_version=int(
                getattr(pred, "snapshot_version", 0) or getattr(loaded.engine, "snapshot_version", 0) or 0
            ),
            knowledge_findings=_jsonable(pred.knowledge_findings or []),
            entities=_jsonable(pred.entities or []),
            needs_review=decision.needs_review,
            review_reasons=[r.value for r in decision.reasons],
            route_reason=decision.primary,
        )
        png = attention_png(pred.attention_map, width=listing.image_width, height=listing.image_height)
        if png:
            prediction.attention_map.save(f"{listing.pk}-{version.pk}.png", ContentFile(png), save=False)
        try:
            with transaction.atomic():
                prediction.save(force_insert=True)
        except IntegrityError:
            if prediction.attention_map:
                prediction.attention_map.delete(save=False)
            report.skipped.append(listing_id)
            return
        report.classified.append(listing_id)
        if listing.status not in ROUTABLE:
            return  # a person decided it already: record the prediction, do not re-route
        if not decision.needs_review:
            listing.status = Listing.Status.ACCEPTED
            listing.final_category = prediction.category
            listing.final_brand = prediction.brand
            listing.failure_reason = ""
            listing.save(
                update_fields=["status", "final_category", "final_brand", "failure_reason", "updated_at"]
            )
            audit_record(
                actor=None,
                verb="listing.auto_accept",
                obj=listing,
                data={
                    "prediction": prediction.pk,
                    "confidence": prediction.confidence,
                    "threshold": routed_at,
                },
            )
            report.accepted.append(listing_id)
            return
        reason = task_reason_for(decision)
        task = review_task_open(
            prediction=prediction,
            reasons=[reason],
            reason_detail=_findings_in_words(pred, threshold=routed_at),
            route_reason=decision.primary,
        )
        listing.status = Listing.Status.IN_REVIEW
        listing.failure_reason = ""
        listing.save(update_fields=["status", "failure_reason", "updated_at"])
        audit_record(
            actor=None,
            verb="listing.route_review",
            obj=listing,
            data={
                "prediction": prediction.pk,
                "task": task.pk,
                "reason": reason,
                "route_reason": decision.primary,
                "confidence": prediction.confidence,
            },
        )
        report.in_review.append(listing_id)


def _jsonable(value: Any) -> Any:
    """Tuples to lists and numpy scalars to floats, so JSONField stores them."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _mark_failed(listing_id: int, reason: str, report: BatchReport) -> None:
    with transaction.atomic():
        listing = Listing.objects.select_for_update().filter(pk=listing_id).first()
        if listing is None:
            report.missing.append(listing_id)
            return
        already = listing.status == Listing.Status.FAILED and listing.failure_reason == reason[:2000]
        if listing.status in ROUTABLE and not already:  # a redelivery changes nothing
            listing.status = Listing.Status.FAILED
            listing.failure_reason = reason[:2000]
            listing.save(update_fields=["status", "failure_reason", "updated_at"])
            audit_record(
                actor=None, verb="listing.classify_failed", obj=listing, data={"reason": reason[:500]}
            )
    report.failed.append(listing_id)


def _load_image(listing: Listing) -> Image.Image:
    with listing.image.open("rb") as handle:
        data = handle.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def listings_classify(*, listing_ids: list[int], extra_ids: list[int] | None = None) -> BatchReport:
    """Predict the listings that still need a prediction from the serving model, then route each.

    Args:
        listing_ids: the listings to classify; missing ids are logged and skipped.
        extra_ids: more listings to fold into the same model batch (opportunistic batching).

    Returns:
        A `BatchReport` (ids per outcome and stage timings).
    """
    from classifier.fusion.engine import ListingInput

    started = time.perf_counter()
    wanted = list(dict.fromkeys(int(i) for i in [*listing_ids, *(extra_ids or [])]))
    report = BatchReport(requested=len(wanted))
    existing = set(Listing.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    for listing_id in wanted:
        if listing_id not in existing:
            log.warning("listing %s does not exist; skipped", listing_id)
            report.missing.append(listing_id)
    if not existing:
        return report  # nothing to do: do not even load the model

    loaded = engine_for_batch()
    version = loaded.version
    report.model_version = version.name
    threshold = serving_threshold(loaded)

    done = set(
        Prediction.objects.filter(listing_id__in=existing, model_version=version).values_list(
            "listing_id", flat=True
        )
    )
    report.skipped.extend(i for i in wanted if i in done)
    listings = {listing.pk: listing for listing in Listing.objects.filter(pk__in=existing - done)}

    inputs: list[tuple[int, Any]] = []
    for listing_id, listing in listings.items():
        try:
            image = _load_image(listing)
        except Exception as exc:  # unreadable or missing file: this listing fails, not the batch
            _mark_failed(listing_id, f"image could not be decoded: {exc}", report)
            continue
        inputs.append(
            (
                listing_id,
                ListingInput(
                    image=image, title=listing.title, description=listing.description, key=str(listing_id)
                ),
            )
        )
    report.load_s = time.perf_counter() - started
    if not inputs:
        return report

    t0 = time.perf_counter()
    predictions: list[tuple[int, Any]] = []
    try:
        results = loaded.engine.predict_batch([item for _, item in inputs], review_threshold=threshold)
        predictions = list(zip([i for i, _ in inputs], results, strict=True))
    except Exception:
        # One bad item must not sink the batch: retry one by one and fail only the culprits.
        log.exception("batch of %s failed; retrying item by item", len(inputs))
        for listing_id, item in inputs:
            try:
                predictions.append(
                    (listing_id, loaded.engine.predict_batch([item], review_threshold=threshold)[0])
                )
            except Exception as exc:
                _mark_failed(listing_id, f"model could not classify this listing: {exc}", report)
    report.inference_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    lookups = _Lookups()
    for listing_id, pred in predictions:
        _write_one(listing_id, pred, loaded=loaded, threshold=threshold, report=report, lookups=lookups)
    report.write_s = time.perf_counter() - t1
    return report
