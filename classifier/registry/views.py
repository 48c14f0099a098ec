"""Model registry pages: versions, comparison, evaluation gate, promotion/rollback, training jobs, drift.

Admins only (Perm.MANAGE_MODELS) on every page and action. Views translate HTTP to selectors and
services; refusals come back as ValidationError messages shown on the page.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from classifier.registry import plots as model_plots
from classifier.registry import selectors as sel
from classifier.registry import services as svc
from classifier.registry.models import ModelVersion
from classifier.registry.plots import short_category_names
from classifier.registry.tasks import evaluate_model_version
from fusionreview.dispatch import task_dispatch
from fusionreview.roles import Perm, perm_required

manage_models = perm_required(Perm.MANAGE_MODELS)


def _error(request: HttpRequest, e: ValidationError) -> None:
    messages.error(request, "; ".join(e.messages))


def _confirmed(request: HttpRequest) -> bool:
    if request.POST.get("confirm") == "yes":
        return True
    messages.error(request, "Tick the confirmation box to go ahead.")
    return False


def _frozen(version: ModelVersion | None) -> dict[str, Any]:
    if version is None:
        return {}
    return ((version.metrics or {}).get("frozen_eval") or {}).get("metrics") or {}


def _levels(frozen: dict[str, Any], production: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy per level on the frozen set, beside production's where there is one (percent)."""
    acc, prod = frozen.get("accuracy") or {}, production.get("accuracy") or {}
    rows = []
    for key, label in (
        ("master", "Master category"),
        ("sub", "Sub-category"),
        ("article", "Leaf (article type)"),
    ):
        if key in acc:
            mine = round(100 * acc[key], 1)
            theirs = round(100 * prod[key], 1) if key in prod else None
            rows.append(
                {
                    "label": label,
                    "pct": mine,
                    "prod": theirs,
                    "delta": None if theirs is None else round(mine - theirs, 1),
                }
            )
    return rows


@require_GET
@manage_models
def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = sel.model_version_get(version_id=pk)
    if version is None:
        raise Http404("no such model version")
    promoted = sel.model_version_promoted()
    evaluation = sel.model_evaluation_latest(version=version)
    return render(
        request,
        "classifier/model_detail.html",
        {
            "version": version,
            **sel.model_version_title_calibration(version=version),
            "promoted": promoted,
            "evaluation": evaluation,
            "evaluations": version.evaluations.select_related("baseline")[:10],
            "stale_evaluation": bool(
                evaluation
                and promoted
                and evaluation.baseline_id != promoted.pk
                and version.pk != promoted.pk
            ),
            "frozen": _frozen(version),
            "has_items": bool(sel.model_version_frozen(version=version).get("items")),
            "frozen_set": sel.model_version_frozen(version=version).get("set", ""),
            "levels": _levels(
                _frozen(version), _frozen(promoted) if promoted and promoted != version else {}
            ),
            "is_reference": bool(evaluation and evaluation.baseline_id == version.pk),
            "evaluate_on_register": bool(settings.EVALUATE_ON_REGISTER),
            "training": (version.metrics or {}).get("training") or {},
            "jobs": version.produced_by_jobs.all(),
        },
    )


PLOTS = ("confusion", "risk-coverage", "history")


