"""One fusion `InferenceEngine` per worker process, loaded lazily and kept current.

torch and transformers are imported only when `engine_for_batch()` first runs (in a Celery
worker, or the in-process demo), never when the web process imports this module.

Before each batch the holder checks two cheap things:
- the promoted `ModelVersion` (one indexed query): a different one is loaded and swapped in,
  so a promotion or rollback takes effect without restarting workers;
- the knowledge version (`knowledge.cache.snapshot_version_current()`): a newer snapshot is
  fetched and handed to the engine with `set_snapshot()` (an atomic swap inside the engine).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from classifier.audit import audit_record
from classifier.registry.artifacts import EngineUnavailable, device_choose
from classifier.registry.models import ModelVersion
from classifier.registry.services import model_version_serving_ensure
from knowledge.cache import snapshot_current, snapshot_version_current

if TYPE_CHECKING:  # pragma: no cover
    from classifier.fusion.engine import InferenceEngine


log = logging.getLogger(__name__)


@dataclass
class LoadedEngine:
    """The engine in this process and the `ModelVersion` row it serves."""

    engine: InferenceEngine
    version: ModelVersion

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
        return _loaded


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
