"""Shared pieces of the integrator API: one error shape, one paginator, one permission per method."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from fusionreview.roles import Perm, has_perm


class JsonAPIView(APIView):
    """The integrator API's views: request bodies are JSON (one documented shape, strict types)."""

    parser_classes = [JSONParser]


# PostgreSQL text cannot hold NUL: the schema says so (drf-spectacular turns this into a `pattern`).
NO_NUL = RegexValidator(r"^[^\x00]*$", message="must not contain NUL characters")


class StrictCharField(serializers.CharField):
    """A JSON string, nothing else (DRF's CharField would turn 0 or false into "0" / "False")."""

    def __init__(self, **kwargs: Any) -> None:
        # Whitespace is the services' business (they collapse it and name an empty name); trimming
        # here would turn " " into a blank the schema's minLength does not announce.
        kwargs.setdefault("trim_whitespace", False)
        kwargs["validators"] = [*kwargs.get("validators", []), NO_NUL]
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, nothing else (DRF's IntegerField would take "5", 5.0 or true)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


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


def _messages(value: Any, prefix: str = "") -> list[str]:
    """DRF's nested errors (a list field's {index: [...]}, a nested serializer's dict) as flat sentences."""
    if isinstance(value, dict):
        return [m for key, sub in value.items() for m in _messages(sub, f"{prefix}item {key}: ")]
    if isinstance(value, list | tuple):
        return [m for sub in value for m in _messages(sub, prefix)]
    return [f"{prefix}{value}"]


def api_invalid(errors: dict[str, Any]) -> Response:
    """A 400 whose message names the first field at fault ("epochs: Ensure this value ...")."""
    flat = {field: _messages(value) for field, value in errors.items()}
    field, messages = next(iter(flat.items()))
    first = messages[0] if messages else "invalid"
    message = f"{field}: {first}" if field != "non_field_errors" else first
    return Response(
        {"detail": message, "code": "invalid", "errors": flat}, status=status.HTTP_400_BAD_REQUEST
    )


class ApiPagination(PageNumberPagination):
    """DRF's page-number pagination; a page past the end shows the last page instead of a 404."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_number(self, request: Any, paginator: Any) -> Any:
        number = super().get_page_number(request, paginator)
        try:
            return min(max(1, int(number)), paginator.num_pages)
        except (TypeError, ValueError):
            return number


class PageQuery(serializers.Serializer):
    """The paging parameters every list endpoint takes, checked: a bad value is a 400, not ignored.

    Query-parameter serializers subclass it. An empty value (`?page=`) is refused like any other
    bad value (DRF would drop it silently, as it does for an empty HTML form field).
    """

    def to_internal_value(self, data: Any) -> Any:
        empty = [
            name
            for name, field in self.fields.items()
            if hasattr(data, "get") and data.get(name) == "" and not getattr(field, "allow_blank", False)
        ]
        if empty:
            raise serializers.ValidationError({name: ["A value is required."] for name in empty})
        return super().to_internal_value(data)

    page = serializers.IntegerField(
        required=False, min_value=1, help_text="1-based; past the end: the last page"
    )
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200, help_text="Default 50")


# drf-spectacular expands a serializer into query parameters with its bounds (minimum, maximum).
PAGE_PARAMETERS: list = [PageQuery]


def perms_by_method(view: Any, *, read: Perm, write: Perm) -> list:
    """GET/HEAD/OPTIONS need `read`; anything else needs `write`."""
    perm = read if view.request.method in ("GET", "HEAD", "OPTIONS") else write
    return [has_perm(perm)()]


def paged(item: type[serializers.Serializer], name: str) -> serializers.Serializer:
    """The schema of one page of `item`s: count, next, previous, results (DRF's page-number shape)."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )
