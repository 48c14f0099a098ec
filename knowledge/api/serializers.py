"""Explicit input and output shapes of the knowledge API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from fusionreview.apicommon import PageQuery, StrictCharField, StrictIntegerField
from knowledge.models import BrandCategory, KnowledgeVersion

_ALIASES_HELP = "The complete list of aliases (any script); replaces the current ones"


class CategoryRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    path = serializers.CharField(help_text="Names from the root joined by ' > '")


class BrandOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(required=False)
    is_active = serializers.BooleanField()
    version = serializers.IntegerField(help_text="Send it back with an update: a stale edit is refused")
    aliases = serializers.ListField(child=serializers.CharField())
    categories = CategoryRefOutput(many=True, help_text="Categories the brand sells")


class BrandCreateInput(serializers.Serializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, default="", max_length=5000)
    aliases = serializers.ListField(child=StrictCharField(max_length=200), required=False, default=list)
    category_ids = serializers.ListField(child=StrictIntegerField(), required=False, default=list)
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=1000)


class BrandUpdateInput(serializers.Serializer):
    version = StrictIntegerField(min_value=1)
    name = StrictCharField(required=False, max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=5000)
    aliases = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, help_text=_ALIASES_HELP
    )
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=1000)


class CategoryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    path = serializers.CharField()
    parent_id = serializers.IntegerField(allow_null=True)
    description = serializers.CharField()
    is_active = serializers.BooleanField()
    version = serializers.IntegerField()
    aliases = serializers.ListField(child=serializers.CharField())


class CategoryCreateInput(serializers.Serializer):
    name = StrictCharField(max_length=120)
    parent_id = StrictIntegerField(required=False, allow_null=True, default=None)
    description = StrictCharField(required=False, allow_blank=True, default="", max_length=5000)
    aliases = serializers.ListField(child=StrictCharField(max_length=200), required=False, default=list)
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=1000)


class CategoryUpdateInput(serializers.Serializer):
    version = StrictIntegerField(min_value=1)
    name = StrictCharField(required=False, max_length=120)
    description = StrictCharField(required=False, allow_blank=True, max_length=5000)
    aliases = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, help_text=_ALIASES_HELP
    )
    parent_id = StrictIntegerField(
        required=False, allow_null=True, help_text="Move under this category (null: to the top level)"
    )
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=1000)


class RelationOutput(serializers.Serializer):
    brand_id = serializers.IntegerField()
    brand = serializers.CharField()
    category_id = serializers.IntegerField()
    category = serializers.CharField(help_text="The category's full path")
    support = serializers.IntegerField(help_text="Approved listings behind the relation")
    source = serializers.ChoiceField(choices=BrandCategory.Source.choices)


class RelationInput(serializers.Serializer):
    brand_id = StrictIntegerField()
    category_id = StrictIntegerField()
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=1000)


def _search_field(help_text: str) -> serializers.CharField:
    return serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200, help_text=help_text
    )


class BrandSearchQuery(PageQuery):
    q = _search_field("Name or alias prefix (falls back to a substring when nothing starts with it)")


class CategorySearchQuery(PageQuery):
    q = _search_field("Substring of the name or an alias; empty: every category")


class RelationQuery(PageQuery):
    brand_id = serializers.IntegerField(required=False)
    category_id = serializers.IntegerField(required=False)


class PublishInput(serializers.Serializer):
    reason = StrictCharField(max_length=1000, help_text="Why (shown on the version page)")


class DiffCountsOutput(serializers.Serializer):
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    changed = serializers.IntegerField()


class VersionDiffOutput(serializers.Serializer):
    against = serializers.IntegerField(allow_null=True)
    brands = DiffCountsOutput()
    categories = DiffCountsOutput()
    rules = DiffCountsOutput()
    noise_terms = DiffCountsOutput()


class KnowledgeVersionOutput(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = KnowledgeVersion
        fields = ["number", "reason", "checksum", "created_by", "created_at", "activated_at"]


class KnowledgeVersionDetailOutput(KnowledgeVersionOutput):
    diff = serializers.SerializerMethodField()

    class Meta(KnowledgeVersionOutput.Meta):
        fields = [*KnowledgeVersionOutput.Meta.fields, "diff"]

    @extend_schema_field(VersionDiffOutput)
    def get_diff(self, obj: KnowledgeVersion) -> dict:
        """What changed against the previous version (or `?against=N`), counted per kind."""
        return self.context["diff"]


RULE_KINDS = [("allowed", "Allowed values only"), ("required", "Required"), ("excluded", "Excluded")]


class RuleOutput(serializers.Serializer):
    id = serializers.IntegerField()
    category_id = serializers.IntegerField()
    category = serializers.CharField(help_text="The category's full path")
    name = serializers.CharField()
    allowed_values = serializers.ListField(child=serializers.CharField())
    rule = serializers.ChoiceField(choices=RULE_KINDS)


class RuleInput(serializers.Serializer):
    category_id = StrictIntegerField()
    name = StrictCharField(max_length=100)
    allowed_values = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, default=list
    )
    rule = serializers.ChoiceField(choices=RULE_KINDS, default="allowed")
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=1000)


class RuleUpdateInput(serializers.Serializer):
    allowed_values = serializers.ListField(child=StrictCharField(max_length=200), required=False)
    rule = serializers.ChoiceField(choices=RULE_KINDS, required=False)
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=1000)


class RuleQuery(PageQuery):
    category_id = serializers.IntegerField(required=False)
