"""Writes for fine-tuning: training jobs, model registration, the evaluation gate, promotion, rollback,
the heartbeat sweep and the drift monitor.

torch/transformers are imported only inside the functions that run in the `training` worker
(`training_job_run`, `model_version_evaluate`), never when the web process imports this module.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from classifier.audit import Actor, audit_record
from classifier.registry.artifacts import device_choose
from classifier.registry.evaluation import (
    finetune_min_corrections,
    model_version_evaluate,
    replay_catalogue_path,
)
from classifier.registry.models import ModelVersion
from classifier.registry.services import artifact_verify, model_version_register
from classifier.review import examples as sel
from classifier.task_names import TRAIN_MODEL_VERSION, task_signature
from classifier.training import selectors as training_selectors
from classifier.training.models import TrainingJob
from fusionreview.dispatch import task_dispatch
from knowledge.cache import snapshot_current

log = logging.getLogger(__name__)


def versions_dir() -> Path:
    return Path(settings.FUSION_VERSIONS_DIR)


MAX_EPOCHS = 20


def training_window_default_start(*, base_version: ModelVersion) -> dt.datetime | None:
    """New corrections are those after the base version's data window (or after it was created)."""
    return base_version.data_window_end or (base_version.created_at if base_version.parent_id else None)


def training_job_start(
    *,
    actor: Actor,
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
    active = training_selectors.training_job_active()
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
                requested_by=actor if isinstance(actor, User) else None,
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

    task_dispatch(task_signature(TRAIN_MODEL_VERSION), args=[job.pk])
    return job


def training_job_cancel(*, job: TrainingJob, actor: Actor) -> TrainingJob:
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
