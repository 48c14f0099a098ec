"""Knowledge API: brands, categories, relations (brand sells category; attribute rules), publish, versions.

Reading needs Perm.VIEW_KNOWLEDGE (auditors, ops, admins); every write needs Perm.EDIT_KNOWLEDGE
(ops, admins). Writes go through `knowledge.services` exactly as the editor's do: each is logged
with its reason and stays pending until a publish. An update names the version it started from;
a stale one is a 409 that says who changed the row meanwhile.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as drf
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from fusionreview.apicommon import (
    PAGE_PARAMETERS,
    ApiErrorOutput,
    ApiPagination,
    JsonAPIView,
    PageQuery,
    api_error,
    api_invalid,
    paged,
    perms_by_method,
)
from fusionreview.roles import Perm
from knowledge import selectors, services
from knowledge.api import serializers as s
from knowledge.models import Brand, Category, CategoryAttribute, KnowledgeVersion
from knowledge.services import KnowledgeError, StaleEdit


def _knowledge_error(exc: KnowledgeError) -> Response:
    if isinstance(exc, StaleEdit):
        return api_error(str(exc), code="stale", http_status=status.HTTP_409_CONFLICT)
    return api_error(str(exc), code="refused", http_status=status.HTTP_409_CONFLICT)


def _paged(request: Request, page: selectors.Page, results: list[dict[str, Any]]) -> Response:
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


def _paged_schema(item: Any, name: str) -> Any:
    return inline_serializer(
        name=name,
        fields={
            "count": drf.IntegerField(),
            "next": drf.URLField(allow_null=True),
            "previous": drf.URLField(allow_null=True),
            "results": item(many=True),
        },
    )


def _get_or_404(model: type, pk: int, what: str) -> Any:
    obj = model.objects.filter(pk=pk).first()
    if obj is None:
        raise Http404(f"No such {what}.")
    return obj


def _categories_or_error(ids: list[int]) -> tuple[list[Category], Response | None]:
    found = {c.pk: c for c in Category.objects.filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        return [], api_error(
            f"No category with id {', '.join(map(str, missing))}.",
            code="unknown_reference",
            field="category_ids",
            http_status=status.HTTP_409_CONFLICT,
        )
    return [found[i] for i in ids], None


# 400: the request's shape is wrong (the message names the field). 409: a well-formed request the
# graph refuses now (a rule of the editor, a stale version, an id that refers to nothing).
_WRITE_ERRORS = {
    400: OpenApiResponse(ApiErrorOutput, description="Malformed input; nothing changed"),
    403: OpenApiResponse(ApiErrorOutput, description="Needs the edit-knowledge permission"),
    409: OpenApiResponse(
        ApiErrorOutput,
        description="Refused: a rule of the graph, a stale version or an unknown id; nothing changed",
    ),
}


# ---- brands -------------------------------------------------------------------------------------


class BrandCollection(JsonAPIView):
    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_brands_list",
        tags=["knowledge"],
        parameters=[s.BrandSearchQuery],
        responses={200: _paged_schema(s.BrandOutput, "PaginatedBrandList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        query = s.BrandSearchQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        v = query.validated_data
        page = selectors.brand_page(query=v["q"], number=v.get("page", 1), size=v.get("page_size", 50))
        results = [
            {
                "id": row.id,
                "name": row.name,
                "is_active": row.is_active,
                "version": row.version,
                "aliases": row.aliases,
                "categories": [{"id": cid, "path": path} for cid, path in row.full_categories],
            }
            for row in page.rows
        ]
        return _paged(request, page, results)

    @extend_schema(
        operation_id="knowledge_brands_create",
        tags=["knowledge"],
        request=s.BrandCreateInput,
        responses={201: s.BrandOutput, **_WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = s.BrandCreateInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        v = data.validated_data
        categories, error = _categories_or_error(v["category_ids"])
        if error:
            return error
        try:
            brand = services.brand_create(
                actor=request.user,
                name=v["name"],
                description=v["description"],
                aliases=v["aliases"],
                categories=categories,
                reason=v["reason"],
            )
        except KnowledgeError as exc:
            return _knowledge_error(exc)
        return Response(selectors.brand_as_dict(brand=brand), status=status.HTTP_201_CREATED)


class BrandItem(JsonAPIView):
    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_brands_retrieve",
        tags=["knowledge"],
        responses={200: s.BrandOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(selectors.brand_as_dict(brand=_get_or_404(Brand, pk, "brand")))

    @extend_schema(
        operation_id="knowledge_brands_update",
        tags=["knowledge"],
        request=s.BrandUpdateInput,
        responses={
            200: s.BrandOutput,
            404: ApiErrorOutput,
            409: OpenApiResponse(ApiErrorOutput, description="Stale version"),
            **_WRITE_ERRORS,
        },
    )
    def patch(self, request: Request, pk: int) -> Response:
        brand = _get_or_404(Brand, pk, "brand")
        data = s.BrandUpdateInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        v = data.validated_data
        try:
            brand = services.brand_update(
                actor=request.user,
                brand=brand,
                expected_version=v["version"],
                name=v.get("name", brand.name),
                description=v.get("description", brand.description),
                aliases=v.get("aliases"),
                reason=v["reason"],
            )
        except KnowledgeError as exc:
            return _knowledge_error(exc)
        brand.refresh_from_db()
        return Response(selectors.brand_as_dict(brand=brand))


# ---- categories ---------------------------------------------------------------------------------


class CategoryCollection(JsonAPIView):
    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_categories_list",
        tags=["knowledge"],
        parameters=[s.CategorySearchQuery],
        responses={200: _paged_schema(s.CategoryOutput, "PaginatedCategoryList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        query = s.CategorySearchQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        v = query.validated_data
        page = selectors.category_page(query=v["q"], number=v.get("page", 1), size=v.get("page_size", 50))
        results = selectors.categories_as_dicts(ids=[cat.pk for cat, _label in page.rows])
        return _paged(request, page, results)

    @extend_schema(
        operation_id="knowledge_categories_create",
        tags=["knowledge"],
        request=s.CategoryCreateInput,
        responses={201: s.CategoryOutput, **_WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = s.CategoryCreateInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        v = data.validated_data
        parent = None
        if v["parent_id"] is not None:
            parent = Category.objects.filter(pk=v["parent_id"]).first()
            if parent is None:
                return api_error(
                    f"No category with id {v['parent_id']}.",
                    code="unknown_reference",
                    field="parent_id",
                    http_status=status.HTTP_409_CONFLICT,
                )
        try:
            category = services.category_create(
                actor=request.user,
                name=v["name"],
                parent=parent,
                description=v["description"],
                aliases=v["aliases"],
                reason=v["reason"],
            )
        except KnowledgeError as exc:
            return _knowledge_error(exc)
        return Response(selectors.categories_as_dicts(ids=[category.pk])[0], status=status.HTTP_201_CREATED)


class CategoryItem(JsonAPIView):
    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_categories_retrieve",
        tags=["knowledge"],
        responses={200: s.CategoryOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, pk: int) -> Response:
        category = _get_or_404(Category, pk, "category")
        return Response(selectors.categories_as_dicts(ids=[category.pk])[0])

    @extend_schema(
        operation_id="knowledge_categories_update",
        tags=["knowledge"],
        request=s.CategoryUpdateInput,
        responses={
            200: s.CategoryOutput,
            404: ApiErrorOutput,
            409: OpenApiResponse(ApiErrorOutput, description="Stale version"),
            **_WRITE_ERRORS,
        },
        description="Rename, describe, set aliases and/or move (parent_id) in one call, at `version`.",
    )
    def patch(self, request: Request, pk: int) -> Response:
        category = _get_or_404(Category, pk, "category")
        data = s.CategoryUpdateInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        v = data.validated_data
        moving = "parent_id" in v and v["parent_id"] != category.parent_id
        new_parent = None
        if moving and v["parent_id"] is not None:
            new_parent = Category.objects.filter(pk=v["parent_id"]).first()
            if new_parent is None:
                return api_error(
                    f"No category with id {v['parent_id']}.",
                    code="unknown_reference",
                    field="parent_id",
                    http_status=status.HTTP_409_CONFLICT,
                )
        editing = any(key in v for key in ("name", "description", "aliases"))
        try:
            # Both steps in one transaction: a refused move leaves the rename unsaved too.
            with transaction.atomic():
                version = v["version"]
                if editing:
                    category = services.category_update(
                        actor=request.user,
                        category=category,
                        expected_version=version,
                        name=v.get("name", category.name),
                        description=v.get("description", category.description),
                        aliases=v.get("aliases"),
                        reason=v["reason"],
                    )
                    category.refresh_from_db()
                    version = category.version
                if moving:
                    category = services.category_move(
                        actor=request.user,
                        category=category,
                        new_parent=new_parent,
                        expected_version=version,
                        reason=v["reason"],
                    )
        except KnowledgeError as exc:
            return _knowledge_error(exc)
        return Response(selectors.categories_as_dicts(ids=[category.pk])[0])


# ---- relations ----------------------------------------------------------------------------------


def _relation_dict(rel: Any, labels: dict[int, str]) -> dict[str, Any]:
    return {
        "brand_id": rel.brand_id,
        "brand": rel.brand.name,
        "category_id": rel.category_id,
        "category": labels.get(rel.category_id, "?"),
        "support": getattr(rel, "support", 0),
        "source": getattr(rel, "source", ""),
    }


class RelationCollection(JsonAPIView):
    """Brand sells category (any level of the tree): list, add."""

    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_relations_list",
        tags=["knowledge"],
        parameters=[s.RelationQuery],
        responses={200: paged(s.RelationOutput, "PaginatedRelationList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        query = s.RelationQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        qs = selectors.relation_list(
            brand_id=query.validated_data.get("brand_id"), category_id=query.validated_data.get("category_id")
        )
        paginator = ApiPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        labels = selectors.category_path_labels()
        return paginator.get_paginated_response([_relation_dict(rel, labels) for rel in page])

    @extend_schema(
        operation_id="knowledge_relations_create",
        tags=["knowledge"],
        request=s.RelationInput,
        responses={
            201: OpenApiResponse(s.RelationOutput, description="Added (pending until published)"),
            200: OpenApiResponse(s.RelationOutput, description="Already recorded; nothing changed"),
            **_WRITE_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        data = s.RelationInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        v = data.validated_data
        brand = Brand.objects.filter(pk=v["brand_id"]).first()
        category = Category.objects.filter(pk=v["category_id"]).first()
        if brand is None or category is None:
            field = "brand_id" if brand is None else "category_id"
            return api_error(
                f"No {field[:-3]} with id {v[field]}.", code="unknown_reference", field=field, http_status=409
            )
        try:
            added = services.brand_category_add(
                actor=request.user, brand=brand, category=category, reason=v["reason"]
            )
        except KnowledgeError as exc:
            return _knowledge_error(exc)
        rel = selectors.relation_list(brand_id=brand.pk, category_id=category.pk).first()
        body = _relation_dict(rel, selectors.category_path_labels())
        return Response(body, status=status.HTTP_201_CREATED if added else status.HTTP_200_OK)


class RelationItem(JsonAPIView):
    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_relations_delete",
        tags=["knowledge"],
        parameters=[OpenApiParameter("reason", str, description="Why (goes into the change log)")],
        responses={
            204: OpenApiResponse(description="Removed (pending until published)"),
            404: ApiErrorOutput,
        },
    )
    def delete(self, request: Request, brand_id: int, category_id: int) -> Response:
        rel = selectors.relation_list(brand_id=brand_id, category_id=category_id).first()
        if rel is None:
            raise Http404("The brand is not recorded as selling that category.")
        services.brand_category_remove(
            actor=request.user,
            brand=rel.brand,
            category=Category.objects.get(pk=category_id),
            reason=request.query_params.get("reason", "")[:1000],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---- publish and versions -----------------------------------------------------------------------


class Publish(JsonAPIView):
    """Publish the pending edits as a new knowledge version; workers use it from their next batch."""

    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_publish",
        tags=["knowledge"],
        request=s.PublishInput,
        responses={201: s.KnowledgeVersionOutput, **_WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = s.PublishInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        try:
            version = services.knowledge_publish(actor=request.user, reason=data.validated_data["reason"])
        except KnowledgeError as exc:
            return _knowledge_error(exc)
        response = Response(s.KnowledgeVersionOutput(version).data, status=status.HTTP_201_CREATED)
        response["Location"] = reverse("api-knowledge-version", args=[version.number])
        return response


class VersionCollection(JsonAPIView):
    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_versions_list",
        tags=["knowledge"],
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


class VersionItem(JsonAPIView):
    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_versions_retrieve",
        tags=["knowledge"],
        parameters=[
            OpenApiParameter("against", int, description="Compare with this version (default: previous)")
        ],
        responses={200: s.KnowledgeVersionDetailOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, number: int) -> Response:
        against_raw = request.query_params.get("against", "")
        against = int(against_raw) if against_raw.isdigit() else None
        comparison = selectors.knowledge_version_compare(number=number, against=against, limit=0)
        if comparison is None or (against is not None and comparison.base is None):
            raise Http404(f"No knowledge v{against if comparison else number}.")

        def counts(section: selectors.DiffSection) -> dict[str, int]:
            return {"added": section.n_added, "removed": section.n_removed, "changed": section.n_changed}

        d = comparison.diff
        diff = {
            "against": comparison.base.number if comparison.base else None,
            "brands": counts(d.brands),
            "categories": counts(d.categories),
            "rules": counts(d.rules),
            "noise_terms": counts(d.noise_terms),
        }
        return Response(s.KnowledgeVersionDetailOutput(comparison.version, context={"diff": diff}).data)


# ---- attribute rules (category requires / excludes / allows values) -----------------------------


def _rule_dict(attr: CategoryAttribute, labels: dict[int, str]) -> dict[str, Any]:
    return {
        "id": attr.pk,
        "category_id": attr.category_id,
        "category": labels.get(attr.category_id, "?"),
        "name": attr.name,
        "allowed_values": list(attr.allowed_values or []),
        "rule": "required" if attr.required else "excluded" if attr.excluded else "allowed",
    }


class RuleCollection(JsonAPIView):
    """Attribute rules of categories: list; add or replace one (by category and name)."""

    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_rules_list",
        tags=["knowledge"],
        parameters=[s.RuleQuery],
        responses={200: paged(s.RuleOutput, "PaginatedRuleList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        query = s.RuleQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        qs = selectors.attribute_rule_list(category_id=query.validated_data.get("category_id"))
        paginator = ApiPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        labels = selectors.category_path_labels()
        return paginator.get_paginated_response([_rule_dict(a, labels) for a in page])

    @extend_schema(
        operation_id="knowledge_rules_set",
        tags=["knowledge"],
        request=s.RuleInput,
        responses={
            201: OpenApiResponse(s.RuleOutput, description="Added (pending until published)"),
            200: OpenApiResponse(s.RuleOutput, description="The category's rule of that name, replaced"),
            **_WRITE_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        data = s.RuleInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        v = data.validated_data
        category = Category.objects.filter(pk=v["category_id"]).first()
        if category is None:
            return api_error(
                f"No category with id {v['category_id']}.",
                code="unknown_reference",
                field="category_id",
                http_status=status.HTTP_409_CONFLICT,
            )
        existed = CategoryAttribute.objects.filter(category=category, name__iexact=v["name"].strip()).exists()
        try:
            attr = services.attribute_set(
                actor=request.user,
                category=category,
                name=v["name"],
                allowed_values=v["allowed_values"],
                required=v["rule"] == "required",
                excluded=v["rule"] == "excluded",
                reason=v["reason"],
            )
        except KnowledgeError as exc:
            return _knowledge_error(exc)
        body = _rule_dict(attr, selectors.category_path_labels())
        return Response(body, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)


class RuleItem(JsonAPIView):
    def get_permissions(self) -> list:
        return perms_by_method(self, read=Perm.VIEW_KNOWLEDGE, write=Perm.EDIT_KNOWLEDGE)

    @extend_schema(
        operation_id="knowledge_rules_update",
        tags=["knowledge"],
        request=s.RuleUpdateInput,
        responses={200: s.RuleOutput, 404: ApiErrorOutput, **_WRITE_ERRORS},
    )
    def patch(self, request: Request, pk: int) -> Response:
        attr = _get_or_404(CategoryAttribute, pk, "attribute rule")
        data = s.RuleUpdateInput(data=request.data)
        if not data.is_valid():
            return api_invalid(data.errors)
        v = data.validated_data
        current = "required" if attr.required else "excluded" if attr.excluded else "allowed"
        rule = v.get("rule", current)
        try:
            attr = services.attribute_set(
                actor=request.user,
                category=attr.category,
                name=attr.name,
                allowed_values=v.get("allowed_values", attr.allowed_values or []),
                required=rule == "required",
                excluded=rule == "excluded",
                reason=v["reason"],
            )
        except KnowledgeError as exc:
            return _knowledge_error(exc)
        return Response(_rule_dict(attr, selectors.category_path_labels()))

    @extend_schema(
        operation_id="knowledge_rules_delete",
        tags=["knowledge"],
        parameters=[OpenApiParameter("reason", str, description="Why (goes into the change log)")],
        responses={
            204: OpenApiResponse(description="Removed (pending until published)"),
            404: ApiErrorOutput,
        },
    )
    def delete(self, request: Request, pk: int) -> Response:
        attr = _get_or_404(CategoryAttribute, pk, "attribute rule")
        services.attribute_delete(
            actor=request.user, attribute=attr, reason=request.query_params.get("reason", "")[:1000]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
