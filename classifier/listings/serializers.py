"""Explicit input and output shapes of the listings API."""

from __future__ import annotations

import json
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from classifier.listings.models import Listing, Prediction
from classifier.listings.selectors import listing_current_prediction
from classifier.review.models import ReviewTask

# PostgreSQL text cannot hold NUL; the schema says so (a `pattern`) instead of a surprise 400.
NO_NUL = RegexValidator(r"^[^\x00]*$", message="must not contain NUL characters")


class ListingCreateInput(serializers.Serializer):
    """multipart/form-data: the photo, the title and where the listing comes from.

    Only presence and types are checked here; the limits (image size, format, pixels, title
    length) are checked by `listing_ingest`, which names the field and the problem.
    """

    image = serializers.FileField(allow_empty_file=True, help_text="JPEG, PNG or WebP")
    title = serializers.CharField(allow_blank=True, trim_whitespace=False)
    source = serializers.CharField(allow_blank=True, max_length=100)
    external_id = serializers.CharField(allow_blank=True, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    attributes = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text='A JSON object as a string, e.g. {"gender": "Men", "colour": "Blue"}',
    )

    def validate_attributes(self, value: str) -> dict[str, Any]:
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise serializers.ValidationError(f"not valid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise serializers.ValidationError("must be a JSON object")
        return parsed


class ListingListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=Listing.Status.choices, required=False)
    search = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Substring of the title, or an exact external id",
        validators=[NO_NUL],
    )
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # DRF reads `?status=` as "not given"; the schema says it must be one of the statuses.
        blank = [
            name
            for name, field in self.fields.items()
            if self.initial_data.get(name) == "" and not getattr(field, "allow_blank", False)
        ]
        if blank:
            raise serializers.ValidationError({name: ["must not be empty when given"] for name in blank})
        return attrs


class PredictionOutput(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.name")
    category_id = serializers.IntegerField(source="category.id", allow_null=True, default=None)
    brand_id = serializers.IntegerField(source="brand.id", allow_null=True, default=None)
    attention_map_url = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "model_version",
            "category_id",
            "category_label",
            "master_category",
            "sub_category",
            "article_type",
            "master_confidence",
            "sub_confidence",
            "article_confidence",
            "confidence",
            "top_k",
            "brand_id",
            "brand_label",
            "brand_confidence",
            "compute_path",
            "latency_ms",
            "complexity",
            "knowledge_version",
            "knowledge_findings",
            "entities",
            "needs_review",
            "review_reasons",
            "attention_map_url",
            "created_at",
        ]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_attention_map_url(self, obj: Prediction) -> str | None:
        if not obj.attention_map:
            return None
        request = self.context.get("request")
        url = obj.attention_map.url
        return request.build_absolute_uri(url) if request else url


class ReviewStateOutput(serializers.ModelSerializer):
    claimed_by = serializers.CharField(source="claimed_by.username", allow_null=True, default=None)

    class Meta:
        model = ReviewTask
        fields = [
            "id",
            "status",
            "reason",
            "reason_detail",
            "priority",
            "claimed_by",
            "created_at",
            "decided_at",
        ]


class ListingSummaryOutput(serializers.ModelSerializer):
    final_category = serializers.CharField(source="final_category.name", allow_null=True, default=None)
    final_brand = serializers.CharField(source="final_brand.name", allow_null=True, default=None)
    url = serializers.HyperlinkedIdentityField(view_name="api-listing-detail")

    class Meta:
        model = Listing
        fields = [
            "id",
            "url",
            "source",
            "external_id",
            "title",
            "status",
            "final_category",
            "final_brand",
            "created_at",
        ]


class ListingOutput(serializers.ModelSerializer):
    image_url = serializers.SerializerMethodField()
    final_category_id = serializers.IntegerField(source="final_category.id", allow_null=True, default=None)
    final_category = serializers.CharField(source="final_category.path_label", allow_null=True, default=None)
    final_brand = serializers.CharField(source="final_brand.name", allow_null=True, default=None)
    prediction = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()

    class Meta:
        model = Listing
        fields = [
            "id",
            "source",
            "external_id",
            "title",
            "description",
            "attributes",
            "image_url",
            "image_sha256",
            "image_width",
            "image_height",
            "status",
            "failure_reason",
            "final_category_id",
            "final_category",
            "final_brand",
            "prediction",
            "review",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(serializers.URLField())
    def get_image_url(self, obj: Listing) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(obj.image.url) if request else obj.image.url

    @extend_schema_field(PredictionOutput(allow_null=True))
    def get_prediction(self, obj: Listing) -> dict[str, Any] | None:

        prediction = listing_current_prediction(listing=obj)
        return PredictionOutput(prediction, context=self.context).data if prediction else None

    @extend_schema_field(ReviewStateOutput(allow_null=True))
    def get_review(self, obj: Listing) -> dict[str, Any] | None:
        task = obj.review_tasks.select_related("claimed_by").order_by("-created_at").first()
        return ReviewStateOutput(task).data if task else None


class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()


class ListingPageOutput(serializers.Serializer):
    """One page of the listing list (DRF's page-number pagination)."""

    count = serializers.IntegerField(min_value=0)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ListingSummaryOutput(many=True)
