"""Training jobs API: start a fine-tune, follow its status (`classifier.training.services`).

Needs Perm.MANAGE_MODELS (admins). A refused start (another job active, too few corrections, a
rejected base) is a 409 with the reason; a malformed request is a 400 naming the field.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.registry import selectors as training_sel
from classifier.training import selectors as training_selectors
from classifier.training import services as training_svc
from classifier.training.models import TrainingJob
from fusionreview.apicommon import (
    PAGE_PARAMETERS,
    ApiErrorOutput,
    ApiPagination,
    JsonAPIView,
    PageQuery,
    StrictIntegerField,
    api_error,
    api_invalid,
    paged,
)
from fusionreview.roles import Perm, has_perm


class TrainingJobStartInput(serializers.Serializer):
    base_version_id = StrictIntegerField(required=False, help_text="Defaults to the version in production")
    epochs = StrictIntegerField(min_value=1, max_value=training_svc.MAX_EPOCHS, default=3)
    window_start = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Defaults to the end of the base version's data window"
    )
    window_end = serializers.DateTimeField(required=False, allow_null=True, help_text="Defaults to now")


class TrainingJobOutput(serializers.ModelSerializer):
    base_version = serializers.CharField(source="base_version.name")
    result_version_id = serializers.IntegerField(allow_null=True)
    result_version = serializers.CharField(source="result_version.name", allow_null=True, default=None)
    requested_by = serializers.CharField(source="requested_by.username", allow_null=True, default=None)

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "status",
            "trigger",
            "base_version",
            "data_window_start",
            "data_window_end",
            "epochs",
            "example_count",
            "replay_count",
            "epoch",
            "step",
            "total_steps",
            "loss",
            "eta_seconds",
            "phase",
            "error",
            "result_version_id",
            "result_version",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
        ]


class TrainingJobCollection(JsonAPIView):
    permission_classes = [has_perm(Perm.MANAGE_MODELS)]

    @extend_schema(
        operation_id="training_jobs_list",
        tags=["training"],
        parameters=PAGE_PARAMETERS,
        responses={200: paged(TrainingJobOutput, "PaginatedTrainingJobList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        query = PageQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        paginator = ApiPagination()
        page = paginator.paginate_queryset(
            training_selectors.training_jobs_recent(limit=1000), request, view=self
        )
        return paginator.get_paginated_response(TrainingJobOutput(page, many=True).data)

    @extend_schema(
        operation_id="training_jobs_start",
        tags=["training"],
        request=TrainingJobStartInput,
        responses={
            201: OpenApiResponse(TrainingJobOutput, description="Queued on the training queue"),
            400: ApiErrorOutput,
            409: OpenApiResponse(ApiErrorOutput, description="Refused: the reason is in detail"),
        },
    )
    def post(self, request: Request) -> Response:
        data = TrainingJobStartInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        v = data.validated_data
        if "base_version_id" in v:
            base = training_sel.model_version_get(version_id=v["base_version_id"])
            if base is None:
                return api_error(
                    f"No model version {v['base_version_id']}.",
                    code="unknown_reference",
                    field="base_version_id",
                    http_status=status.HTTP_409_CONFLICT,
                )
        else:
            base = training_sel.model_version_promoted()
            if base is None:
                return api_error(
                    "No version is in production; name base_version_id.",
                    code="unknown_reference",
                    field="base_version_id",
                    http_status=status.HTTP_409_CONFLICT,
                )
        start = v.get("window_start") or training_svc.training_window_default_start(base_version=base)
        try:
            job = training_svc.training_job_start(
                actor=request.user,
                base_version=base,
                epochs=v["epochs"],
                window_start=start,
                window_end=v.get("window_end"),
            )
        except ValidationError as exc:
            return api_error("; ".join(exc.messages), code="refused", http_status=status.HTTP_409_CONFLICT)
        job = training_selectors.training_job_get(job_id=job.pk)
        return Response(TrainingJobOutput(job).data, status=status.HTTP_201_CREATED)


class TrainingJobItem(JsonAPIView):
    """A job's live status: phase, epoch/step, loss, ETA, and the candidate it produced."""

    permission_classes = [has_perm(Perm.MANAGE_MODELS)]

    @extend_schema(
        operation_id="training_jobs_retrieve",
        tags=["training"],
        responses={200: TrainingJobOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, pk: int) -> Response:
        job = training_selectors.training_job_get(job_id=pk)
        if job is None:
            raise Http404("No such training job.")
        return Response(TrainingJobOutput(job).data)
