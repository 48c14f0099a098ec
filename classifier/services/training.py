"""Writes for fine-tuning: training jobs, model registration, the evaluation gate, promotion, rollback,
the heartbeat sweep and the drift monitor.

torch/transformers are imported only inside the functions that run in the `training` worker
(`training_job_run`, `model_version_evaluate`), never when the web process imports this module.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from classifier.models import DriftAlert, ModelEvaluation, ModelVersion, TrainingJob
from classifier.selectors import training as sel
from classifier.services.audit import audit_record
from fusionreview.dispatch import task_dispatch

log = logging.getLogger(__name__)


# --- settings (read at call time so tests and deployments can override them) -----------------------


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


def versions_dir() -> Path:
    return Path(settings.FUSION_VERSIONS_DIR)


def promotion_margin_points() -> float:
    return float(settings.PROMOTION_MARGIN)


MAX_EPOCHS = 20


# --- registry ------------------------------------------------------------------------------------------


class ArtifactError(ValidationError):
    """A model directory is missing or does not match its recorded checksum."""


def artifact_verify(*, version: ModelVersion) -> None:
    """Raise ArtifactError unless model.safetensors exists and hashes to the recorded checksum."""
    from classifier.inference import file_sha256

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
    trained_by: Any = None,
    data_window_start: dt.datetime | None = None,
    data_window_end: dt.datetime | None = None,
    evaluate: bool = True,
) -> ModelVersion:
    """Record a model directory as a candidate version (checksum, metrics and threshold from its files).

    With `evaluate` (the default) the gate run is queued at once; a training job passes False because it
    runs the gate itself right after registering.
    """
    from classifier.inference import file_sha256

    def read(fname: str) -> dict:
        try:
            return json.loads((artifact_dir / fname).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

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
        trained_by=trained_by if getattr(trained_by, "is_authenticated", False) else None,
    )
    audit_record(actor=trained_by, verb="model.register", obj=version, data={"dir": str(artifact_dir)})
    if evaluate:
        model_version_evaluate_soon(version=version)
    return version


def model_version_evaluate_soon(*, version: ModelVersion, actor: Any = None) -> bool:
    """Queue the gate run for a newly registered version on the training queue (after commit).

    Every version gets its frozen-set figures when it is registered, the bundled one included, so the
    registry never shows "not evaluated". Off with EVALUATE_ON_REGISTER=false. Returns whether queued.
    """
    if not settings.EVALUATE_ON_REGISTER:
        return False
    from classifier.tasks.training import evaluate_model_version

    actor_id = actor.pk if getattr(actor, "is_authenticated", False) else None
    task_dispatch(evaluate_model_version, args=[version.pk, actor_id])
    return True


def artifact_review_threshold(artifact_dir: str | Path) -> float | None:
    """The review threshold chosen on `val` and stored with the model (calibration.json), if any."""
    try:
        value = json.loads((Path(artifact_dir) / "calibration.json").read_text(encoding="utf-8"))
        threshold = value.get("review_threshold") if isinstance(value, dict) else None
        return None if threshold is None else float(threshold)
    except (OSError, ValueError, TypeError):
        return None


def model_version_promote(*, version: ModelVersion, actor: Any, rollback: bool = False) -> ModelVersion:
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


def model_version_rollback(*, actor: Any) -> ModelVersion:
    """Promote the version that served before the current one (or its parent). Allowed while a job runs."""
    target = sel.model_version_rollback_target()
    if target is None:
        raise ValidationError("nothing to roll back to: no earlier version has been in production")
    return model_version_promote(version=target, actor=actor, rollback=True)


# --- evaluation gate -----------------------------------------------------------------------------------------


def _engine_load(version: ModelVersion) -> Any:
    from classifier.fusion.engine import InferenceEngine
    from classifier.inference import device_choose
    from knowledge.cache import snapshot_current

    artifact_verify(version=version)
    return InferenceEngine.load(version.artifact_dir, device=device_choose(), snapshot=snapshot_current())


def _frozen_set(engine: Any) -> tuple[str, list]:
    from classifier.fusion.finetune import frozen_eval_set

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


def _recent_items(version: ModelVersion) -> list:
    """Recently reviewed listings, minus the ones the candidate was trained on (no scoring on training data)."""
    from classifier.fusion.finetune import LabelledItem

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

    def predict_batch(self, inputs: list) -> list:
        preds = self.engine.predict_batch(inputs)
        for item, pred in zip(inputs, preds, strict=True):
            self.answers[item.key] = (pred.category_id, float(pred.confidence), bool(pred.needs_review))
        return preds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def _per_item(items: list, answers: dict[str, tuple[str, float, bool]]) -> list[list]:
    """[[true leaf, predicted leaf, confidence, routed to review], ...] in the set's order."""
    out = []
    for item in items:
        if item.key in answers:
            pred, conf, review = answers[item.key]
            out.append([item.category_id, pred, round(conf, 5), review])
    return out