@require_GET
@manage_models
def model_plot(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """A PNG drawn from the version's stored frozen-set figures (404 when it has none yet)."""

    version = sel.model_version_get(version_id=pk)
    if version is None or kind not in PLOTS:
        raise Http404("no such model version or plot")
    frozen = sel.model_version_frozen(version=version)
    items = frozen.get("items") or []
    if kind == "history":
        rows = sel.model_versions_history(set_name=frozen.get("set", ""))
        if not rows:
            raise Http404("not evaluated on the frozen set yet")
        png = model_plots.history_png(
            rows, current=version.name, title="Accuracy per level, version by version"
        )
    elif not items:
        raise Http404("no per-item figures yet: evaluate this version")
    elif kind == "confusion":
        png = model_plots.confusion_png(items, title=f"{version.name}: confusion on the frozen set (leaf)")
    else:
        png = model_plots.risk_coverage_png(
            items, title=f"{version.name}: risk-coverage (frozen set)", threshold=version.review_threshold
        )
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=60"
    return response


@require_POST
@manage_models
def model_promote(request: HttpRequest, pk: int) -> HttpResponse:
    version = sel.model_version_get(version_id=pk)
    if version is None:
        raise Http404("no such model version")
    if _confirmed(request):
        try:
            svc.model_version_promote(version=version, actor=request.user)
        except ValidationError as e:
            _error(request, e)
        else:
            messages.success(request, f"{version.name} is in production; workers switch on their next batch.")
    return redirect("model-detail", pk=pk)


@require_POST
@manage_models
def model_rollback(request: HttpRequest) -> HttpResponse:
    if _confirmed(request):
        try:
            version = svc.model_version_rollback(actor=request.user)
        except ValidationError as e:
            _error(request, e)
        else:
            messages.success(request, f"Rolled back: {version.name} is in production again.")
    return redirect("model-list")


@require_POST
@manage_models
def model_evaluate(request: HttpRequest, pk: int) -> HttpResponse:
    version = sel.model_version_get(version_id=pk)
    if version is None:
        raise Http404("no such model version")

    task_dispatch(evaluate_model_version, args=[version.pk, request.user.pk])
    messages.success(
        request, f"Evaluation of {version.name} queued on the training queue; reload in a minute."
    )
    return redirect("model-detail", pk=pk)


BAR_WIDTH = 260


def _bars(rows: list[tuple[str, float | None, float | None]], *, scale: float | None = None, unit: str = "%"):
    """Rows for the inline SVG chart: label, both values and bar widths in pixels."""
    values = [v for _, a, b in rows for v in (a, b) if v is not None]
    top = scale or (max(values) if values else 1.0) or 1.0
    out = []
    for i, (label, a, b) in enumerate(rows):
        out.append(
            {
                "label": label,
                "a": a,
                "b": b,
                "wa": 0 if a is None else round(BAR_WIDTH * min(a, top) / top, 1),
                "wb": 0 if b is None else round(BAR_WIDTH * min(b, top) / top, 1),
                "y": 8 + i * 34,
            }
        )
    return {"rows": out, "height": 16 + 34 * len(out), "unit": unit, "width": BAR_WIDTH}


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100.0 * x, 2)


@require_GET
@manage_models
def model_compare(request: HttpRequest) -> HttpResponse:
    versions = list(sel.model_versions_all())
    try:
        a = sel.model_version_get(version_id=int(request.GET.get("a", "0")))
        b = sel.model_version_get(version_id=int(request.GET.get("b", "0")))
    except ValueError:
        a = b = None
    ctx: dict[str, Any] = {"versions": versions, "a": a, "b": b}
    if a is not None and b is not None:
        fa, fb = _frozen(a), _frozen(b)
        ea, eb = sel.model_evaluation_latest(version=a), sel.model_evaluation_latest(version=b)
        ra = (ea.candidate_metrics.get("recent") if ea else None) or {}
        rb = (eb.candidate_metrics.get("recent") if eb else None) or {}
        levels = [
            (name, _pct((fa.get("accuracy") or {}).get(k)), _pct((fb.get("accuracy") or {}).get(k)))
            for k, name in (("master", "master"), ("sub", "sub"), ("article", "leaf"))
        ]
        levels.append(
            (
                "recent reviews (leaf)",
                _pct((ra.get("accuracy") or {}).get("article")),
                _pct((rb.get("accuracy") or {}).get("article")),
            )
        )
        pa, pb = fa.get("per_category") or {}, fb.get("per_category") or {}
        cats = sorted(set(pa) | set(pb), key=lambda c: -max(pa.get(c, [0])[0], pb.get(c, [0])[0]))[:15]

        short = short_category_names(cats)  # a leaf name twice (Men/Women > Tshirts) keeps its parent
        per_cat = [
            (
                f"{short[c]} (n={max(pa.get(c, [0])[0], pb.get(c, [0])[0])})",
                _pct(pa[c][1] / pa[c][0]) if pa.get(c) and pa[c][0] else None,
                _pct(pb[c][1] / pb[c][0]) if pb.get(c) and pb[c][0] else None,
            )
            for c in cats
        ]
        ctx.update(
            fa=fa,
            fb=fb,
            levels=_bars(levels, scale=100.0),
            per_category=_bars(per_cat, scale=100.0),
            calibration=_bars(
                [
                    ("ECE (lower is better)", _pct(fa.get("ece")), _pct(fb.get("ece"))),
                    ("review rate", _pct(fa.get("review_rate")), _pct(fb.get("review_rate"))),
                    (
                        "auto-accept precision",
                        _pct(fa.get("auto_accept_precision")),
                        _pct(fb.get("auto_accept_precision")),
                    ),
                ],
                scale=100.0,
            ),
            latency=_bars(
                [
                    (
                        "mean",
                        (fa.get("latency_ms") or {}).get("mean"),
                        (fb.get("latency_ms") or {}).get("mean"),
                    ),
                    ("p95", (fa.get("latency_ms") or {}).get("p95"), (fb.get("latency_ms") or {}).get("p95")),
                ],
                unit=" ms",
            ),
        )
    return render(request, "classifier/model_compare.html", ctx)
