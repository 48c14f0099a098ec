"""The Models area's pages about training: the version list with its jobs and alerts, training jobs, drift."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from classifier.registry import evaluation as registry_evaluation
from classifier.registry import selectors as registry_selectors
from classifier.registry.models import ModelVersion
from classifier.registry.views import _error, _frozen, manage_models
from classifier.review import examples as review_examples
from classifier.training import drift as training_drift
from classifier.training import selectors as sel
from classifier.training import services as svc
from classifier.training.models import DriftAlert, TrainingJob


@require_GET
@manage_models
def model_list(request: HttpRequest) -> HttpResponse:
    versions = list(registry_selectors.model_versions_all())
    for v in versions:
        v.frozen = _frozen(v)
        v.leaf_pct = round(100 * (v.frozen.get("accuracy") or {}).get("article", 0.0), 1)
    return render(
        request,
        "classifier/model_list.html",
        {
            "versions": versions,
            "promoted": registry_selectors.model_version_promoted(),
            "rollback_target": registry_selectors.model_version_rollback_target(),
            "active_job": sel.training_job_active(),
            "jobs": sel.training_jobs_recent(limit=10),
            "alerts": sel.drift_alerts_open(),
        },
    )


class TrainingJobForm(forms.Form):
    base_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.exclude(status=ModelVersion.Status.REJECTED),
        help_text="The version to start from (usually the one in production).",
    )
    window_start = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Corrections decided after this moment (empty: after the base version's data window).",
    )
    window_end = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="... and up to this moment (empty: now).",
    )
    epochs = forms.IntegerField(min_value=1, max_value=svc.MAX_EPOCHS, initial=3)


@require_http_methods(["GET", "POST"])
@manage_models
def training_new(request: HttpRequest) -> HttpResponse:
    promoted = registry_selectors.model_version_promoted()
    form = TrainingJobForm(request.POST or None, initial={"base_version": promoted, "epochs": 3})
    if request.method == "POST" and form.is_valid():
        base = form.cleaned_data["base_version"]
        start = form.cleaned_data["window_start"] or svc.training_window_default_start(base_version=base)
        try:
            job = svc.training_job_start(
                actor=request.user,
                base_version=base,
                epochs=form.cleaned_data["epochs"],
                window_start=start,
                window_end=form.cleaned_data["window_end"],
            )
        except ValidationError as e:
            form.add_error(None, e)
        else:
            messages.success(request, f"Training job #{job.pk} queued with {job.example_count} corrections.")
            return redirect("training-detail", pk=job.pk)
    default_start = svc.training_window_default_start(base_version=promoted) if promoted else None
    return render(
        request,
        "classifier/training_new.html",
        {
            "form": form,
            "active_job": sel.training_job_active(),
            "default_start": default_start,
            "available": review_examples.training_example_count(start=default_start, end=timezone.now()),
            "min_corrections": registry_evaluation.finetune_min_corrections(),
        },
    )


@require_GET
@manage_models
def training_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = sel.training_job_get(job_id=pk)
    if job is None:
        raise Http404("no such training job")
    ctx = {"job": job, "now": timezone.now()}
    if request.htmx:
        return render(request, "classifier/partials/model_training_progress.html", ctx)
    return render(request, "classifier/training_detail.html", ctx)


@require_POST
@manage_models
def training_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = sel.training_job_get(job_id=pk)
    if job is None:
        raise Http404("no such training job")
    try:
        job = svc.training_job_cancel(job=job, actor=request.user)
    except ValidationError as e:
        _error(request, e)
    else:
        messages.success(
            request,
            "Cancelled."
            if job.status == TrainingJob.Status.CANCELLED
            else "Cancel requested: the job stops at its next step.",
        )
    if request.htmx:
        return render(request, "classifier/partials/model_training_progress.html", {"job": job})
    return redirect("training-detail", pk=pk)


@require_POST
@manage_models
def drift_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    alert = DriftAlert.objects.filter(pk=pk).first()
    if alert is None:
        raise Http404("no such alert")
    training_drift.drift_alert_resolve(alert=alert, actor=request.user)
    messages.success(request, "Drift alert marked as handled.")
    return redirect("model-list")


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return str(dt.timedelta(seconds=round(seconds)))
