"""Knowledge API of versions: publish the pending edits; the published versions and their diffs."""

from __future__ import annotations

from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from fusionreview.apicommon import (
    PAGE_PARAMETERS,
    ApiErrorOutput,
    ApiPagination,
    PageQuery,
    api_invalid,
    paged,
)
from knowledge.api import serializers as s
from knowledge.api.common import WRITE_ERRORS, Data, KnowledgeAPIView, api_write, schema
from knowledge.models import KnowledgeVersion
from knowledge.versions.diff import DiffSection, knowledge_version_compare
from knowledge.versions.publish import knowledge_publish


class Publish(KnowledgeAPIView):
    """Publish the pending edits as a new knowledge version; workers use it from their next batch."""

    @schema(
        "knowledge_publish",
        request=s.PublishInput,
        responses={201: s.KnowledgeVersionOutput, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        def apply(v: Data) -> Response:
            version = knowledge_publish(actor=request.user, reason=v["reason"])
            response = Response(s.KnowledgeVersionOutput(version).data, status=status.HTTP_201_CREATED)
            response["Location"] = reverse("api-knowledge-version", args=[version.number])
            return response

        return api_write(request.data, s.PublishInput, apply)


class VersionCollection(KnowledgeAPIView):
    @schema(
        "knowledge_versions_list",
        parameters=PAGE_PARAMETERS,
        responses={
            200: paged(s.KnowledgeVersionOutput, "PaginatedKnowledgeVersionList"),
            400: ApiErrorOutput,
        },
    )
    def get(self, request: Request) -> Response:
        query = PageQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        qs = (
            KnowledgeVersion.objects.select_related("created_by")
            .defer("snapshot", "row_ids")
            .order_by("-number")
        )
        paginator = ApiPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.KnowledgeVersionOutput(page, many=True).data)


def _counts(section: DiffSection) -> dict[str, int]:
    return {"added": section.n_added, "removed": section.n_removed, "changed": section.n_changed}


class VersionItem(KnowledgeAPIView):
    @schema(
        "knowledge_versions_retrieve",
        parameters=[
            OpenApiParameter("against", int, description="Compare with this version (default: previous)")
        ],
        responses={200: s.KnowledgeVersionDetailOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, number: int) -> Response:
        against_raw = request.query_params.get("against", "")
        against = int(against_raw) if against_raw.isdigit() else None
        comparison = knowledge_version_compare(number=number, against=against, limit=0)
        if comparison is None or (against is not None and comparison.base is None):
            raise Http404(f"No knowledge v{against if comparison else number}.")
        d = comparison.diff
        diff = {
            "against": comparison.base.number if comparison.base else None,
            "brands": _counts(d.brands),
            "categories": _counts(d.categories),
            "rules": _counts(d.rules),
            "noise_terms": _counts(d.noise_terms),
        }
        return Response(s.KnowledgeVersionDetailOutput(comparison.version, context={"diff": diff}).data)
