"""Knowledge API of the graph: brands, categories, relations (brand sells category), attribute rules.

Writes go through the graph services exactly as the editor's do: each is logged with its reason
and stays pending until a publish. An update names the version it started from; a stale one is a
409 that says who changed the row meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers as drf
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from fusionreview.apicommon import ApiErrorOutput, ApiPagination, api_invalid, paged
from knowledge.api import serializers as s
from knowledge.api.common import (
    WRITE_ERRORS,
    Data,
    KnowledgeAPIView,
    added_or_existing,
    api_write,
    get_or_404,
    paged_response,
    paged_schema,
    schema,
    unknown_reference,
)
from knowledge.graph import brands, categories, nodes
from knowledge.graph.lists import (
    attribute_rule_list,
    brand_as_dict,
    brand_page,
    categories_as_dicts,
    category_page,
    relation_list,
)
from knowledge.graph.selectors import category_path_labels
from knowledge.models import Brand, BrandCategory, Category, CategoryAttribute

_STALE = {409: OpenApiResponse(ApiErrorOutput, description="Stale version")}
_REASON = OpenApiParameter("reason", str, description="Why (goes into the change log)")
_REMOVED = {204: OpenApiResponse(description="Removed (pending until published)"), 404: ApiErrorOutput}


def _categories_or_error(ids: Sequence[int]) -> tuple[list[Category], Response | None]:
    found = {c.pk: c for c in Category.objects.filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        return [], unknown_reference("category", ", ".join(map(str, missing)), "category_ids")
    return [found[i] for i in ids], None


def _category_or_error(pk: int | None, field: str) -> tuple[Category | None, Response | None]:
    """The category `pk` names (None for None), or the 409 answer that it names nothing."""
    if pk is None:
        return None, None
    category = Category.objects.filter(pk=pk).first()
    return category, (unknown_reference("category", pk, field) if category is None else None)


def _api_list(
    request: Request,
    view: KnowledgeAPIView,
    query: type[drf.Serializer],
    rows: Callable[[Data], QuerySet[BrandCategory] | QuerySet[CategoryAttribute]],
    as_dict: Callable[[Model, dict[int, str]], dict[str, object]],
) -> Response:
    """A paged list: the query checked, one page of `rows`, each row with the categories' paths."""
    params = query(data=request.query_params)
    if not params.is_valid():
        return api_invalid(params.errors)
    paginator = ApiPagination()
    page = paginator.paginate_queryset(rows(params.validated_data), request, view=view)
    labels = category_path_labels()
    return paginator.get_paginated_response([as_dict(row, labels) for row in page or []])


# ---- brands -------------------------------------------------------------------------------------


