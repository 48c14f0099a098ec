"""The suggestions page: pending gaps with their evidence, accepted or rejected one by one or in bulk."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from knowledge.changelog import KnowledgeError
from knowledge.models import Suggestion
from knowledge.suggestions import services
from knowledge.suggestions.selectors import suggestions_decided, suggestions_pending
from knowledge.web import common, editor, viewer


@viewer
@require_GET
def suggestions(request: HttpRequest) -> HttpResponse:
    ctx = {
        "pending": suggestions_pending()[:200],
        "decided": suggestions_decided()[:50],
        **common(request),
    }
    return render(request, "knowledge/suggestions.html", ctx)


@editor
@require_POST
def suggestions_refresh(request: HttpRequest) -> HttpResponse:
    result = services.suggestions_refresh()
    messages.success(request, f"{result['created']} new suggestions, {result['pending']} pending.")
    return redirect("knowledge-suggestions")


@editor
@require_POST
def suggestions_accept_bulk(request: HttpRequest) -> HttpResponse:
    """Accept every brand -> category suggestion backed by at least `min_evidence` decisions."""
    try:
        min_evidence = int(request.POST.get("min_evidence", ""))
        result = services.suggestions_accept_bulk(actor=request.user, min_evidence=min_evidence)
    except ValueError as exc:  # KnowledgeError is a ValueError too
        text = str(exc) if isinstance(exc, KnowledgeError) else "The threshold must be a whole number."
        messages.error(request, text)
    else:
        messages.success(
            request,
            f"Accepted {result['accepted']} relations seen in at least {min_evidence} decisions; "
            "pending until published.",
        )
    return redirect("knowledge-suggestions")


@editor
@require_POST
def suggestion_decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    if decision not in ("accept", "reject"):
        raise Http404("Unknown decision.")
    suggestion = get_object_or_404(Suggestion, pk=pk)
    try:
        if decision == "accept":
            services.suggestion_accept(actor=request.user, suggestion=suggestion)
            messages.success(request, "Accepted; the change is pending until published.")
        else:
            services.suggestion_reject(actor=request.user, suggestion=suggestion)
            messages.success(request, "Rejected.")
    except KnowledgeError as exc:
        messages.error(request, str(exc))
    return redirect("knowledge-suggestions")
