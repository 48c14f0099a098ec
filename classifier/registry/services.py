"""Model registry writes: register, promote, roll back, and the serving version (bundled model on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from classifier.audit import Actor
from classifier.registry.models import ModelVersion
from classifier.task_names import EVALUATE_MODEL_VERSION, task_signature

if TYPE_CHECKING:  # pragma: no cover
    pass
import datetime as dt
import json

from django.core.exceptions import ValidationError

from classifier.audit import audit_record
from classifier.registry import selectors as sel
from classifier.registry.artifacts import EngineUnavailable, _read_json, file_sha256
from fusionreview.dispatch import task_dispatch


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
                    existing.refresh_from_db()
                    audit_record(
                        actor=None, verb="model.promote_bundled", obj=existing, data={"dir": str(model_dir)}
                    )
        except IntegrityError:  # someone promoted another version meanwhile: theirs wins
            pass
        existing.refresh_from_db()
    if created:  # evaluated on the frozen set like every registered version (on the training queue)
        model_version_evaluate_soon(version=existing)
    return existing


def _bundled_name(model_dir: Path, checksum: str) -> str:
    # The same name the engine reports as `model_version` (directory name + weights checksum).
    return f"{model_dir.name}-{checksum[:8]}"[:100]


def model_version_serving_ensure() -> ModelVersion:
    """The promoted version, or the bundled model registered as one."""
    promoted = ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).first()
    return promoted if promoted is not None else model_version_bundled_register()


class ArtifactError(ValidationError):
    """A model directory is missing or does not match its recorded checksum."""


def artifact_verify(*, version: ModelVersion) -> None:
    """Raise ArtifactError unless model.safetensors exists and hashes to the recorded checksum."""

    weights = Path(version.artifact_dir) / "model.safetensors"
    if not weights.exists():
        raise ArtifactError(f"{version.name}: {weights} is missing")
    actual = file_sha256(weights)
    if actual != version.checksum:
        raise ArtifactError(
            f"{version.name}: model.safetensors fails its checksum (recorded {version.checksum[:12]}…, "
            f"found {actual[:12]}…); the artifact was altered or corrupted"
        )


def model_version_register(
    *,
    artifact_dir: Path,
    name: str,
    parent: ModelVersion | None,
    trained_by: Actor = None,
    data_window_start: dt.datetime | None = None,
    data_window_end: dt.datetime | None = None,
    evaluate: bool = True,
) -> ModelVersion:
    """Record a model directory as a candidate version (checksum, metrics and threshold from its files).

    With `evaluate` (the default) the gate run is queued at once; a training job passes False because it
    runs the gate itself right after registering.
    """

    def read(fname: str) -> dict[str, Any]:
        try:
            value = json.loads((artifact_dir / fname).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    calibration = read("calibration.json")
    version = ModelVersion.objects.create(
        name=name[:100],
        artifact_dir=str(artifact_dir),
        checksum=file_sha256(artifact_dir / "model.safetensors"),
        parent=parent,
        status=ModelVersion.Status.CANDIDATE,
        metrics={"training": read("metrics.json")},
        review_threshold=calibration.get("review_threshold"),
        data_window_start=data_window_start,
        data_window_end=data_window_end,
        trained_by=trained_by if isinstance(trained_by, User) else None,
    )
    audit_record(actor=trained_by, verb="model.register", obj=version, data={"dir": str(artifact_dir)})
    if evaluate:
        model_version_evaluate_soon(version=version)
    return version


def model_version_evaluate_soon(*, version: ModelVersion, actor: Actor = None) -> bool:
    """Queue the gate run for a newly registered version on the training queue (after commit).

    Every version gets its frozen-set figures when it is registered, the bundled one included, so the
    registry never shows "not evaluated". Off with EVALUATE_ON_REGISTER=false. Returns whether queued.
    """
    if not settings.EVALUATE_ON_REGISTER:
        return False
    actor_id = actor.pk if isinstance(actor, User) else None
    task_dispatch(task_signature(EVALUATE_MODEL_VERSION), args=[version.pk, actor_id])
    return True


def model_version_promote(*, version: ModelVersion, actor: Actor, rollback: bool = False) -> ModelVersion:
    """Put `version` into production: one atomic swap, audit-logged; workers pick it up on their next batch.

    A promotion needs a passed gate run against the version in production now; a rollback (to a version
    that served before) skips the gate. Both verify the artifact's checksum first: a corrupted artifact is
    refused and the current version keeps serving.
    """
    version.refresh_from_db()
    if version.status == ModelVersion.Status.PROMOTED:
        raise ValidationError(f"{version.name} is already in production")
    artifact_verify(version=version)
    current = sel.model_version_promoted()
    if not rollback:
        evaluation = sel.model_evaluation_latest(version=version)
        if evaluation is None:
            raise ValidationError(f"{version.name} has not been evaluated yet: run the evaluation gate first")
        if current is not None and evaluation.baseline_id != current.pk:
            raise ValidationError(
                f"{version.name} was evaluated against {evaluation.baseline or 'nothing'}, but {current} is in "
                "production now: evaluate it again"
            )
        if not evaluation.passed:
            raise ValidationError(
                f"the evaluation gate refused {version.name}: " + "; ".join(evaluation.reasons)
            )
    now = timezone.now()
    try:
        with transaction.atomic():
            # Retire first: the single-promoted constraint would refuse two promoted rows mid-swap.
            if current is not None:
                ModelVersion.objects.filter(pk=current.pk, status=ModelVersion.Status.PROMOTED).update(
                    status=ModelVersion.Status.RETIRED
                )
            ModelVersion.objects.filter(pk=version.pk).update(
                status=ModelVersion.Status.PROMOTED, promoted_at=now
            )
            audit_record(
                actor=actor,
                verb="model.rollback" if rollback else "model.promote",
                obj=version,
                data={"previous": current.name if current else None, "checksum": version.checksum},
            )
    except IntegrityError as e:  # someone promoted another version at the same moment
        raise ValidationError("another promotion happened at the same time; reload and try again") from e
    version.refresh_from_db()
    return version


def model_version_rollback(*, actor: Actor) -> ModelVersion:
    """Promote the version that served before the current one (or its parent). Allowed while a job runs."""
    target = sel.model_version_rollback_target()
    if target is None:
        raise ValidationError("nothing to roll back to: no earlier version has been in production")
    return model_version_promote(version=target, actor=actor, rollback=True)
