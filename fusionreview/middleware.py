"""JSON errors under /api/: a script never gets an HTML page, and an outage says "retry later".

- A backing service down while a request runs (PostgreSQL, the Redis broker or cache) -> 503
  `{"detail", "code": "service_unavailable", "errors": {}, "service"}` with `Retry-After`.
- Any other unhandled error -> 500 `{"detail", "code": "server_error"}` (logged with the trace).
- Django's own HTML error pages (404 for an unknown URL, 400, 403, 413) under /api/ are
  replaced by the same JSON shape.

Everything else (the HTML pages for people) keeps Django's handling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

import kombu.exceptions
import redis.exceptions
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)

API_PREFIX = "/api/"

# exception type -> the service named in the answer
UNAVAILABLE: tuple[tuple[type[BaseException], str], ...] = (
    (OperationalError, "database"),
    (InterfaceError, "database"),
    (kombu.exceptions.OperationalError, "broker"),
    (redis.exceptions.ConnectionError, "redis"),
    (redis.exceptions.TimeoutError, "redis"),
)


def service_unavailable(service: str) -> JsonResponse:
    retry_after = settings.API_RETRY_AFTER_SECONDS
    response = JsonResponse(
        {
            "detail": f"The {service} is unavailable right now; nothing was changed. Retry in {retry_after} s.",
            "code": "service_unavailable",
            "errors": {},
            "service": service,
        },
        status=503,
    )
    response["Retry-After"] = str(retry_after)
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


class ApiErrorMiddleware:
    """Put high in MIDDLEWARE (right after SecurityMiddleware) so it sees every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if _is_api(request) and response.status_code >= 400 and _is_html(response):
            return _as_json(response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _is_api(request):
            return None
        for kind, service in UNAVAILABLE:
            if isinstance(exception, kind):
                log.warning("API %s %s: %s unavailable: %s", request.method, request.path, service, exception)
                return service_unavailable(service)
        log.exception("API %s %s failed", request.method, request.path)
        return JsonResponse(
            {"detail": "Internal server error; it has been logged.", "code": "server_error", "errors": {}},
            status=500,
        )


def _is_html(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("text/html")


def _as_json(response: HttpResponse) -> JsonResponse:
    status = response.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    code = {404: "not_found", 403: "permission_denied", 400: "bad_request", 413: "too_large"}.get(
        status, "server_error" if status >= 500 else "error"
    )
    json_response = JsonResponse({"detail": phrase, "code": code, "errors": {}}, status=status)
    if status == 503:
        json_response["Retry-After"] = response.get("Retry-After", str(settings.API_RETRY_AFTER_SECONDS))
    return json_response
