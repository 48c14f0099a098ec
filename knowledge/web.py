"""What every knowledge editor page shares: the role checks, the common context, form errors, and
`NodePages.edit`, the one versioned-edit answer for the category and brand pages alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_htmx.http import trigger_client_event

from fusionreview.roles import Perm, perm_required
from knowledge.changelog import KnowledgeError, changes_pending
from knowledge.models import Brand, Category
from knowledge.versions.snapshot import knowledge_version_latest

viewer = perm_required(Perm.VIEW_KNOWLEDGE)
editor = perm_required(Perm.EDIT_KNOWLEDGE)

Node = TypeVar("Node", Category, Brand)
Context = dict[str, object]

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


@dataclass(frozen=True)
class NodePages(Generic[Node]):
    """How one kind of node (category, brand) answers its edits.

    An htmx request gets the node's panel back with a notice or an error (200, so htmx swaps it
    in; a notice also tells the page the graph changed); a plain one gets a message and a redirect
    to the node's page.
    """

    template: str
    context: Callable[[HttpRequest, Node, Context], Context]
    url: Callable[[Node], str]

    def answer(
        self, request: HttpRequest, node: Node, *, notice: str = "", error: str = "", **extra: object
    ) -> HttpResponse:
        if request.htmx:  # type: ignore[attr-defined]  # set by django_htmx's middleware
            response = render(
                request,
                self.template,
                self.context(request, node, {"notice": notice, "error": error, **extra}),
            )
            return changed(response) if notice else response
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect(self.url(node))

    def edit(
        self,
        request: HttpRequest,
        node: Node,
        form_class: type[forms.Form],
        apply: Callable[[dict[str, object]], tuple[Node, str]],
    ) -> HttpResponse:
        """Validate the posted form, run `apply` (a service call; it returns the node to show and
        the notice), and answer: a refused form or edit shows the message on the node it started on."""
        form = form_class(request.POST)
        if not form.is_valid():
            return self.answer(request, node, error=form_error(form))
        try:
            shown, notice = apply(form.cleaned_data)
        except KnowledgeError as exc:
            return self.answer(request, node, error=str(exc))
        return self.answer(request, shown, notice=notice)
