"""Project-level pages: the landing page and the health check."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache

from fusionreview.roles import Perm


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each person to where their work is."""
    user = request.user
    if user.has_perm(Perm.REVIEW):
        return redirect("review-queues")
    if user.has_perm(Perm.EDIT_KNOWLEDGE):
        return redirect("knowledge-tree")
    if user.has_perm(Perm.MANAGE_MODELS):
        return redirect("model-list")
    return redirect("listing-list")


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for the load balancer and docker-compose: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