def _metrics_for(version: ModelVersion, engine: Any, set_name: str, items: list, progress) -> dict:
    """Frozen-set metrics are cached on the version (the set never changes); others are recomputed."""
    from classifier.fusion.finetune import evaluate

    cached = (version.metrics or {}).get("frozen_eval") or {}
    if set_name.startswith("frozen:") and cached.get("set") == set_name and cached.get("items"):
        return cached["metrics"]
    # Said out loud: in the demo this runs in-process during the first batch and takes a while.
    log.info("evaluating %s on %s (%d items)", version.name, set_name, len(items))
    recording = _Recording(engine)
    metrics = evaluate(recording, items, progress_callback=progress)
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


def _reference_evaluate(*, version: ModelVersion, actor: Any, progress) -> ModelEvaluation:
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


def model_version_evaluate(*, version: ModelVersion, actor: Any = None, progress=None) -> ModelEvaluation:
    """Run the gate: candidate vs the version in production on the frozen set and recent reviews."""
    from classifier.fusion.finetune import gate_compare

    if version.review_threshold is None:  # registered without one (an older bundled row): from its files
        threshold = artifact_review_threshold(version.artifact_dir)
        if threshold is not None:
            ModelVersion.objects.filter(pk=version.pk).update(review_threshold=threshold)
            version.review_threshold = threshold
    baseline = sel.model_version_promoted()
    if baseline is not None and baseline.pk == version.pk:
        return _reference_evaluate(version=version, actor=actor, progress=progress)
    cand_engine = _engine_load(version)
    base_engine = _engine_load(baseline) if baseline is not None else None
    frozen_name, frozen_items = _frozen_set(base_engine or cand_engine)
    frozen_name = f"frozen:{frozen_name}"
    recent = _recent_items(version)
    cand = {"frozen": _metrics_for(version, cand_engine, frozen_name, frozen_items, progress)}
    cand["recent"] = _metrics_for(version, cand_engine, "recent", recent, progress) if recent else None
    base = None
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


# --- training jobs ----------------------------------------------------------------------------------------


def training_window_default_start(*, base_version: ModelVersion) -> dt.datetime | None:
    """New corrections are those after the base version's data window (or after it was created)."""
    return base_version.data_window_end or (base_version.created_at if base_version.parent_id else None)


