"""Django admin for the knowledge graph: read-only.

Every edit goes through the editor (the `knowledge.graph` services): optimistic versions, the change log, the
entity-cache publish that running workers pick up. An admin form writing rows directly would skip all
three, so the admin only lets staff look (search, filter, follow links).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from knowledge.models import (
    Brand,
    BrandAlias,
    BrandCategory,
    Category,
    CategoryAlias,
    CategoryAttribute,
    ChangeLog,
    KnowledgeVersion,
    NoiseTerm,
    RerouteJob,
    Suggestion,
)

admin.site.site_header = "FusionReview administration"
admin.site.site_title = "FusionReview admin"
admin.site.index_title = "Data (read-only: edits go through the product's pages and services)"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists, search and detail views; no add, change or delete (those go through services)."""

    show_full_result_count = False  # no COUNT(*) over millions of rows on every list page
    list_per_page = 50

    def _staff_admin(self, request: HttpRequest) -> bool:
        # Staff with the admin role may look at every row (read-only), without per-model grants.
        from fusionreview.roles import Perm

        user = request.user
        return bool(user.is_active and user.is_staff and user.has_perm(Perm.MANAGE_MODELS))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff_admin(request) or super().has_view_permission(request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._staff_admin(request) or super().has_module_permission(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Every shown field is read-only (non-editable ones such as created_at included).
        return self.fields or super().get_readonly_fields(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CategoryAliasInline(ReadOnlyInline):
    model = CategoryAlias


class CategoryAttributeInline(ReadOnlyInline):
    model = CategoryAttribute


@admin.register(Category)
class CategoryAdmin(ReadOnlyAdmin):
    list_display = ("name", "parent", "is_active", "version", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("name", "aliases__alias")
    list_select_related = ("parent",)
    inlines = [CategoryAliasInline, CategoryAttributeInline]


class BrandAliasInline(ReadOnlyInline):
    model = BrandAlias


class BrandCategoryInline(ReadOnlyInline):
    model = BrandCategory


@admin.register(Brand)
class BrandAdmin(ReadOnlyAdmin):
    list_display = ("name", "is_active", "version", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("name", "aliases__alias")
    inlines = [BrandAliasInline, BrandCategoryInline]


@admin.register(NoiseTerm)
class NoiseTermAdmin(ReadOnlyAdmin):
    list_display = ("term", "weight")
    search_fields = ("term",)


@admin.register(KnowledgeVersion)
class KnowledgeVersionAdmin(ReadOnlyAdmin):
    list_display = ("number", "reason", "created_by", "created_at", "activated_at", "checksum")
    search_fields = ("reason",)
    exclude = ("snapshot", "row_ids")  # megabytes of JSON: the version page shows them readably


@admin.register(ChangeLog)
class ChangeLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "actor",
        "action",
        "object_type",
        "object_label",
        "status",
        "knowledge_version",
    )
    list_filter = ("action", "object_type", "status")
    search_fields = ("object_label", "reason", "object_id")
    list_select_related = ("actor", "knowledge_version")
    date_hierarchy = "created_at"


@admin.register(Suggestion)
class SuggestionAdmin(ReadOnlyAdmin):
    list_display = ("kind", "brand", "category", "alias", "evidence_count", "status", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("alias", "key")
    list_select_related = ("brand", "category")


@admin.register(RerouteJob)
class RerouteJobAdmin(ReadOnlyAdmin):
    list_display = ("knowledge_version", "status", "total", "checked", "still_conflicting", "created_at")
    list_filter = ("status",)
    exclude = ("planned_task_ids", "resolved_task_ids")
