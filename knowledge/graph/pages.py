"""How the category and brand pages answer an edit: one versioned-edit path for both.

An htmx request gets the node's panel back with a notice or an error (200, so htmx swaps it in;
a notice also tells the page the graph changed); a plain one gets a message and a redirect to the
node's page. A refused form or edit shows its message on the node the edit started from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

from django import forms as django_forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from knowledge.changelog import KnowledgeError, Node
from knowledge.forms import NodeEditForm
from knowledge.graph.nodes import NodeKind, node_update
from knowledge.graph.rules import aliases_parse
from knowledge.web import CleanedData, Context, changed, form_error

Apply = Callable[[CleanedData], tuple[Node, str]]


@dataclass(frozen=True)
class NodePages(Generic[Node]):
    kind: NodeKind[Node]
    template: str  # the node's panel (an htmx partial)
    context: Callable[[HttpRequest, Node, Context], Context]
    url: Callable[[Node], str]  # the node's page
    label: Callable[[Node], str]  # how notices name the node
    edit_form: type[NodeEditForm]

    def answer(
        self, request: HttpRequest, node: Node, *, notice: str = "", error: str = "", **extra: object
    ) -> HttpResponse:
        if request.htmx:  # type: ignore[attr-defined]  # set by django_htmx's middleware
            ctx = self.context(request, node, {"notice": notice, "error": error, **extra})
            response = render(request, self.template, ctx)
            return changed(response) if notice else response
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect(self.url(node))

    def edit(
        self, request: HttpRequest, node: Node, form_class: type[django_forms.Form], apply: Apply[Node]
    ) -> HttpResponse:
        """Validate the posted form, run `apply` (a service call returning the node to show and
        the notice) and answer; a refusal shows on `node`."""
        form = form_class(request.POST)
        if not form.is_valid():
            return self.answer(request, node, error=form_error(form))
        try:
            shown, notice = apply(form.cleaned_data)
        except KnowledgeError as exc:
            return self.answer(request, node, error=str(exc))
        return self.answer(request, shown, notice=notice)

    def rename(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The edit form of the node's page: name, description, aliases (one per line)."""

        def apply(data: CleanedData) -> tuple[Node, str]:
            saved = node_update(
                self.kind,
                actor=request.user,
                node=node,
                expected_version=data["version"],
                name=data["name"],
                description=data["description"],
                aliases=aliases_parse(data["aliases"]),
                reason=data["reason"],
            )
            return saved, f"Saved {self.label(saved)}."

        node = get_object_or_404(self.kind.model, pk=pk)
        return self.edit(request, node, self.edit_form, apply)