def training_job_start(
    *,
    actor: Any,
    base_version: ModelVersion,
    epochs: int,
    window_start: dt.datetime | None = None,
    window_end: dt.datetime | None = None,
    trigger: str = TrainingJob.Trigger.MANUAL,
) -> TrainingJob:
    """Queue a fine-tuning job. Refused (ValidationError with the reason) when another job is queued or
    running, when the window holds no approved corrections, or when the inputs are invalid."""
    if not 1 <= int(epochs) <= MAX_EPOCHS:
        raise ValidationError(f"epochs must be between 1 and {MAX_EPOCHS}")
    if base_version.status == ModelVersion.Status.REJECTED:
        raise ValidationError(f"{base_version.name} was rejected by the evaluation gate; choose another base")
    window_end = window_end or timezone.now()
    if window_start is not None and window_start >= window_end:
        raise ValidationError("the data window must start before it ends")
    active = sel.training_job_active()
    if active is not None:
        raise ValidationError(
            f"training job #{active.pk} is {active.status} (one job at a time): wait for it or cancel it"
        )
    count = sel.training_example_count(start=window_start, end=window_end)
    since = f"since {window_start:%Y-%m-%d %H:%M}" if window_start else "yet"
    if count == 0:
        raise ValidationError(f"no approved corrections {since}: nothing new to learn from")
    minimum = finetune_min_corrections()
    if count < minimum:
        raise ValidationError(
            f"only {count} approved correction{'s' if count != 1 else ''} {since}; fine-tuning needs at least "
            f"{minimum} (FINETUNE_MIN_CORRECTIONS): review more items first"
        )
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                base_version=base_version,
                data_window_start=window_start,
                data_window_end=window_end,
                epochs=int(epochs),
                example_count=count,
                trigger=trigger,
                requested_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                actor=actor,
                verb="training.start",
                obj=job,
                data={
                    "base": base_version.name,
                    "epochs": int(epochs),
                    "examples": count,
                    "trigger": trigger,
                },
            )
    except IntegrityError as e:  # the single-active constraint: another job was queued at the same moment
        raise ValidationError(
            "another training job was started at the same moment (one job at a time)"
        ) from e

    from classifier.tasks.training import train_model_version

    task_dispatch(train_model_version, args=[job.pk])
    return job


def training_job_cancel(*, job: TrainingJob, actor: Any) -> TrainingJob:
    """A queued job is cancelled at once; a running one stops at its next step (the loop checks the flag)."""
    now = timezone.now()
    if TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.QUEUED).update(
        status=TrainingJob.Status.CANCELLED, finished_at=now, cancel_requested=True
    ):
        pass
    elif not TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
        cancel_requested=True
    ):
        job.refresh_from_db()
        raise ValidationError(f"training job #{job.pk} is {job.status}: nothing to cancel")
    audit_record(actor=actor, verb="training.cancel", obj=job)
    job.refresh_from_db()
    return job


class _Reporter:
    """The progress callback handed to `finetune`: throttled DB writes, heartbeat, cancel flag, log lines."""

    def __init__(self, job_id: int, every_s: float = 1.0):
        self.job_id = job_id
        self.every_s = every_s
        self.last = 0.0
        self.stop = False

    def line(self, message: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        TrainingJob.objects.filter(pk=self.job_id).update(
            log=Concat(F("log"), Value(f"{stamp} {message}\n")), heartbeat_at=timezone.now()
        )

    def __call__(self, ev: dict[str, Any]) -> bool:
        if ev.get("message"):
            self.line(str(ev["message"]))
        now = time.monotonic()
        if (
            now - self.last < self.every_s
            and ev.get("phase") == "training"
            and ev.get("step") != ev.get("total_steps")
        ):
            return not self.stop
        self.last = now
        fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
        phase = ev.get("phase")
        if phase and phase != "log":
            done = f" {ev['done']}/{ev['total']}" if "done" in ev and "total" in ev else ""
            fields["phase"] = f"{phase}{done}"[:60]
        if phase == "training":
            fields.update(
                epoch=ev["epoch"],
                step=ev["step"],
                total_steps=ev["total_steps"],
                loss=float(ev["loss"]),
                eta_seconds=float(ev["eta_s"]),
            )
        # Only while still running: a job the sweep already failed is not revived by a late worker.
        TrainingJob.objects.filter(pk=self.job_id, status=TrainingJob.Status.RUNNING).update(**fields)
        row = TrainingJob.objects.filter(pk=self.job_id).values("status", "cancel_requested").first()
        if row is None or row["cancel_requested"] or row["status"] != TrainingJob.Status.RUNNING:
            self.stop = True
        return not self.stop


def _replay_examples(*, n: int, seed: int) -> list[tuple[str, str, str, str]]:
    """A random sample of the catalogue's `train` rows (never val/test), as fine-tuning examples."""
    import random

    from classifier.fusion.data import read_catalogue

    path = replay_catalogue_path()
    if n <= 0 or not path.exists():
        return []
    rows = read_catalogue(path, splits=("train",))
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    return [(str(path.parent / r.image), r.title, r.leaf_id, "") for r in rows]


def _finish(job_id: int, **fields: Any) -> bool:
    fields.setdefault("finished_at", timezone.now())
    return bool(TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.RUNNING).update(**fields))


