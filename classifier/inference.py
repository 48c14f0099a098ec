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

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from classifier.models import ModelVersion

if TYPE_CHECKING:  # pragma: no cover
    from classifier.fusion.engine import InferenceEngine

log = logging.getLogger(__name__)


class EngineUnavailable(RuntimeError):
    """No model can be loaded (no promoted version and no bundled model directory)."""


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def device_choose() -> str:
    """settings.FUSION_DEVICE, or CUDA when one is present, else CPU."""
    if settings.FUSION_DEVICE:
        return settings.FUSION_DEVICE
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_version_bundled_register() -> ModelVersion:
    """The ModelVersion row for settings.FUSION_MODEL_DIR, created (and promoted if nothing is) once.

    Raises:
        EngineUnavailable: when the directory has no model.safetensors.
    """
    model_dir = Path(settings.FUSION_MODEL_DIR).resolve()
    weights = model_dir / "model.safetensors"
    if not weights.exists():
        raise EngineUnavailable(
            f"no promoted model version and no bundled model at {model_dir} (model.safetensors missing)"
        )
    checksum = file_sha256(weights)
    existing = ModelVersion.objects.filter(artifact_dir=str(model_dir), checksum=checksum).first()
    created = False
    if existing is None:
        name = _bundled_name(model_dir, checksum)
        try:
            with transaction.atomic():
                existing, created = ModelVersion.objects.get_or_create(
                    name=name,
                    defaults={
                        "artifact_dir": str(model_dir),
                        "checksum": checksum,
                        "status": ModelVersion.Status.CANDIDATE,
                        "metrics": _read_json(model_dir / "metrics.json"),
                        # the threshold chosen on val, stored with the model: the registry shows it
                        "review_threshold": _read_json(model_dir / "calibration.json").get(
                            "review_threshold"
                        ),
                    },
                )
        except IntegrityError:  # another worker registered it at the same moment
            existing = ModelVersion.objects.get(name=name)
    if not ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).exists():
        try:
            with transaction.atomic():
                updated = ModelVersion.objects.filter(pk=existing.pk).update(
                    status=ModelVersion.Status.PROMOTED, promoted_at=timezone.now()
                )
                if updated:
                    from classifier.services.audit import audit_record

                    existing.refresh_from_db()
                    audit_record(
                        actor=None, verb="model.promote_bundled", obj=existing, data={"dir": str(model_dir)}
                    )
        except IntegrityError:  # someone promoted another version meanwhile: theirs wins
            pass
        existing.refresh_from_db()
    if created:  # evaluated on the frozen set like every registered version (on the training queue)
        from classifier.services.training import model_version_evaluate_soon

        model_version_evaluate_soon(version=existing)
    return existing


def _bundled_name(model_dir: Path, checksum: str) -> str:
    # The same name the engine reports as `model_version` (directory name + weights checksum).
    return f"{model_dir.name}-{checksum[:8]}"[:100]


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def model_version_serving() -> ModelVersion:
    """The promoted version, or the bundled model registered as one."""
    promoted = ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).first()
    return promoted if promoted is not None else model_version_bundled_register()


def _engine_load(version: ModelVersion) -> InferenceEngine:
    from classifier.fusion.engine import InferenceEngine  # heavy: torch, transformers
    from knowledge.cache import snapshot_current

    artifact_dir = Path(version.artifact_dir)
    if not (artifact_dir / "model.safetensors").exists():
        raise EngineUnavailable(f"model version {version.name}: {artifact_dir}/model.safetensors is missing")
    device = device_choose()
    log.info("loading model %s from %s on %s", version.name, artifact_dir, device)
    return InferenceEngine.load(str(artifact_dir), device=device, snapshot=snapshot_current())


def engine_for_batch() -> LoadedEngine:
    """The engine to run the next batch with, reloaded or re-snapshotted when either moved."""
    global _loaded
    from knowledge.cache import snapshot_current, snapshot_version_current

    with _lock:
        serving = model_version_serving()
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
    from classifier.services.audit import audit_record

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
