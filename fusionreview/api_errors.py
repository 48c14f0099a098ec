"""DRF's exception handler, with every error body in the one documented shape.

`{"detail": "<a sentence>", "code": "<machine-readable>"}` (plus `errors` for field problems, as
the views add them). DRF's own exceptions (404 "Not found.", 401, 403, 405, 429 throttled) come
without `code`; clients and the OpenAPI schema (`ErrorOutput`) expect it.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API exception: fusionreview.middleware answers JSON 500/503
    data = response.data
    if isinstance(data, dict) and "detail" in data and "code" not in data:
        code = getattr(data["detail"], "code", None) or getattr(exc, "default_code", "error")
        response.data = {
            "detail": str(data["detail"]),
            "code": str(code),
            **{k: v for k, v in data.items() if k != "detail"},
        }
    elif isinstance(data, dict) and "detail" not in data:
        # A serializer's field errors raised as ValidationError: name the first field in `detail`.
        field, messages = next(iter(data.items()), ("non_field_errors", ["invalid"]))
        first = messages[0] if isinstance(messages, list) and messages else messages
        response.data = {"detail": f"{field}: {first}", "code": "invalid", "errors": data}
    elif isinstance(data, list):
        response.data = {
            "detail": str(data[0]) if data else "invalid",
            "code": "invalid",
            "errors": {"non_field_errors": data},
        }
    return response