def training_job_run(*, job_id: int) -> TrainingJob | None:
    """Run a queued job in this worker: claim it, fine-tune, register the candidate, run the gate.

    Idempotent: a job that is not queued any more (already running elsewhere, finished, cancelled) is
    left alone, so a redelivered message changes nothing.
    """
    now = timezone.now()
    claimed = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
        status=TrainingJob.Status.RUNNING, started_at=now, heartbeat_at=now, phase="starting"
    )
    if not claimed:
        log.info("training job %s is not queued any more; skipping", job_id)
        return TrainingJob.objects.filter(pk=job_id).first()
    job = TrainingJob.objects.select_related("base_version", "requested_by").get(pk=job_id)
    reporter = _Reporter(job_id)
    out_dir = versions_dir() / f"ft{job.pk}-{now:%Y%m%d-%H%M%S}"
    try:
        from classifier.fusion.finetune import FinetuneCancelled, finetune
        from knowledge.cache import snapshot_current

        artifact_verify(version=job.base_version)
        examples = sel.training_examples_in_window(start=job.data_window_start, end=job.data_window_end)
        if len(examples) < finetune_min_corrections():
            raise ValidationError(
                f"only {len(examples)} approved corrections left in the data window (some were undone "
                f"meanwhile); fine-tuning needs at least {finetune_min_corrections()} (FINETUNE_MIN_CORRECTIONS)"
            )
        ratio = float(settings.FINETUNE_REPLAY_RATIO)
        replay = _replay_examples(
            n=min(int(len(examples) * ratio), int(settings.FINETUNE_REPLAY_MAX)), seed=job.pk
        )
        TrainingJob.objects.filter(pk=job_id).update(example_count=len(examples), replay_count=len(replay))
        reporter.line(
            f"{len(examples)} corrections, {len(replay)} replay rows from {replay_catalogue_path().name}, "
            f"base {job.base_version.name}"
        )
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        from classifier.inference import device_choose

        finetune(
            base_model_dir=job.base_version.artifact_dir,
            examples=[(e.image_path, e.title, e.category_id, e.brand) for e in examples],
            replay=replay,
            out_dir=out_dir,
            epochs=job.epochs,
            progress_callback=reporter,
            snapshot=snapshot_current(),
            lr=float(settings.FINETUNE_LR),
            device=device_choose(),
        )
        version = model_version_register(
            artifact_dir=out_dir,
            name=f"{job.base_version.name.split('+')[0][:60]}+ft{job.pk}",
            parent=job.base_version,
            trained_by=job.requested_by,
            data_window_start=job.data_window_start,
            data_window_end=job.data_window_end,
            evaluate=False,
        )
        TrainingJob.objects.filter(pk=job_id).update(result_version=version, phase="evaluating")
        reporter.line(f"registered candidate {version.name}; running the evaluation gate")
        evaluation = model_version_evaluate(version=version, actor=None, progress=reporter)
        verdict = "passed" if evaluation.passed else "refused: " + "; ".join(evaluation.reasons)
        reporter.line(f"gate {verdict}")
        _finish(job_id, status=TrainingJob.Status.SUCCEEDED, phase="done", eta_seconds=0)
    except FinetuneCancelled:
        job.refresh_from_db(fields=["result_version"])
        if job.result_version_id is None:  # a registered candidate keeps its files; a partial one goes
            shutil.rmtree(out_dir, ignore_errors=True)
        reporter.line("cancelled")
        _finish(job_id, status=TrainingJob.Status.CANCELLED, phase="cancelled")
    except Exception as e:  # any failure ends the job visibly, never leaves it running
        reason = "; ".join(e.messages) if isinstance(e, ValidationError) else f"{type(e).__name__}: {e}"
        log.exception("training job %s failed", job_id)
        job.refresh_from_db(fields=["result_version"])
        if job.result_version_id is None:
            shutil.rmtree(out_dir, ignore_errors=True)
        reporter.line(f"failed: {reason}")
        reporter.line(traceback.format_exc(limit=3).strip().splitlines()[-1])
        _finish(job_id, status=TrainingJob.Status.FAILED, error=reason[:2000], phase="failed")
    job.refresh_from_db()
    audit_record(actor=None, verb=f"training.{job.status}", obj=job, data={"error": job.error[:200]})
    return job


