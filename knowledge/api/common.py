"""What the knowledge API views share: one base view (read: view-knowledge, write: edit-knowledge),
the error answers, and `api_write`, the one validate-call-answer path every write takes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.db.models import Model
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as drf
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from fusionreview.apicommon import ApiErrorOutput, JsonAPIView, api_error, api_invalid, perms_by_method
from fusionreview.roles import Perm
from knowledge.changelog import KnowledgeError, StaleEdit
from knowledge.paging import Page

M = TypeVar("M", bound=Model)
# A serializer's validated_data: its values are as varied as the serializer's fields.
Data = Mapping[str, Any]

# 400: the request's shape is wrong (the message names the field). 409: a well-formed request the
# graph refuses now (a rule of the editor, a stale version, an id that refers to nothing).
WRITE_ERRORS = {
    400: OpenApiResponse(ApiErrorOutput, description="Malformed input; nothing changed"),
    403: OpenApiResponse(ApiErrorOutput, description="Needs the edit-knowledge permission"),
    409: OpenApiResponse(
        ApiErrorOutput,
        description="Refused: a rule of the graph, a stale version or an unknown id; nothing changed",
    ),
}


def schema(operation_id: str, **kwargs: Any) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """`extend_schema` for one knowledge operation (tagged "knowledge")."""
    decorate: Callable[[Callable[..., Response]], Callable[..., Response]] = extend_schema(
        operation_id=operation_id, tags=["knowledge"], **kwargs
    )
    return decorate


def added_or_existing(output: type[drf.Serializer], existing: str) -> dict[int, OpenApiResponse]:
    """The answers of a write that adds a row, or finds it there already (200, `existing` says how)."""
    return {
        201: OpenApiResponse(output, description="Added (pending until published)"),
        200: OpenApiResponse(output, description=existing),
        **WRITE_ERRORS,
    }


class KnowledgeAPIView(JsonAPIView):
    # Reading needs Perm.VIEW_KNOWLEDGE; every write Perm.EDIT_KNOWLEDGE. (No docstring: the API
    # schema shows a view's docstring, and these views keep the one of JsonAPIView.)

    def get_permissions(self) -> list[BasePermission]:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)


def knowledge_error(exc: KnowledgeError) -> Response:
    code = "stale" if isinstance(exc, StaleEdit) else "refused"
    return api_error(str(exc), code=code, http_status=status.HTTP_409_CONFLICT)


def unknown_reference(what: str, pk: object, field: str) -> Response:
    return api_error(
        f"No {what} with id {pk}.",
        code="unknown_reference",
        field=field,
        http_status=status.HTTP_409_CONFLICT,
    )


def api_write(
    payload: object, serializer: type[drf.Serializer], apply: Callable[[Data], Response]
) -> Response:
    """Validate `payload` with `serializer` (400 naming the field), run `apply` on the valid data;
    a refusal of the graph (`KnowledgeError`) is a 409 that says why."""
    data = serializer(data=payload)
    if not data.is_valid():
        return api_invalid(data.errors)
    try:
        return apply(data.validated_data)
    except KnowledgeError as exc:
        return knowledge_error(exc)


def get_or_404(model: type[M], pk: int, what: str) -> M:
    obj = model._default_manager.filter(pk=pk).first()
    if obj is None:
        raise Http404(f"No such {what}.")
    return obj


def paged_response(request: Request, page: Page[object], results: list[dict[str, object]]) -> Response:
    """The same envelope as DRF's page-number pagination: count, next, previous, results."""
    base = request.build_absolute_uri(request.path)
    query = request.query_params.copy()

    def link(number: int) -> str:
        query["page"] = str(number)
        return f"{base}?{query.urlencode()}"

    return Response(
        {
            "count": page.total,
            "next": link(page.next_number) if page.has_next else None,
            "previous": link(page.previous_number) if page.has_previous else None,
            "results": results,
        }
    )


def paged_schema(item: type[drf.Serializer], name: str) -> drf.Serializer:
    return inline_serializer(
        name=name,
        fields={
            "count": drf.IntegerField(),
            "next": drf.URLField(allow_null=True),
            "previous": drf.URLField(allow_null=True),
            "results": item(many=True),
        },
    )
