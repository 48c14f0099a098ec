"""Model registry reads: versions, evaluations, the frozen-set figures and their history."""

from __future__ import annotations

from django.db.models import QuerySet

from classifier.registry.artifacts import artifact_calibration_value
from classifier.registry.models import ModelEvaluation, ModelVersion


def model_versions_all() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("parent", "trained_by").order_by("-created_at")


def model_version_get(*, version_id: int) -> ModelVersion | None:
    return ModelVersion.objects.select_related("parent", "trained_by").filter(pk=version_id).first()


def model_version_promoted() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.PROMOTED).first()


def model_version_rollback_target() -> ModelVersion | None:
    """What a rollback promotes: the version in production before the current one, else its parent."""
    current = model_version_promoted()
    qs = ModelVersion.objects.filter(promoted_at__isnull=False).exclude(status=ModelVersion.Status.PROMOTED)
    if current is not None:
        qs = qs.exclude(pk=current.pk)
        if current.promoted_at is not None:
            qs = qs.filter(promoted_at__lt=current.promoted_at)
    previous = qs.order_by("-promoted_at").first()
    if previous is not None:
        return previous
    return current.parent if current is not None else None


# what the model does per title kind (calibration.json, chosen on `val`; None: the model has none)
TITLE_CALIBRATION_KEYS = ("untyped_threshold", "untyped_image_weight", "typed_text_weight")


def model_version_title_calibration(*, version: ModelVersion) -> dict[str, float | None]:
    """``untyped_threshold``: the stricter threshold a title that names no product type is held to (above
    1: none reached the target precision on `val`, every such title goes to a person);
    ``untyped_image_weight`` / ``typed_text_weight``: how much of the image head (no type named) or the text
    head (a type named) is mixed into the answer (None: the fused answer alone)."""
    return {key: artifact_calibration_value(version.artifact_dir, key) for key in TITLE_CALIBRATION_KEYS}


def model_evaluation_latest(*, version: ModelVersion) -> ModelEvaluation | None:
    return version.evaluations.select_related("baseline").first()


def model_version_frozen(*, version: ModelVersion) -> dict[str, object]:
    """{"set", "metrics", "items"} from the version's last frozen-set evaluation ({} if none)."""
    return (version.metrics or {}).get("frozen_eval") or {}


def model_versions_history(*, set_name: str) -> list[dict[str, object]]:
    """Every version evaluated on the frozen set `set_name`, oldest first: name, accuracy per level, status.

    Figures on another set are left out: accuracies are only comparable on the same items.
    """
    rows = []
    for version in ModelVersion.objects.order_by("created_at", "pk").only("name", "metrics", "status"):
        frozen = model_version_frozen(version=version)
        metrics = frozen.get("metrics")
        accuracy = metrics.get("accuracy") if isinstance(metrics, dict) else None
        if frozen.get("set") == set_name and accuracy:
            rows.append(
                {
                    "pk": version.pk,
                    "name": version.name,
                    "accuracy": accuracy,
                    "promoted": version.status == ModelVersion.Status.PROMOTED,
                }
            )
    return rows
