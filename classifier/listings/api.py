"""Listings API: thin views over `classifier.listings.services` and `classifier.listings.selectors`."""

from __future__ import annotations

import logging

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from classifier.listings.selectors import listing_detail, listing_list
from classifier.listings.serializers import (
    ErrorOutput,
    ListingCreateInput,
    ListingListQuery,
    ListingOutput,
    ListingPageOutput,
    ListingSummaryOutput,
)
from classifier.listings.services import listing_ingest
from classifier.listings.validation import ListingConflict, ListingRejected
from fusionreview.metrics import INGEST_SECONDS
from fusionreview.roles import Perm, has_perm

log = logging.getLogger(__name__)


def _error(code: str, message: str, *, field: str, http_status: int) -> Response:
    errors = {field or "non_field_errors": [message]}
    return Response({"detail": message, "code": code, "errors": errors}, status=http_status)


def _serializer_error(errors: dict) -> Response:
    # "title: This field is required." -- the message names the field and the problem.
    field, messages = next(iter(errors.items()))
    message = f"{field}: {messages[0]}" if isinstance(messages, list) and messages else f"{field}: invalid"
    return Response(
        {"detail": message, "code": "invalid", "errors": errors}, status=status.HTTP_400_BAD_REQUEST
    )


class ListingPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ListingCollection(APIView):
    """POST a listing (needs ingest permission); GET the list (needs view permission)."""

    parser_classes = [MultiPartParser, FormParser]

    def get_permissions(self):
        perm = Perm.INGEST if self.request.method == "POST" else Perm.VIEW_LISTINGS
        return [has_perm(perm)()]

    @extend_schema(
        operation_id="listings_create",
        request={"multipart/form-data": ListingCreateInput},
        responses={
            201: OpenApiResponse(ListingOutput, description="Created and queued for classification"),
            200: OpenApiResponse(ListingOutput, description="Identical repeat: the existing listing"),
            400: OpenApiResponse(ErrorOutput, description="Bad input; the message names the field"),
            409: OpenApiResponse(ErrorOutput, description="Same source/external_id with different content"),
        },
        description="Submit a listing (photo + title). Idempotent on (source, external_id).",
    )
    def post(self, request: Request) -> Response:
        with INGEST_SECONDS.time():
            return self._create(request)

    def _create(self, request: Request) -> Response:
        data = ListingCreateInput(data=request.data)
        if not data.is_valid():
            return _serializer_error(data.errors)
        v = data.validated_data
        try:
            listing, created = listing_ingest(
                source=v["source"],
                external_id=v["external_id"],
                title=v["title"],
                description=v["description"],
                attributes=v["attributes"],
                image_file=v["image"],
                actor=request.user,
            )
        except ListingConflict as exc:
            return _error(exc.code, exc.message, field=exc.field, http_status=status.HTTP_409_CONFLICT)
        except ListingRejected as exc:
            return _error(exc.code, exc.message, field=exc.field, http_status=status.HTTP_400_BAD_REQUEST)
        log.info("listing %s", "accepted" if created else "repeated", extra={"listing_id": listing.pk})
        body = ListingOutput(listing, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="listings_list",
        parameters=[ListingListQuery],
        responses={
            200: ListingPageOutput,
            400: ErrorOutput,
            404: OpenApiResponse(ErrorOutput, description="A page past the last one"),
        },
    )
    def get(self, request: Request) -> Response:
        query = ListingListQuery(data=request.query_params)
        if not query.is_valid():
            return _serializer_error(query.errors)
        qs = listing_list(
            status=query.validated_data.get("status", ""), search=query.validated_data.get("search", "")
        )
        paginator = ListingPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            ListingSummaryOutput(page, many=True, context={"request": request}).data
        )


class ListingItem(APIView):
    """One listing with its current prediction and review state."""

    permission_classes = [has_perm(Perm.VIEW_LISTINGS)]

    @extend_schema(operation_id="listings_retrieve", responses={200: ListingOutput, 404: ErrorOutput})
    def get(self, request: Request, pk: int) -> Response:
        listing = listing_detail(listing_id=pk)
        if listing is None:
            raise Http404("No such listing")
        return Response(ListingOutput(listing, context={"request": request}).data)
