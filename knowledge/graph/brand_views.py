"""The brand pages (HTMX): the paged list, a brand's page and its edits (name, aliases, the
categories it sells, merge). Reading needs Perm.VIEW_KNOWLEDGE; every write Perm.EDIT_KNOWLEDGE."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from knowledge import forms
from knowledge.changelog import KnowledgeError, change_last_for
from knowledge.graph import brands as services
from knowledge.graph.lists import brand_page
from knowledge.graph.nodes import BRANDS
from knowledge.graph.pages import NodePages
from knowledge.graph.rules import aliases_parse
from knowledge.graph.selectors import brand_by_name, brand_detail
from knowledge.models import Brand, Category
from knowledge.web import CleanedData, Context, common, editor, form_error, page_number, viewer

BRANDS_PER_PAGE = 50


@viewer
@require_GET
def brand_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    ctx = {
        "query": query,
        "page": brand_page(query=query, number=page_number(request), size=BRANDS_PER_PAGE),
        **common(request),
    }
    if request.htmx and request.htmx.target == "brand-results":
        return render(request, "knowledge/partials/brand_results.html", ctx)
    ctx["create_form"] = forms.BrandCreateForm() if ctx["can_edit"] else None
    return render(request, "knowledge/brand_list.html", ctx)


@editor
@require_POST
def brand_create(request: HttpRequest) -> HttpResponse:
    form = forms.BrandCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error(form))
        return redirect("knowledge-brands")
    data = form.cleaned_data
    categories = list(Category.objects.filter(pk=data["category"])) if data["category"] else []
    try:
        brand = services.brand_create(
            actor=request.user,
            name=data["name"],
            aliases=aliases_parse(data["aliases"]),
            categories=categories,
            reason=data["reason"],
        )
    except KnowledgeError as exc:
        messages.error(request, str(exc))
        return redirect("knowledge-brands")
    messages.success(request, f"Added brand {brand.name} (pending until published).")
    return redirect("knowledge-brand", pk=brand.pk)


def _brand_ctx(request: HttpRequest, brand: Brand, extra: Context) -> Context:
    brand.refresh_from_db()
    detail = brand_detail(brand=brand)
    return {
        "brand": brand,
        "categories": detail.categories,
        "aliases": detail.aliases,
        "recent_listings": detail.recent_listings,
        "listing_count": detail.listing_count,
        "edit_form": forms.BrandEditForm.for_node(brand, detail.aliases),
        "category_form": forms.BrandCategoryForm(),
        "merge_form": forms.BrandMergeForm(),
        "last_change": change_last_for(object_type="brand", object_id=brand.pk),
        **common(request),
        **extra,
    }


PAGES: NodePages[Brand] = NodePages(
    kind=BRANDS,
    template="knowledge/partials/brand_panel.html",
    context=_brand_ctx,
    url=lambda brand: reverse("knowledge-brand", args=[brand.pk]),
    label=lambda brand: brand.name,
    edit_form=forms.BrandEditForm,
)


@viewer
@require_GET
def brand_detail_page(request: HttpRequest, pk: int) -> HttpResponse:
    brand = get_object_or_404(Brand, pk=pk)
    return render(request, "knowledge/brand_detail.html", _brand_ctx(request, brand, {}))


@editor
@require_POST
def brand_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return PAGES.rename(request, pk)


@editor
@require_POST
def brand_categories(request: HttpRequest, pk: int) -> HttpResponse:
    def apply(data: CleanedData) -> tuple[Brand, str]:
        category = get_object_or_404(Category, pk=data["category"])
        added = services.brand_category_add(
            actor=request.user, brand=brand, category=category, reason=data["reason"]
        )
        return brand, f"{brand.name} sells {category.path_label}." if added else "Already recorded."

    brand = get_object_or_404(Brand, pk=pk)
    remove = request.POST.get("remove")
    if remove:
        category = get_object_or_404(Category, pk=int(remove) if remove.isdigit() else 0)
        services.brand_category_remove(actor=request.user, brand=brand, category=category)
        return PAGES.answer(request, brand, notice=f"{brand.name} no longer sells {category.path_label}.")
    return PAGES.edit(request, brand, forms.BrandCategoryForm, apply)


@editor
@require_POST
def brand_merge(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(Brand, pk=pk)
    form = forms.BrandMergeForm(request.POST)
    if not form.is_valid():
        return PAGES.answer(request, source, error=form_error(form))
    target = brand_by_name(form.cleaned_data["target"])
    if target is None:
        return PAGES.answer(request, source, error=f"No brand called {form.cleaned_data['target']!r}.")
    name = source.name
    try:
        target = services.brand_merge(
            actor=request.user, source=source, target=target, reason=form.cleaned_data["reason"]
        )
    except KnowledgeError as exc:
        return PAGES.answer(request, source, error=str(exc))
    messages.success(request, f"Merged {name} into {target.name}; {name!r} is now an alias.")
    url = reverse("knowledge-brand", args=[target.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
