"""GET /metrics: Prometheus text format (fusionreview/metrics.py), for the scraper only.

Allowed when one holds: the request carries `Authorization: Bearer <METRICS_TOKEN>`; it comes
from an address in METRICS_ALLOWED_IPS (none by default); or a signed-in user may
manage models (admins). Everyone else gets 403: queue depths and model names are not public.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fusionreview.metrics import registry_for_scrape
from fusionreview.roles import Perm


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    if request.META.get("REMOTE_ADDR", "") in settings.METRICS_ALLOWED_IPS:
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.has_perm(Perm.MANAGE_MODELS))


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse(
            "403: /metrics needs the METRICS_TOKEN bearer token, an allowed address or an admin.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(generate_latest(registry_for_scrape()), content_type=CONTENT_TYPE_LATEST)