class BrandCollection(KnowledgeAPIView):
    @schema(
        "knowledge_brands_list",
        parameters=[s.BrandSearchQuery],
        responses={200: paged_schema(s.BrandOutput, "PaginatedBrandList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        query = s.BrandSearchQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        v = query.validated_data
        page = brand_page(query=v["q"], number=v.get("page", 1), size=v.get("page_size", 50))
        results: list[dict[str, object]] = [
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
        return paged_response(request, page, results)

    @schema(
        "knowledge_brands_create",
        request=s.BrandCreateInput,
        responses={201: s.BrandOutput, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        def apply(v: Data) -> Response:
            found, error = _categories_or_error(v["category_ids"])
            if error:
                return error
            brand = brands.brand_create(
                actor=request.user,
                name=v["name"],
                description=v["description"],
                aliases=v["aliases"],
                categories=found,
                reason=v["reason"],
            )
            return Response(brand_as_dict(brand=brand), status=status.HTTP_201_CREATED)

        return api_write(request.data, s.BrandCreateInput, apply)


class BrandItem(KnowledgeAPIView):
    @schema(
        "knowledge_brands_retrieve",
        responses={200: s.BrandOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(brand_as_dict(brand=get_or_404(Brand, pk, "brand")))

    @schema(
        "knowledge_brands_update",
        request=s.BrandUpdateInput,
        responses={200: s.BrandOutput, 404: ApiErrorOutput, **_STALE, **WRITE_ERRORS},
    )
    def patch(self, request: Request, pk: int) -> Response:
        def apply(v: Data) -> Response:
            updated = nodes.node_update(
                nodes.BRANDS,
                actor=request.user,
                node=brand,
                expected_version=v["version"],
                name=v.get("name", brand.name),
                description=v.get("description", brand.description),
                aliases=v.get("aliases"),
                reason=v["reason"],
            )
            updated.refresh_from_db()
            return Response(brand_as_dict(brand=updated))

        brand = get_or_404(Brand, pk, "brand")
        return api_write(request.data, s.BrandUpdateInput, apply)


# ---- categories ---------------------------------------------------------------------------------


class CategoryCollection(KnowledgeAPIView):
    @schema(
        "knowledge_categories_list",
        parameters=[s.CategorySearchQuery],
        responses={200: paged_schema(s.CategoryOutput, "PaginatedCategoryList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        query = s.CategorySearchQuery(data=request.query_params)
        if not query.is_valid():
            return api_invalid(query.errors)
        v = query.validated_data
        page = category_page(query=v["q"], number=v.get("page", 1), size=v.get("page_size", 50))
        return paged_response(request, page, categories_as_dicts(ids=[cat.pk for cat, _label in page.rows]))

    @schema(
        "knowledge_categories_create",
        request=s.CategoryCreateInput,
        responses={201: s.CategoryOutput, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        def apply(v: Data) -> Response:
            parent, error = _category_or_error(v["parent_id"], "parent_id")
            if error:
                return error
            category = categories.category_create(
                actor=request.user,
                name=v["name"],
                parent=parent,
                description=v["description"],
                aliases=v["aliases"],
                reason=v["reason"],
            )
            return Response(categories_as_dicts(ids=[category.pk])[0], status=status.HTTP_201_CREATED)

        return api_write(request.data, s.CategoryCreateInput, apply)


class CategoryItem(KnowledgeAPIView):
    @schema(
        "knowledge_categories_retrieve",
        responses={200: s.CategoryOutput, 404: ApiErrorOutput},
    )
    def get(self, request: Request, pk: int) -> Response:
        category = get_or_404(Category, pk, "category")
        return Response(categories_as_dicts(ids=[category.pk])[0])

    @schema(
        "knowledge_categories_update",
        request=s.CategoryUpdateInput,
        responses={200: s.CategoryOutput, 404: ApiErrorOutput, **_STALE, **WRITE_ERRORS},
        description="Rename, describe, set aliases and/or move (parent_id) in one call, at `version`.",
    )
    def patch(self, request: Request, pk: int) -> Response:
        def apply(v: Data) -> Response:
            moving = "parent_id" in v and v["parent_id"] != category.parent_id
            new_parent, error = _category_or_error(v["parent_id"] if moving else None, "parent_id")
            if error:
                return error
            node = category
            # Both steps in one transaction: a refused move leaves the rename unsaved too.
            with transaction.atomic():
                version = v["version"]
                if any(key in v for key in ("name", "description", "aliases")):
                    node = nodes.node_update(
                        nodes.CATEGORIES,
                        actor=request.user,
                        node=node,
                        expected_version=version,
                        name=v.get("name", node.name),
                        description=v.get("description", node.description),
                        aliases=v.get("aliases"),
                        reason=v["reason"],
                    )
                    node.refresh_from_db()
                    version = node.version
                if moving:
                    node = categories.category_move(
                        actor=request.user,
                        category=node,
                        new_parent=new_parent,
                        expected_version=version,
                        reason=v["reason"],
                    )
            return Response(categories_as_dicts(ids=[node.pk])[0])

        category = get_or_404(Category, pk, "category")
        return api_write(request.data, s.CategoryUpdateInput, apply)


# ---- relations ----------------------------------------------------------------------------------


def _relation_dict(rel: Model, labels: dict[int, str]) -> dict[str, object]:
    assert isinstance(rel, BrandCategory)
    return {
        "brand_id": rel.brand_id,
        "brand": rel.brand.name,
        "category_id": rel.category_id,
        "category": labels.get(rel.category_id, "?"),
        "support": rel.support,
        "source": rel.source,
    }


class RelationCollection(KnowledgeAPIView):
    """Brand sells category (any level of the tree): list, add."""

    @schema(
        "knowledge_relations_list",
        parameters=[s.RelationQuery],
        responses={200: paged(s.RelationOutput, "PaginatedRelationList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        def rows(v: Data) -> QuerySet[BrandCategory]:
            return relation_list(brand_id=v.get("brand_id"), category_id=v.get("category_id"))

        return _api_list(request, self, s.RelationQuery, rows, _relation_dict)

    @schema(
        "knowledge_relations_create",
        request=s.RelationInput,
        responses=added_or_existing(s.RelationOutput, "Already recorded; nothing changed"),
    )
    def post(self, request: Request) -> Response:
        def apply(v: Data) -> Response:
            brand = Brand.objects.filter(pk=v["brand_id"]).first()
            category = Category.objects.filter(pk=v["category_id"]).first()
            if brand is None or category is None:
                field = "brand_id" if brand is None else "category_id"
                return unknown_reference(field[:-3], v[field], field)
            added = brands.brand_category_add(
                actor=request.user, brand=brand, category=category, reason=v["reason"]
            )
            rel = relation_list(brand_id=brand.pk, category_id=category.pk).get()
            body = _relation_dict(rel, category_path_labels())
            return Response(body, status=status.HTTP_201_CREATED if added else status.HTTP_200_OK)

        return api_write(request.data, s.RelationInput, apply)


class RelationItem(KnowledgeAPIView):
    @schema(
        "knowledge_relations_delete",
        parameters=[_REASON],
        responses=_REMOVED,
    )
    def delete(self, request: Request, brand_id: int, category_id: int) -> Response:
        rel = relation_list(brand_id=brand_id, category_id=category_id).first()
        if rel is None:
            raise Http404("The brand is not recorded as selling that category.")
        brands.brand_category_remove(
            actor=request.user,
            brand=rel.brand,
            category=Category.objects.get(pk=category_id),
            reason=request.query_params.get("reason", "")[:1000],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---- attribute rules (category requires / excludes / allows values) -----------------------------


def _rule_kind(attr: CategoryAttribute) -> str:
    return "required" if attr.required else "excluded" if attr.excluded else "allowed"


def _rule_dict(attr: Model, labels: dict[int, str]) -> dict[str, object]:
    assert isinstance(attr, CategoryAttribute)
    return {
        "id": attr.pk,
        "category_id": attr.category_id,
        "category": labels.get(attr.category_id, "?"),
        "name": attr.name,
        "allowed_values": list(attr.allowed_values or []),
        "rule": _rule_kind(attr),
    }


def _rule_set(
    request: Request, category: Category, name: str, values: Sequence[str], rule: str, reason: str
) -> CategoryAttribute:
    return categories.attribute_set(
        actor=request.user,
        category=category,
        name=name,
        allowed_values=values,
        required=rule == "required",
        excluded=rule == "excluded",
        reason=reason,
    )


class RuleCollection(KnowledgeAPIView):
    """Attribute rules of categories: list; add or replace one (by category and name)."""

    @schema(
        "knowledge_rules_list",
        parameters=[s.RuleQuery],
        responses={200: paged(s.RuleOutput, "PaginatedRuleList"), 400: ApiErrorOutput},
    )
    def get(self, request: Request) -> Response:
        def rows(v: Data) -> QuerySet[CategoryAttribute]:
            return attribute_rule_list(category_id=v.get("category_id"))

        return _api_list(request, self, s.RuleQuery, rows, _rule_dict)

    @schema(
        "knowledge_rules_set",
        request=s.RuleInput,
        responses=added_or_existing(s.RuleOutput, "The category's rule of that name, replaced"),
    )
    def post(self, request: Request) -> Response:
        def apply(v: Data) -> Response:
            category, error = _category_or_error(v["category_id"], "category_id")
            if error or category is None:
                return error or unknown_reference("category", v["category_id"], "category_id")
            existed = CategoryAttribute.objects.filter(
                category=category, name__iexact=v["name"].strip()
            ).exists()
            attr = _rule_set(request, category, v["name"], v["allowed_values"], v["rule"], v["reason"])
            body = _rule_dict(attr, category_path_labels())
            return Response(body, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)

        return api_write(request.data, s.RuleInput, apply)


class RuleItem(KnowledgeAPIView):
    @schema(
        "knowledge_rules_update",
        request=s.RuleUpdateInput,
        responses={200: s.RuleOutput, 404: ApiErrorOutput, **WRITE_ERRORS},
    )
    def patch(self, request: Request, pk: int) -> Response:
        def apply(v: Data) -> Response:
            values = v.get("allowed_values", attr.allowed_values or [])
            updated = _rule_set(
                request, attr.category, attr.name, values, v.get("rule", _rule_kind(attr)), v["reason"]
            )
            return Response(_rule_dict(updated, category_path_labels()))

        attr = get_or_404(CategoryAttribute, pk, "attribute rule")
        return api_write(request.data, s.RuleUpdateInput, apply)

    @schema("knowledge_rules_delete", parameters=[_REASON], responses=_REMOVED)
    def delete(self, request: Request, pk: int) -> Response:
        attr = get_or_404(CategoryAttribute, pk, "attribute rule")
        categories.attribute_delete(
            actor=request.user, attribute=attr, reason=request.query_params.get("reason", "")[:1000]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
