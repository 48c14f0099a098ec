"""What every knowledge editor page shares: the role checks, the common context, form errors."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django_htmx.http import trigger_client_event

from fusionreview.roles import Perm, perm_required
from knowledge.changelog import changes_pending, knowledge_version_latest

viewer = perm_required(Perm.VIEW_KNOWLEDGE)
editor = perm_required(Perm.EDIT_KNOWLEDGE)

Context = dict[str, object]
# A form's cleaned_data: its values are as varied as the form's fields.
CleanedData = dict[str, Any]

_SECTIONS = {
    "knowledge-tree": "tree",
    "knowledge-brands": "brands",
    "knowledge-brand": "brands",
    "knowledge-suggestions": "suggestions",
    "knowledge-noise": "noise",
    "knowledge-changes": "changes",
    "knowledge-versions": "versions",
    "knowledge-version": "versions",
    "knowledge-import": "import",
}


def changed(response: HttpResponse) -> HttpResponse:
    """Tell the page the graph changed (the tree and the pending badge reload themselves)."""
    return trigger_client_event(response, "graph-changed", {})


def common(request: HttpRequest) -> Context:
    match = getattr(request, "resolver_match", None)
    return {
        "section": _SECTIONS.get(match.url_name if match else "", ""),
        "pending_count": changes_pending().count(),
        "can_edit": request.user.has_perm(Perm.EDIT_KNOWLEDGE),
        "latest_version": knowledge_version_latest(),
    }


def form_error(form: forms.Form) -> str:
    return "; ".join(
        f"{name}: {' '.join(errs)}" if name != "__all__" else " ".join(errs)
        for name, errs in form.errors.items()
    )


def page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", 1)))
    except (TypeError, ValueError):
        return 1


def int_param(request: HttpRequest, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(request.GET.get(name, default))))
    except (TypeError, ValueError):
        return default
