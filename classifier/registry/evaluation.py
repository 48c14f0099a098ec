"""The evaluation gate: a version against production on the frozen set (and recent reviewed items)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.utils import timezone

from classifier.audit import Actor, audit_record
from classifier.registry import selectors as registry_selectors
from classifier.registry.artifacts import artifact_review_threshold, device_choose
from classifier.registry.models import ModelEvaluation, ModelVersion
from classifier.registry.services import artifact_verify
from classifier.review import examples as sel
from knowledge.cache import snapshot_current

log = logging.getLogger(__name__)

# Called with each progress event of a gate run (phase, done/total); the training job's reporter.
Progress = Callable[[dict[str, object]], object] | None


def replay_catalogue_path() -> Path:
    """FUSION_REPLAY_CATALOGUE, else ../shared/data/fashion/catalogue.csv, else the bundled demo sample."""
    configured = settings.FUSION_REPLAY_CATALOGUE
    if configured:
        return Path(configured)
    shared = Path(settings.BASE_DIR).parent / "shared" / "data" / "fashion" / "catalogue.csv"
    if shared.exists():
        return shared
    return Path(settings.BASE_DIR) / "fusionreview" / "demo" / "sample" / "catalogue.csv"


def eval_catalogue_path() -> Path:
    configured = settings.FUSION_EVAL_CATALOGUE
    return Path(configured) if configured else replay_catalogue_path()


def promotion_margin_points() -> float:
    return float(settings.PROMOTION_MARGIN)


def _engine_load(version: ModelVersion) -> Any:
    from classifier.fusion.engine import InferenceEngine

    artifact_verify(version=version)
    # the build that is served (see FUSION_QUANTIZED) is the one evaluated
    return InferenceEngine.load(
        version.artifact_dir,
        device=device_choose(),
        snapshot=snapshot_current(),
        quantized=settings.FUSION_QUANTIZED,
        onnx_cache_dir=settings.VAR_DIR / "cache" / "onnx",
    )


def _frozen_set(engine: Any) -> tuple[str, list[Any]]:
    from classifier.fusion.gate import frozen_eval_set

    path = eval_catalogue_path()
    if not path.exists():
        return "none", []
    # Only leaves the production model was trained on: the same slice for every candidate of that lineage.
    return frozen_eval_set(
        path,
        split=str(settings.FUSION_EVAL_SPLIT),
        size=int(settings.FUSION_EVAL_SIZE),
        seed=0,
        leaves=set(engine.train_leaves),
    )


def _recent_items(version: ModelVersion) -> list[Any]:
    """Recently reviewed listings, minus the ones the candidate was trained on (no scoring on training data)."""
    from classifier.fusion.gate import LabelledItem

    since = timezone.now() - dt.timedelta(days=int(settings.GATE_RECENT_DAYS))
    items = sel.recent_reviewed_items(since=since, limit=int(settings.GATE_RECENT_LIMIT))
    if version.data_window_end is not None:
        trained = {
            e.listing_id
            for e in sel.training_examples_in_window(
                start=version.data_window_start, end=version.data_window_end
            )
        }
        items = [i for i in items if i.listing_id not in trained]
    return [LabelledItem(i.image_path, i.title, i.category_id, i.brand, key=str(i.listing_id)) for i in items]


class _Recording:
    """Wraps an engine for `evaluate` and keeps each answer (key, predicted leaf, confidence, routed to
    review), so the version page can draw a confusion matrix and a risk-coverage curve from the very
    predictions the gate's figures come from."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.answers: dict[str, tuple[str, float, bool]] = {}

    def predict_batch(self, inputs: list[Any]) -> list[Any]:
        preds: list[Any] = self.engine.predict_batch(inputs)
        for item, pred in zip(inputs, preds, strict=True):
            self.answers[item.key] = (pred.category_id, float(pred.confidence), bool(pred.needs_review))
        return preds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def _per_item(items: list[Any], answers: dict[str, tuple[str, float, bool]]) -> list[list[object]]:
    """[[true leaf, predicted leaf, confidence, routed to review], ...] in the set's order."""
    out: list[list[object]] = []
    for item in items:
        if item.key in answers:
            pred, conf, review = answers[item.key]
            out.append([item.category_id, pred, round(conf, 5), review])
    return out


def _metrics_for(
    version: ModelVersion, engine: Any, set_name: str, items: list[Any], progress: Progress
) -> dict[str, Any]:
    """Frozen-set metrics are cached on the version (the set never changes); others are recomputed."""
    from classifier.fusion.gate import evaluate

    cached = (version.metrics or {}).get("frozen_eval") or {}
    if set_name.startswith("frozen:") and cached.get("set") == set_name and cached.get("items"):
        return cast(dict[str, Any], cached["metrics"])
    # Said out loud: in the demo this runs in-process during the first batch and takes a while.
    log.info("evaluating %s on %s (%d items)", version.name, set_name, len(items))
    recording = _Recording(engine)
    metrics: dict[str, Any] = evaluate(recording, items, progress_callback=progress)
    if set_name.startswith("frozen:"):
        frozen = {"set": set_name, "metrics": metrics, "items": _per_item(items, recording.answers)}
        ModelVersion.objects.filter(pk=version.pk).update(
            metrics={**(version.metrics or {}), "frozen_eval": frozen}
        )
        version.refresh_from_db(fields=["metrics"])
    return metrics


