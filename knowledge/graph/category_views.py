"""The category tree pages (HTMX): the tree and search, a node's panel and its edits, attribute
rules, noise terms.

Reading needs Perm.VIEW_KNOWLEDGE (auditors, ops, admins); every write needs
Perm.EDIT_KNOWLEDGE (ops, admins). Views translate HTTP to services and selectors: a full
page for a normal request, the partial that changes for an htmx one.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from fusionreview.roles import Perm
from knowledge import forms
from knowledge.changelog import KnowledgeError, change_last_for
from knowledge.graph import categories as services
from knowledge.graph.lists import brand_page, category_page
from knowledge.graph.nodes import CATEGORIES
from knowledge.graph.pages import NodePages
from knowledge.graph.rules import aliases_parse
from knowledge.graph.selectors import category_tree, graph_problems
from knowledge.models import Category, CategoryAttribute, NoiseTerm
from knowledge.web import CleanedData, Context, common, editor, form_error, page_number, viewer


@viewer
@require_GET
def tree(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    ctx: Context = {"query": query, **common(request)}
    if query:
        ctx["category_page"] = category_page(query=query, number=page_number(request), size=50)
        ctx["brand_page"] = brand_page(query=query, number=1, size=20)
    else:
        ctx["roots"] = category_tree()
    if request.htmx and request.htmx.target == "tree":
        return render(request, "knowledge/partials/tree_body.html", ctx)
    ctx["problems"] = graph_problems()
    ctx["create_form"] = forms.CategoryCreateForm() if ctx["can_edit"] else None
    selected = request.GET.get("category")
    if selected and selected.isdigit():
        ctx.update(_category_ctx(request, get_object_or_404(Category, pk=int(selected)), {}))
    return render(request, "knowledge/tree.html", ctx)


@viewer
@require_GET
def pending_badge(request: HttpRequest) -> HttpResponse:
    return render(request, "knowledge/partials/pending_badge.html", common(request))


def _category_ctx(request: HttpRequest, category: Category, extra: Context) -> Context:
    aliases = category.aliases.order_by("alias").values_list("alias", flat=True)
    return {
        "category": category,
        "edit_form": forms.CategoryEditForm.for_node(category, aliases),
        "move_form": forms.CategoryMoveForm(
            initial={"version": category.version, "parent": category.parent_id}
        ),
        "merge_form": forms.CategoryMergeForm(),
        "attribute_form": forms.AttributeForm(),
        "attributes": category.attributes.order_by("name"),
        "usage": services.category_usage(category=category),
        "brands": category.brands.order_by("name")[:50],
        "last_change": change_last_for(object_type="category", object_id=category.pk),
        "can_edit": request.user.has_perm(Perm.EDIT_KNOWLEDGE),
        **extra,
    }


def _panel_ctx(request: HttpRequest, category: Category, extra: Context) -> Context:
    category.refresh_from_db()
    return _category_ctx(request, category, extra)


PAGES: NodePages[Category] = NodePages(
    kind=CATEGORIES,
    template="knowledge/partials/category_panel.html",
    context=_panel_ctx,
    url=lambda category: f"{reverse('knowledge-tree')}?category={category.pk}",
    label=lambda category: category.path_label,
    edit_form=forms.CategoryEditForm,
)


@viewer
@require_GET
def category_detail(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    if request.htmx:
        return render(request, PAGES.template, _panel_ctx(request, category, {}))
    return redirect(f"{reverse('knowledge-tree')}?category={pk}")


@editor
@require_POST
def category_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return PAGES.rename(request, pk)


@editor
@require_POST
def category_move(request: HttpRequest, pk: int) -> HttpResponse:
    def apply(data: CleanedData) -> tuple[Category, str]:
        parent = get_object_or_404(Category, pk=data["parent"]) if data["parent"] else None
        category = services.category_move(
            actor=request.user,
            category=node,
            new_parent=parent,
            expected_version=data["version"],
            reason=data["reason"],
        )
        return category, f"Moved to {category.path_label}."

    node = get_object_or_404(Category, pk=pk)
    return PAGES.edit(request, node, forms.CategoryMoveForm, apply)


@editor
@require_POST
def category_merge(request: HttpRequest, pk: int) -> HttpResponse:
    def apply(data: CleanedData) -> tuple[Category, str]:
        target = get_object_or_404(Category, pk=data["target"])
        label = source.path_label
        target = services.category_merge(
            actor=request.user, source=source, target=target, reason=data["reason"]
        )
        return target, f"Merged {label} into {target.path_label}."

    source = get_object_or_404(Category, pk=pk)
    return PAGES.edit(request, source, forms.CategoryMergeForm, apply)


@editor
@require_POST
def category_delete(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    try:
        version = int(request.POST.get("version", ""))
    except ValueError:
        return PAGES.answer(request, category, error="The form lost its version; reload the page.")
    label = category.path_label
    try:
        services.category_delete(
            actor=request.user,
            category=category,
            expected_version=version,
            reason=request.POST.get("reason", ""),
        )
    except KnowledgeError as exc:
        return PAGES.answer(request, category, error=str(exc), offer_merge=True)
    messages.success(request, f"Deleted {label}.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("knowledge-tree"))
    return redirect("knowledge-tree")


@editor
@require_POST
def category_create(request: HttpRequest) -> HttpResponse:
    form = forms.CategoryCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error(form))
        return redirect("knowledge-tree")
    data = form.cleaned_data
    parent = Category.objects.filter(pk=data["parent"]).first() if data["parent"] else None
    try:
        category = services.category_create(
            actor=request.user,
            name=data["name"],
            parent=parent,
            description=data["description"],
            aliases=aliases_parse(data["aliases"]),
            reason=data["reason"],
        )
    except KnowledgeError as exc:
        messages.error(request, str(exc))
        return redirect("knowledge-tree")
    messages.success(request, f"Added {category.path_label} (pending until published).")
    return redirect(f"{reverse('knowledge-tree')}?category={category.pk}")


@editor
@require_POST
def attribute_save(request: HttpRequest, pk: int) -> HttpResponse:
    def apply(data: CleanedData) -> tuple[Category, str]:
        services.attribute_set(
            actor=request.user,
            category=category,
            name=data["name"],
            allowed_values=[v.strip() for v in data["allowed_values"].split(",")],
            required=data["rule"] == "required",
            excluded=data["rule"] == "excluded",
            reason=data["reason"],
        )
        return category, f"Saved attribute {data['name']}."

    category = get_object_or_404(Category, pk=pk)
    return PAGES.edit(request, category, forms.AttributeForm, apply)


@editor
@require_POST
def attribute_delete(request: HttpRequest, pk: int) -> HttpResponse:
    attribute = get_object_or_404(CategoryAttribute, pk=pk)
    category = attribute.category
    services.attribute_delete(actor=request.user, attribute=attribute)
    return PAGES.answer(request, category, notice=f"Removed attribute {attribute.name}.")


@viewer
def noise_terms(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm(Perm.EDIT_KNOWLEDGE):
            raise PermissionDenied("You need the edit-knowledge permission.")
        delete = request.POST.get("delete")
        if delete:
            term = get_object_or_404(NoiseTerm, pk=int(delete) if delete.isdigit() else 0)
            services.noise_term_delete(actor=request.user, term=term)
            messages.success(request, f"Removed {term.term!r}.")
        else:
            form = forms.NoiseTermForm(request.POST)
            if form.is_valid():
                try:
                    services.noise_term_add(actor=request.user, **form.cleaned_data)
                    messages.success(request, f"Added {form.cleaned_data['term']!r}.")
                except KnowledgeError as exc:
                    messages.error(request, str(exc))
            else:
                messages.error(request, form_error(form))
        return redirect("knowledge-noise")
    ctx = {"terms": NoiseTerm.objects.order_by("term"), "form": forms.NoiseTermForm(), **common(request)}
    return render(request, "knowledge/noise.html", ctx)