def training_jobs_fail_stale(*, now: dt.datetime | None = None) -> int:
    """Mark running jobs whose worker stopped sending heartbeats as failed (a killed worker)."""
    now = now or timezone.now()
    timeout = int(settings.TRAINING_HEARTBEAT_TIMEOUT)
    cutoff = now - dt.timedelta(seconds=timeout)
    stale = list(
        TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING, heartbeat_at__lt=cutoff).values_list(
            "pk", "heartbeat_at"
        )
    )
    failed = 0
    for pk, beat in stale:
        reason = f"worker lost: no heartbeat since {beat:%Y-%m-%d %H:%M:%S} (timeout {timeout}s)"
        if TrainingJob.objects.filter(
            pk=pk, status=TrainingJob.Status.RUNNING, heartbeat_at__lt=cutoff
        ).update(
            status=TrainingJob.Status.FAILED,
            error=reason,
            phase="failed",
            finished_at=now,
            log=Concat(F("log"), Value(f"{now:%H:%M:%S} {reason}\n")),
        ):
            failed += 1
            audit_record(actor=None, verb="training.failed", obj=TrainingJob(pk=pk), data={"error": reason})
    return failed


# --- drift monitor ----------------------------------------------------------------------------------------


def drift_check(*, now: dt.datetime | None = None) -> DriftAlert | None:
    """Compare the accuracy of checked auto-accepted predictions in the last window with the period before.

    An alert is raised when it dropped by more than DRIFT_THRESHOLD_POINTS (default 5); with
    DRIFT_AUTO_FINETUNE a fine-tuning job is started from the production version (or the reason it
    could not be is written on the alert).
    """
    now = now or timezone.now()
    version = sel.model_version_promoted()
    if version is None:
        return None
    window = dt.timedelta(days=int(settings.DRIFT_WINDOW_DAYS))
    min_checks = int(settings.DRIFT_MIN_CHECKS)
    checked, correct = sel.auto_accept_accuracy(version=version, since=now - window, until=None)
    if checked < min_checks:
        return None
    b_checked, b_correct = sel.auto_accept_accuracy(version=version, since=None, until=now - window)
    if b_checked >= min_checks:
        baseline, source = b_correct / b_checked, f"{b_checked} checks before the window"
    else:
        frozen = ((version.metrics or {}).get("frozen_eval") or {}).get("metrics") or {}
        baseline = frozen.get("auto_accept_precision")
        source = "auto-accept precision on the frozen evaluation set"
        if baseline is None:
            return None
    current = correct / checked
    drop = 100.0 * (baseline - current)
    if drop <= float(settings.DRIFT_THRESHOLD_POINTS):
        return None
    if sel.drift_alerts_open().filter(model_version=version).exists():
        return None  # one open alert per version is enough
    alert = DriftAlert.objects.create(
        model_version=version,
        baseline_accuracy=baseline,
        current_accuracy=current,
        checked_items=checked,
        detail=f"{correct}/{checked} checked auto-accepted predictions right in the last {window.days} days "
        f"vs {100 * baseline:.1f}% ({source})",
    )
    audit_record(actor=None, verb="model.drift", obj=version, data={"drop_points": round(drop, 2)})
    if bool(settings.DRIFT_AUTO_FINETUNE):
        try:
            job = training_job_start(
                actor=None,
                base_version=version,
                epochs=int(settings.DRIFT_AUTO_EPOCHS),
                window_start=training_window_default_start(base_version=version),
                trigger=TrainingJob.Trigger.DRIFT,
            )
        except ValidationError as e:
            alert.detail += f"\nNo fine-tuning job started: {'; '.join(e.messages)}"
            alert.save(update_fields=["detail"])
        else:
            alert.training_job = job
            alert.save(update_fields=["training_job"])
    return alert


def drift_alert_resolve(*, alert: DriftAlert, actor: Any) -> DriftAlert:
    DriftAlert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=actor
    )
    audit_record(actor=actor, verb="model.drift_resolved", obj=alert)
    alert.refresh_from_db()
    return alert