def finetune_min_corrections() -> int:
    return int(settings.FINETUNE_MIN_CORRECTIONS)


def _corrections_behind(version: ModelVersion) -> int | None:
    """How many approved corrections a fine-tuned version learnt from (None: not a fine-tune)."""
    job = version.produced_by_jobs.order_by("-created_at").first()
    if job is not None:
        return int(job.example_count)
    finetune = ((version.metrics or {}).get("training") or {}).get("finetune") or {}
    corrections = finetune.get("corrections")
    return int(corrections) if isinstance(corrections, int | float) else None


def _reference_evaluate(*, version: ModelVersion, actor: Actor, progress: Progress) -> ModelEvaluation:
    """The version in production is the reference candidates are compared with: its frozen-set figures are
    computed (once per set) and recorded, with itself as the baseline, never "against nothing"."""
    engine = _engine_load(version)
    frozen_name, frozen_items = _frozen_set(engine)
    frozen_name = f"frozen:{frozen_name}"
    metrics = _metrics_for(version, engine, frozen_name, frozen_items, progress) if frozen_items else None
    reasons = [] if frozen_items else [f"no frozen evaluation set: {eval_catalogue_path()} is missing"]
    notes = ["in production: this version is the reference every candidate is compared with"]
    evaluation = ModelEvaluation.objects.create(
        candidate=version,
        baseline=version,
        eval_set=frozen_name[:200],
        passed=not reasons,
        reasons=reasons,
        candidate_metrics={"frozen": metrics, "recent": None, "notes": notes},
        baseline_metrics={"frozen": metrics, "recent": None},
        margin_points=promotion_margin_points(),
    )
    audit_record(
        actor=actor,
        verb="model.evaluate",
        obj=version,
        data={"passed": evaluation.passed, "reasons": reasons, "baseline": version.name, "reference": True},
    )
    return evaluation


def model_version_evaluate(
    *, version: ModelVersion, actor: Actor = None, progress: Progress = None
) -> ModelEvaluation:
    """Run the gate: candidate vs the version in production on the frozen set and recent reviews."""
    from classifier.fusion.gate import gate_compare

    if version.review_threshold is None:  # registered without one (an older bundled row): from its files
        threshold = artifact_review_threshold(version.artifact_dir)
        if threshold is not None:
            ModelVersion.objects.filter(pk=version.pk).update(review_threshold=threshold)
            version.review_threshold = threshold
    baseline = registry_selectors.model_version_promoted()
    if baseline is not None and baseline.pk == version.pk:
        return _reference_evaluate(version=version, actor=actor, progress=progress)
    cand_engine = _engine_load(version)
    base_engine = _engine_load(baseline) if baseline is not None else None
    frozen_name, frozen_items = _frozen_set(base_engine or cand_engine)
    frozen_name = f"frozen:{frozen_name}"
    recent = _recent_items(version)
    # {"frozen": metrics, "recent": metrics or None}, as fusion's gate_compare reads them
    cand: dict[str, Any] = {"frozen": _metrics_for(version, cand_engine, frozen_name, frozen_items, progress)}
    cand["recent"] = _metrics_for(version, cand_engine, "recent", recent, progress) if recent else None
    base: dict[str, Any] | None = None
    if baseline is not None:
        base = {"frozen": _metrics_for(baseline, base_engine, frozen_name, frozen_items, progress)}
        base["recent"] = _metrics_for(baseline, base_engine, "recent", recent, progress) if recent else None
    margin = promotion_margin_points()
    passed, reasons, notes = gate_compare(
        cand,
        base,
        margin_points=margin,
        category_margin_points=float(settings.PROMOTION_CATEGORY_MARGIN),
        large_category_min=int(settings.PROMOTION_LARGE_CATEGORY_MIN),
        recent_min_items=int(settings.GATE_RECENT_MIN_ITEMS),
    )
    if not frozen_items:
        passed, reasons = False, [*reasons, f"no frozen evaluation set: {eval_catalogue_path()} is missing"]
    if baseline is None:
        notes.append("nothing was in production to compare with: the figures above are this version's alone")
    corrections, minimum = _corrections_behind(version), finetune_min_corrections()
    if corrections is not None and corrections < minimum:
        passed = False
        reasons.append(
            f"fine-tuned on only {corrections} approved corrections; at least {minimum} are needed "
            "(FINETUNE_MIN_CORRECTIONS): so few examples move the model by noise"
        )
    evaluation = ModelEvaluation.objects.create(
        candidate=version,
        baseline=baseline,
        eval_set=frozen_name[:200],
        passed=passed,
        reasons=reasons,
        candidate_metrics={**cand, "notes": notes},
        baseline_metrics=base or {},
        margin_points=margin,
    )
    if not passed and version.status == ModelVersion.Status.CANDIDATE:
        ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.CANDIDATE).update(
            status=ModelVersion.Status.REJECTED
        )
    elif passed and version.status == ModelVersion.Status.REJECTED:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.CANDIDATE)
    audit_record(
        actor=actor,
        verb="model.evaluate",
        obj=version,
        data={"passed": passed, "reasons": reasons, "baseline": baseline.name if baseline else None},
    )
    return evaluation
