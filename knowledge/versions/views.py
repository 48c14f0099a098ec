"""Publish (with its impact preview), discard, the versions and their diffs, the change log.
Reading needs Perm.VIEW_KNOWLEDGE; every write Perm.EDIT_KNOWLEDGE."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from fusionreview.roles import Perm
from knowledge import forms
from knowledge.changelog import KnowledgeError, change_page, changes_pending
from knowledge.models import KnowledgeVersion, RerouteJob
from knowledge.ports import references
from knowledge.versions.diff import knowledge_version_compare
from knowledge.versions.preview import impact_preview
from knowledge.versions.publish import knowledge_discard, knowledge_publish, knowledge_version_restore
from knowledge.versions.snapshot import knowledge_version_numbers
from knowledge.web import common, editor, form_error, int_param, page_number, viewer


def _published_messages(request: HttpRequest, version: KnowledgeVersion) -> None:
    job = RerouteJob.objects.filter(knowledge_version=version).first()
    if job is not None and job.planned_task_ids:
        messages.info(
            request,
            f"The review queue is re-checked against v{version.number} in the background: "
            f"{len(job.planned_task_ids)} open task(s) no longer conflict and are being resolved "
            "(progress and undo on the version page).",
        )
    if version.activated_at:
        messages.success(
            request,
            f"Published knowledge v{version.number}; workers use it from their next batch.",
        )
    else:
        messages.warning(
            request,
            f"Published knowledge v{version.number}, but the entity cache is unreachable: "
            "the previous version stays in force until the retry pushes it.",
        )


@viewer
def publish(request: HttpRequest) -> HttpResponse:
    """GET: the impact preview of the pending edits; POST: publish them."""
    if request.method == "POST":
        if not request.user.has_perm(Perm.EDIT_KNOWLEDGE):
            raise PermissionDenied("You need the edit-knowledge permission to publish.")
        form = forms.PublishForm(request.POST)
        if form.is_valid():
            try:
                version = knowledge_publish(actor=request.user, reason=form.cleaned_data["reason"])
            except KnowledgeError as exc:
                messages.error(request, str(exc))
            else:
                _published_messages(request, version)
                return redirect("knowledge-versions")
        else:
            messages.error(request, form_error(form))
        return redirect("knowledge-publish")
    days = int_param(request, "days", 7, 1, 365)
    limit = int_param(request, "limit", 5000, 10, 100000)
    ctx = {
        "preview": impact_preview(days=days, limit=limit),
        "changes": changes_pending()[:200],
        "form": forms.PublishForm(),
        "days": days,
        "limit": limit,
        **common(request),
    }
    if request.htmx and request.htmx.target == "impact":
        return render(request, "knowledge/partials/impact.html", ctx)
    return render(request, "knowledge/publish.html", ctx)


@editor
@require_POST
def discard(request: HttpRequest) -> HttpResponse:
    try:
        count = knowledge_discard(actor=request.user, reason=request.POST.get("reason", ""))
    except KnowledgeError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Discarded {count} pending changes; the graph is back to the published version."
        )
    return redirect("knowledge-publish")


@viewer
@require_GET
def versions(request: HttpRequest) -> HttpResponse:
    rows = KnowledgeVersion.objects.select_related("created_by").defer("snapshot", "row_ids")[:100]
    return render(request, "knowledge/versions.html", {"versions": rows, **common(request)})


@viewer
@require_GET
def version_detail(request: HttpRequest, number: int) -> HttpResponse:
    """The version's diff against the previous one (or `?against=N`), with who changed what and why."""
    against_raw = request.GET.get("against", "")
    against = int(against_raw) if against_raw.isdigit() else None
    comparison = knowledge_version_compare(number=number, against=against)
    if comparison is None:
        raise Http404(f"There is no knowledge v{number}.")
    if against is not None and comparison.base is None:
        messages.error(request, f"There is no knowledge v{against}; compared with the previous version.")
        return redirect("knowledge-version", number=number)
    ctx = {
        "version": comparison.version,
        "comparison": comparison,
        "diff": comparison.diff,
        "unchanged": [
            title
            for title, section in (
                ("brands", comparison.diff.brands),
                ("categories", comparison.diff.categories),
                ("attribute rules", comparison.diff.rules),
                ("noise terms", comparison.diff.noise_terms),
            )
            if section.empty
        ],
        "changes": comparison.changes,
        "numbers": [n for n in knowledge_version_numbers() if n != number],
        **common(request),
    }
    return render(request, "knowledge/version_detail.html", ctx)


@editor
@require_POST
def version_restore(request: HttpRequest, number: int) -> HttpResponse:
    try:
        version = knowledge_version_restore(
            actor=request.user,
            number=number,
            reason=request.POST.get("reason", "") or f"restore of v{number}",
        )
    except KnowledgeError as exc:
        messages.error(request, str(exc))
        return redirect("knowledge-versions")
    messages.success(request, f"Restored v{number} as knowledge v{version.number}.")
    return redirect("knowledge-versions")


@editor
@require_POST
def version_reroute_undo(request: HttpRequest, number: int) -> HttpResponse:
    """Put back in the queue the review tasks this version's publish resolved (where still possible)."""
    result = references().reroute_undo(number=number, actor=request.user)
    text = f"{result['undone']} tasks resolved by v{number} are back in the review queue."
    if result["refused"]:
        text += f" {result['refused']} could not be put back (decided or re-queued since)."
    messages.success(request, text)
    return redirect("knowledge-version", number=number)


@viewer
@require_GET
def changes(request: HttpRequest) -> HttpResponse:
    page = change_page(number=page_number(request), size=100)
    ctx = {"changes": page.rows, "page": page, "query": "", **common(request)}
    return render(request, "knowledge/changes.html", ctx)
