"""Shared pieces of the integrator API: one error shape, one paginator, one permission per method."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from fusionreview.roles import Perm, has_perm


class ApiErrorOutput(serializers.Serializer):
    """Every refusal: a sentence for a person, a code for a program, and the fields at fault."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


def api_error(message: str, *, code: str, http_status: int, field: str = "") -> Response:
    return Response(
        {"detail": message, "code": code, "errors": {field or "non_field_errors": [message]}},
        status=http_status,
    )


def api_invalid(errors: dict[str, Any]) -> Response:
    """A 400 whose message names the first field at fault ("epochs: Ensure this value ...")."""
    field, messages = next(iter(errors.items()))
    first = messages[0] if isinstance(messages, list) and messages else messages
    if isinstance(first, dict):  # nested serializer
        first = next(iter(first.values()), "invalid")
    message = f"{field}: {first}" if field != "non_field_errors" else str(first)
    return Response(
        {"detail": message, "code": "invalid", "errors": errors}, status=status.HTTP_400_BAD_REQUEST
    )


class ApiPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def perms_by_method(view: Any, *, read: Perm, write: Perm) -> list:
    """GET/HEAD/OPTIONS need `read`; anything else needs `write`."""
    perm = read if view.request.method in ("GET", "HEAD", "OPTIONS") else write
    return [has_perm(perm)()]
