"""One fusion `InferenceEngine` per worker process, loaded lazily and kept current.

torch and transformers are imported only when `engine_for_batch()` first runs (in a Celery
worker, or the in-process demo), never when the web process imports this module.

Before each batch the holder checks two cheap things:
- the promoted `ModelVersion` (one indexed query): a different one is loaded and swapped in,
  so a promotion or rollback takes effect without restarting workers;
- the knowledge version (`knowledge.cache.snapshot_version_current()`): a newer snapshot is
  fetched and handed to the engine with `set_snapshot()` (an atomic swap inside the engine);
- when the snapshot holds leaves the model never trained on (ops added them since): the listings
  people approved or corrected into them (one aggregate query says whether that changed). They
  become the engine's few-shot examples, so what auditors confirm for a new category improves the
  next predictions without retraining (those predictions still go to a person: route reason
  `new_category`, until a fine-tune learns the category).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from classifier.audit import audit_record
from classifier.fusion.predictions import ListingInput
from classifier.registry.artifacts import EngineUnavailable, device_choose
from classifier.registry.models import ModelVersion
from classifier.registry.services import model_version_serving_ensure
from classifier.review.examples import new_category_examples, new_category_examples_stamp
from knowledge.cache import snapshot_current, snapshot_version_current
from knowledge.graph.selectors import category_path_labels

if TYPE_CHECKING:  # pragma: no cover
    from classifier.fusion.engine import InferenceEngine


log = logging.getLogger(__name__)

# Few-shot examples per new category: the latest decisions (the "20 labelled examples").
EXAMPLES_PER_NEW_CATEGORY = 20


@dataclass
class LoadedEngine:
    """The engine in this process and the `ModelVersion` row it serves."""

    engine: InferenceEngine
    version: ModelVersion
    examples_stamp: tuple[object, ...] | None = None  # what the engine's few-shot examples were built from

    @property
    def review_threshold(self) -> float:
        """settings.REVIEW_THRESHOLD when set, else the threshold calibrated with the model."""
        if settings.REVIEW_THRESHOLD is not None:
            return float(settings.REVIEW_THRESHOLD)
        return float(self.engine.review_threshold)


_lock = threading.Lock()


_loaded: LoadedEngine | None = None


def _engine_load(version: ModelVersion) -> InferenceEngine:
    from classifier.fusion.engine import InferenceEngine  # heavy: torch, transformers

    artifact_dir = Path(version.artifact_dir)
    if not (artifact_dir / "model.safetensors").exists():
        raise EngineUnavailable(f"model version {version.name}: {artifact_dir}/model.safetensors is missing")
    device = device_choose()
    log.info("loading model %s from %s on %s", version.name, artifact_dir, device)
    return InferenceEngine.load(
        str(artifact_dir),
        device=device,
        snapshot=snapshot_current(),
        quantized=settings.FUSION_QUANTIZED,
        onnx_cache_dir=settings.VAR_DIR / "cache" / "onnx",
    )


def engine_for_batch() -> LoadedEngine:
    """The engine to run the next batch with, reloaded or re-snapshotted when either moved."""
    global _loaded

    with _lock:
        serving = model_version_serving_ensure()
        if _loaded is None or _loaded.version.pk != serving.pk:
            try:
                engine = _engine_load(serving)
            except Exception as exc:
                _load_failure_record(serving, exc, kept=_loaded.version if _loaded else None)
                if _loaded is None:
                    raise
                # Keep serving the old model rather than stop classifying; say so loudly.
                log.exception(
                    "could not load promoted model %s; keeping %s", serving.name, _loaded.version.name
                )
            else:
                _loaded = LoadedEngine(engine=engine, version=serving)
        current = snapshot_version_current()
        if current and current != getattr(_loaded.engine, "snapshot_version", 0):
            snapshot = snapshot_current()
            if snapshot is not None:
                _loaded.engine.set_snapshot(snapshot)
                log.info("knowledge snapshot v%s in force", snapshot.version)
        _new_category_examples_sync(_loaded)
        return _loaded


def _new_category_examples_sync(loaded: LoadedEngine) -> None:
    """Give the engine the approved/corrected listings of the leaves it never trained on as few-shot
    examples, rebuilt only when they changed."""
    new = sorted(set(loaded.engine.leaves) - set(loaded.engine.train_leaves))
    if not new:
        if loaded.examples_stamp:
            loaded.engine.clear_examples()
        loaded.examples_stamp = ()
        return
    labels = category_path_labels()
    stamp = (*new, *new_category_examples_stamp(leaves=new, labels=labels))
    if stamp == loaded.examples_stamp:
        return
    examples = new_category_examples(leaves=new, labels=labels, per_category=EXAMPLES_PER_NEW_CATEGORY)
    loaded.engine.clear_examples()
    for leaf, rows in examples.items():
        items = []
        for row in rows:
            try:
                items.append(
                    ListingInput(Path(row.image_path).read_bytes(), row.title, key=str(row.listing_id))
                )
            except OSError:
                log.warning("few-shot example: the photo of listing %s is missing; left out", row.listing_id)
        try:
            loaded.engine.add_examples(leaf, items)
        except ValueError as exc:  # an undecodable photo (InvalidImageError) or a leaf gone meanwhile
            log.warning("few-shot examples of %s left out: %s", leaf, exc)
    loaded.examples_stamp = stamp
    log.info("few-shot examples in force: %s", loaded.engine.example_counts)


_failures_reported: set[int] = set()


def _load_failure_record(version: ModelVersion, exc: Exception, *, kept: ModelVersion | None) -> None:
    """Put a failed load in the audit trail (admin > Audit events), once per version and process:
    a log line in a worker is not where an admin looks."""

    if version.pk in _failures_reported:
        return
    _failures_reported.add(version.pk)
    try:
        audit_record(
            actor=None,
            verb="model.load_failed",
            obj=version,
            data={
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "kept_serving": kept.name if kept else None,
            },
        )
    except Exception:  # the database is away too: the log line below still says it
        log.warning("could not record the failed load of %s in the audit trail", version.name)


def engine_reset() -> None:
    """Forget the loaded engine (tests; a worker never needs this)."""
    global _loaded
    with _lock:
        _loaded = None
        _failures_reported.clear()
