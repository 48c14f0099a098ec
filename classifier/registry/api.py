"""Model versions API: list, evaluate (queued), promote, roll back (`classifier.registry.services`).

Every endpoint needs Perm.MANAGE_MODELS (admins). A refused promotion (gate not passed, evaluated
against another production version, corrupted artifact) is a 409 with the reason; nothing changes.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.registry import selectors as training_sel
from classifier.registry import services as training_svc
from classifier.registry.models import ModelEvaluation, ModelVersion
from classifier.registry.tasks import evaluate_model_version
from fusionreview.apicommon import (
    PAGE_PARAMETERS,
    ApiErrorOutput,
    ApiPagination,
    JsonAPIView,
    PageQuery,
    api_error,
    api_invalid,
    paged,
)
from fusionreview.dispatch import task_dispatch
from fusionreview.roles import Perm, has_perm


class EvaluationOutput(serializers.ModelSerializer):
    baseline = serializers.CharField(source="baseline.name", allow_null=True, default=None)
    frozen_accuracy = serializers.SerializerMethodField()
    baseline_frozen_accuracy = serializers.SerializerMethodField()

    class Meta:
        model = ModelEvaluation
        fields = [
            "id",
            "baseline",
            "eval_set",
            "passed",
            "reasons",
            "margin_points",
            "frozen_accuracy",
            "baseline_frozen_accuracy",
            "created_at",
        ]

    @staticmethod
    def _accuracy(metrics: dict | None) -> dict[str, float] | None:
        """Accuracy per level (master, sub, article) on the frozen set, as the gate measured it."""
        accuracy = ((metrics or {}).get("frozen") or {}).get("accuracy")
        return {k: float(v) for k, v in accuracy.items()} if isinstance(accuracy, dict) else None

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(), allow_null=True))
    def get_frozen_accuracy(self, obj: ModelEvaluation) -> dict[str, float] | None:
        return self._accuracy(obj.candidate_metrics)

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(), allow_null=True))
    def get_baseline_frozen_accuracy(self, obj: ModelEvaluation) -> dict[str, float] | None:
        return self._accuracy(obj.baseline_metrics)


class ModelVersionOutput(serializers.ModelSerializer):
    parent = serializers.CharField(source="parent.name", allow_null=True, default=None)
    trained_by = serializers.CharField(source="trained_by.username", allow_null=True, default=None)
    latest_evaluation = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "status",
            "parent",
            "checksum",
            "review_threshold",
            "data_window_start",
            "data_window_end",
            "trained_by",
            "created_at",
            "promoted_at",
            "latest_evaluation",
        ]

    @extend_schema_field(EvaluationOutput(allow_null=True))
    def get_latest_evaluation(self, obj: ModelVersion) -> dict | None:
        evaluation = training_sel.model_evaluation_latest(version=obj)
        return EvaluationOutput(evaluation).data if evaluation else None


class QueuedOutput(serializers.Serializer):
    detail = serializers.CharField()
    version = ModelVersionOutput()


def _version_or_404(pk: int) -> ModelVersion:
    version = training_sel.model_version_get(version_id=pk)
    if version is None:
        raise Http404("No such model version.")
    return version


def _refused(exc: ValidationError) -> Response:
    return api_error("; ".join(exc.messages), code="refused", http_status=status.HTTP_409_CONFLICT)


_DENIED = {403: OpenApiResponse(ApiErrorOutput, description="Needs the manage-models permission")}


class ModelVersionCollection(JsonAPIView):
    permission_classes = [has_perm(Perm.MANAGE_MODELS)]

    @extend_schema(
        operation_id="models_list",
        tags=["models"],
        parameters=PAGE_PARAMETERS,
        responses={
            200: paged(ModelVersionOutput, "PaginatedModelVersionList"),
            400: ApiErrorOutput,
            **_DENIED,
        },
    )
    def get(self, request: Request) -> Response:
        query = PageQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        paginator = ApiPagination()
        page = paginator.paginate_queryset(training_sel.model_versions_all(), request, view=self)
        return paginator.get_paginated_response(ModelVersionOutput(page, many=True).data)


class ModelVersionItem(JsonAPIView):
    permission_classes = [has_perm(Perm.MANAGE_MODELS)]

    @extend_schema(
        operation_id="models_retrieve",
        tags=["models"],
        responses={200: ModelVersionOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(ModelVersionOutput(_version_or_404(pk)).data)


class ModelVersionEvaluate(JsonAPIView):
    """Queue the evaluation gate (frozen set + recent reviews vs the version in production)."""

    permission_classes = [has_perm(Perm.MANAGE_MODELS)]

    @extend_schema(
        operation_id="models_evaluate",
        tags=["models"],
        request=None,
        responses={
            202: OpenApiResponse(QueuedOutput, description="Queued on the training queue"),
            404: ApiErrorOutput,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        version = _version_or_404(pk)

        user_id = request.user.pk
        task_dispatch(evaluate_model_version, args=[version.pk, user_id])
        body = {
            "detail": f"Evaluation of {version.name} queued; its result appears in latest_evaluation.",
            "version": ModelVersionOutput(version).data,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class ModelVersionPromote(JsonAPIView):
    """Put a version that passed the gate against the current production version into production."""

    permission_classes = [has_perm(Perm.MANAGE_MODELS)]

    @extend_schema(
        operation_id="models_promote",
        tags=["models"],
        request=None,
        responses={
            200: ModelVersionOutput,
            404: ApiErrorOutput,
            409: OpenApiResponse(ApiErrorOutput, description="Refused: the reason is in detail"),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        version = _version_or_404(pk)
        try:
            version = training_svc.model_version_promote(version=version, actor=request.user)
        except ValidationError as exc:
            return _refused(exc)
        return Response(ModelVersionOutput(version).data)


class ModelVersionRollback(JsonAPIView):
    """Put the version that served before the current one back into production."""

    permission_classes = [has_perm(Perm.MANAGE_MODELS)]

    @extend_schema(
        operation_id="models_rollback",
        tags=["models"],
        request=None,
        responses={
            200: ModelVersionOutput,
            409: OpenApiResponse(ApiErrorOutput, description="Nothing to roll back to"),
        },
    )
    def post(self, request: Request) -> Response:
        try:
            version = training_svc.model_version_rollback(actor=request.user)
        except ValidationError as exc:
            return _refused(exc)
        return Response(ModelVersionOutput(version).data)
