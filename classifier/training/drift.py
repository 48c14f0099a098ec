"""The drift monitor: auto-accept accuracy against reviewed labels, alerts and their resolution."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from classifier.audit import Actor, audit_record
from classifier.registry import selectors as registry_selectors
from classifier.training import selectors as sel
from classifier.training.models import DriftAlert, TrainingJob
from classifier.training.services import training_job_start, training_window_default_start


def drift_check(*, now: dt.datetime | None = None) -> DriftAlert | None:
    """Compare the accuracy of checked auto-accepted predictions in the last window with the period before.

    An alert is raised when it dropped by more than DRIFT_THRESHOLD_POINTS (default 5); with
    DRIFT_AUTO_FINETUNE a fine-tuning job is started from the production version (or the reason it
    could not be is written on the alert).
    """
    now = now or timezone.now()
    version = registry_selectors.model_version_promoted()
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
        frozen_baseline = frozen.get("auto_accept_precision")
        source = "auto-accept precision on the frozen evaluation set"
        if frozen_baseline is None:
            return None
        baseline = frozen_baseline
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


def drift_alert_resolve(*, alert: DriftAlert, actor: Actor) -> DriftAlert:
    DriftAlert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=actor
    )
    audit_record(actor=actor, verb="model.drift_resolved", obj=alert)
    alert.refresh_from_db()
    return alert
