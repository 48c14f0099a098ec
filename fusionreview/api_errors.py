"""DRF's exception handler, with every error body in the one documented shape.

`{"detail": "<a sentence>", "code": "<machine-readable>", "errors": {field: [messages]}}`
(`errors` is `{}` when no field is at fault). DRF's own exceptions (404 "Not found.", 401, 403,
405, 429 throttled) come without `code` and `errors`; nested field errors (a list item, a
nested object) come as objects. Clients and the OpenAPI schema expect the flat shape.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def flat_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """{"aliases": {"0": ["too long"]}} -> {"aliases.0": ["too long"]}: field -> list of sentences."""
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for key, value in errors.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flat_errors(value, name))
        return flat
    if isinstance(errors, list) and any(isinstance(item, dict | list) for item in errors):
        flat = {}
        for index, item in enumerate(errors):
            if item:
                flat.update(flat_errors(item, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    messages = errors if isinstance(errors, list) else [errors]
    return {prefix or "non_field_errors": [str(m) for m in messages]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API exception: fusionreview.middleware answers JSON 500/503
    data = response.data
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        code = data.get("code") or getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        extra = {k: v for k, v in data.items() if k not in ("detail", "code", "errors")}
        errors = flat_errors(data["errors"]) if data.get("errors") else {}
        response.data = {"detail": str(detail), "code": str(code), "errors": errors, **extra}
    else:
        # Field errors raised as a ValidationError: name the first field and problem in `detail`.
        errors = flat_errors(data)
        field, messages = next(iter(errors.items()), ("non_field_errors", ["invalid"]))
        detail = messages[0] if field == "non_field_errors" else f"{field}: {messages[0]}"
        response.data = {"detail": detail, "code": "invalid", "errors": errors}
    return response
