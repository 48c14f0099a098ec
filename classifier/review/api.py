"""Review tasks API: list with filters, claim next, decide, undo (`classifier.review.services`, `classifier.review.decisions`).

Every endpoint needs Perm.REVIEW (auditors, ops, admins). A decision names the task version the
auditor saw; a stale or lost claim is a 409 whose message says what happened, and nothing changes.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.listings.models import RouteReasonChoice
from classifier.review import decisions as review_decisions
from classifier.review import selectors as review_sel
from classifier.review import services as review_svc
from classifier.review.models import ReviewDecision, ReviewTask
from fusionreview.apicommon import (
    ApiErrorOutput,
    ApiPagination,
    JsonAPIView,
    PageQuery,
    StrictCharField,
    StrictIntegerField,
    api_error,
    api_invalid,
    paged,
)
from fusionreview.roles import Perm, has_perm


class ReviewTaskOutput(serializers.ModelSerializer):
    listing_id = serializers.IntegerField()
    listing_title = serializers.CharField(source="listing.title")
    predicted_category_id = serializers.IntegerField(source="prediction.category_id", allow_null=True)
    predicted_category = serializers.CharField(source="prediction.category_label")
    predicted_brand = serializers.CharField(source="prediction.brand_label")
    confidence = serializers.FloatField(source="prediction.confidence")
    claimed_by = serializers.CharField(source="claimed_by.username", allow_null=True, default=None)

    class Meta:
        model = ReviewTask
        fields = [
            "id",
            "version",
            "status",
            "reason",
            "reason_detail",
            "route_reason",
            "priority",
            "listing_id",
            "listing_title",
            "predicted_category_id",
            "predicted_category",
            "predicted_brand",
            "confidence",
            "claimed_by",
            "claim_expires_at",
            "created_at",
            "decided_at",
        ]


class ReviewTaskListQuery(PageQuery):
    status = serializers.ChoiceField(choices=ReviewTask.Status.choices, required=False)
    reason = serializers.ChoiceField(choices=ReviewTask.Reason.choices, required=False)
    route_reason = serializers.ChoiceField(
        choices=RouteReasonChoice.choices, required=False, help_text="Why the router sent it"
    )
    category_id = serializers.IntegerField(required=False, min_value=1)
    claimed_by_me = serializers.BooleanField(
        required=False, default=False, help_text="Only the tasks you hold"
    )


class ClaimNextInput(serializers.Serializer):
    reason = serializers.ChoiceField(choices=ReviewTask.Reason.choices, required=False)
    category_id = StrictIntegerField(required=False, min_value=1)


class DecideInput(serializers.Serializer):
    version = StrictIntegerField(help_text="The task version returned when you claimed it")
    action = serializers.ChoiceField(
        choices=[c for c in ReviewDecision.Action.choices if c[0] != ReviewDecision.Action.UNDO]
    )
    category_id = StrictIntegerField(required=False, allow_null=True, help_text="Leaf; for `correct`")
    brand = StrictCharField(required=False, allow_blank=True, default="", max_length=200)
    cause = serializers.ChoiceField(choices=ReviewDecision.Cause.choices, required=False, default="")
    comment = StrictCharField(required=False, allow_blank=True, default="", max_length=2000)


class DecisionOutput(serializers.ModelSerializer):
    category = serializers.CharField(source="category.path_label", allow_null=True, default=None)
    brand = serializers.CharField(source="brand.name", allow_null=True, default=None)
    auditor = serializers.CharField(source="auditor.username")

    class Meta:
        model = ReviewDecision
        fields = [
            "id",
            "action",
            "category_id",
            "category",
            "brand",
            "cause",
            "comment",
            "auditor",
            "created_at",
        ]


class DecisionOutcomeOutput(serializers.Serializer):
    decision = DecisionOutput()
    task = ReviewTaskOutput()


def _review_error(exc: review_svc.ReviewError) -> Response:
    if isinstance(exc, review_svc.InvalidDecision):
        return api_error(str(exc), code="invalid_decision", http_status=status.HTTP_409_CONFLICT)
    if isinstance(exc, review_svc.AlreadyRecorded):
        return api_error(str(exc), code="already_recorded", http_status=status.HTTP_409_CONFLICT)
    return api_error(str(exc), code="claim_lost", http_status=status.HTTP_409_CONFLICT)


_ERRORS = {
    400: OpenApiResponse(ApiErrorOutput, description="Bad input; nothing changed"),
    403: OpenApiResponse(ApiErrorOutput, description="Needs the review permission"),
}


class ReviewTaskCollection(JsonAPIView):
    permission_classes = [has_perm(Perm.REVIEW)]

    @extend_schema(
        operation_id="review_tasks_list",
        tags=["review"],
        parameters=[ReviewTaskListQuery],
        responses={200: paged(ReviewTaskOutput, "PaginatedReviewTaskList"), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = ReviewTaskListQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        v = query.validated_data
        qs = review_sel.review_task_list(
            status=v.get("status", ""),
            reason=v.get("reason", ""),
            route_reason=v.get("route_reason", ""),
            category_id=v.get("category_id"),
            claimed_by=request.user if v["claimed_by_me"] else None,
        )
        paginator = ApiPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ReviewTaskOutput(page, many=True).data)


class ReviewTaskItem(JsonAPIView):
    permission_classes = [has_perm(Perm.REVIEW)]

    @extend_schema(
        operation_id="review_tasks_retrieve",
        tags=["review"],
        responses={200: ReviewTaskOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, pk: int) -> Response:
        task = review_sel.review_task_get(task_id=pk)
        if task is None:
            raise Http404("No such review task.")
        return Response(ReviewTaskOutput(task).data)


class ReviewClaimNext(JsonAPIView):
    """Hand the caller the next task of the queue (or the one they already hold)."""

    permission_classes = [has_perm(Perm.REVIEW)]

    @extend_schema(
        operation_id="review_tasks_claim_next",
        tags=["review"],
        request=ClaimNextInput,
        responses={
            200: OpenApiResponse(ReviewTaskOutput, description="The task you now hold"),
            204: OpenApiResponse(description="The queue is empty"),
            **_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        data = ClaimNextInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        task = review_svc.review_claim_next(
            auditor=request.user,
            reason=data.validated_data.get("reason"),
            category_id=data.validated_data.get("category_id"),
        )
        if task is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ReviewTaskOutput(review_sel.review_task_get(task_id=task.pk)).data)


class ReviewDecide(JsonAPIView):
    """Approve, correct, skip or escalate a task you hold, at the version you saw."""

    permission_classes = [has_perm(Perm.REVIEW)]

    @extend_schema(
        operation_id="review_tasks_decide",
        tags=["review"],
        request=DecideInput,
        responses={
            200: DecisionOutcomeOutput,
            404: ApiErrorOutput,
            409: OpenApiResponse(
                ApiErrorOutput, description="Claim lost, stale version, or already recorded"
            ),
            **_ERRORS,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        data = DecideInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        if not ReviewTask.objects.filter(pk=pk).exists():
            raise Http404("No such review task.")
        v = data.validated_data
        try:
            outcome = review_decisions.review_decide(
                auditor=request.user,
                task_id=pk,
                version=v["version"],
                action=v["action"],
                category_id=v.get("category_id"),
                brand_name=v["brand"],
                cause=v["cause"],
                comment=v["comment"],
            )
        except review_svc.ReviewError as exc:
            return _review_error(exc)
        task = review_sel.review_task_get(task_id=outcome.task.pk)
        return Response(
            {"decision": DecisionOutput(outcome.decision).data, "task": ReviewTaskOutput(task).data}
        )


class ReviewUndo(JsonAPIView):
    """Undo your most recent decision (within the undo window); its task is yours again."""

    permission_classes = [has_perm(Perm.REVIEW)]

    @extend_schema(
        operation_id="review_undo_last",
        tags=["review"],
        request=None,
        responses={200: DecisionOutcomeOutput, 409: ApiErrorOutput, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        try:
            outcome = review_decisions.review_undo_last(auditor=request.user)
        except review_svc.ReviewError as exc:
            return _review_error(exc)
        task = review_sel.review_task_get(task_id=outcome.task.pk)
        return Response(
            {"decision": DecisionOutput(outcome.decision).data, "task": ReviewTaskOutput(task).data}
        )
