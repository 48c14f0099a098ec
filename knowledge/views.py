"""Knowledge-graph editor pages (HTMX).

Reading needs Perm.VIEW_KNOWLEDGE (auditors, ops, admins); every write needs
Perm.EDIT_KNOWLEDGE (ops, admins). Views translate HTTP to services and selectors: a full
page for a normal request, the partial that changes for an htmx one.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from fusionreview.roles import Perm, perm_required
from knowledge import forms, selectors, services
from knowledge.models import (
    Brand,
    Category,
    CategoryAttribute,
    KnowledgeVersion,
    NoiseTerm,
    RerouteJob,
    Suggestion,
)
from knowledge.services import KnowledgeError
from knowledge.sources.brands_csv import brands_csv_export, brands_csv_import
from knowledge.sources.catalogue import SourceError
from knowledge.sources.google_taxonomy import google_taxonomy_import
from knowledge.sources.json_graph import graph_export_json, graph_json_parse

viewer = perm_required(Perm.VIEW_KNOWLEDGE)
editor = perm_required(Perm.EDIT_KNOWLEDGE)


def _changed(response: HttpResponse) -> HttpResponse:
    """Tell the page the graph changed (the tree and the pending badge reload themselves)."""
    return trigger_client_event(response, "graph-changed", {})


_SECTIONS = {
    "knowledge-tree": "tree",
    "knowledge-brands": "brands",
    "knowledge-brand": "brands",
    "knowledge-suggestions": "suggestions",
    "knowledge-noise": "noise",
    "knowledge-changes": "changes",
    "knowledge-versions": "versions",
    "knowledge-version": "versions",
    "knowledge-import": "import",
}


def _common(request: HttpRequest) -> dict[str, Any]:
    match = getattr(request, "resolver_match", None)
    return {
        "section": _SECTIONS.get(match.url_name if match else "", ""),
        "pending_count": selectors.changes_pending().count(),
        "can_edit": request.user.has_perm(Perm.EDIT_KNOWLEDGE),
        "latest_version": selectors.knowledge_version_latest(),
    }


# ---- tree and categories ------------------------------------------------------------------------


@viewer
@require_GET
def tree(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    ctx: dict[str, Any] = {"query": query, **_common(request)}
    if query:
        ctx["category_page"] = selectors.category_page(query=query, number=_page_number(request), size=50)
        ctx["brand_page"] = selectors.brand_page(query=query, number=1, size=20)
    else:
        ctx["roots"] = selectors.category_tree()
    if request.htmx and request.htmx.target == "tree":
        return render(request, "knowledge/partials/tree_body.html", ctx)
    ctx["problems"] = selectors.graph_problems()
    ctx["create_form"] = forms.CategoryCreateForm() if ctx["can_edit"] else None
    selected = request.GET.get("category")
    if selected and selected.isdigit():
        ctx.update(_category_ctx(request, get_object_or_404(Category, pk=int(selected))))
    return render(request, "knowledge/tree.html", ctx)


@viewer
@require_GET
def pending_badge(request: HttpRequest) -> HttpResponse:
    return render(request, "knowledge/partials/pending_badge.html", _common(request))


def _category_ctx(request: HttpRequest, category: Category, **extra: Any) -> dict[str, Any]:
    aliases = "\n".join(category.aliases.order_by("alias").values_list("alias", flat=True))
    initial = {
        "version": category.version,
        "name": category.name,
        "description": category.description,
        "aliases": aliases,
    }
    ctx = {
        "category": category,
        "edit_form": forms.CategoryEditForm(initial=initial),
        "move_form": forms.CategoryMoveForm(
            initial={"version": category.version, "parent": category.parent_id}
        ),
        "merge_form": forms.CategoryMergeForm(),
        "attribute_form": forms.AttributeForm(),
        "attributes": category.attributes.order_by("name"),
        "usage": services.category_usage(category=category),
        "brands": category.brands.order_by("name")[:50],
        "last_change": selectors.change_last_for(object_type="category", object_id=category.pk),
        "can_edit": request.user.has_perm(Perm.EDIT_KNOWLEDGE),
    }
    ctx.update(extra)
    return ctx


def _panel(request: HttpRequest, category: Category, *, status: int = 200, **extra: Any) -> HttpResponse:
    category.refresh_from_db()
    return render(
        request,
        "knowledge/partials/category_panel.html",
        _category_ctx(request, category, **extra),
        status=status,
    )


@viewer
@require_GET
def category_detail(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    if request.htmx:
        return _panel(request, category)
    return redirect(f"{reverse('knowledge-tree')}?category={pk}")


def _done(request: HttpRequest, category: Category | None, message: str) -> HttpResponse:
    if request.htmx and category is not None:
        return _changed(_panel(request, category, notice=message))
    messages.success(request, message)
    if category is not None:
        return redirect(f"{reverse('knowledge-tree')}?category={category.pk}")
    return redirect("knowledge-tree")


def _refused(request: HttpRequest, category: Category | None, error: str, **extra: Any) -> HttpResponse:
    if request.htmx and category is not None:
        # 200 so htmx swaps the panel in with the message (htmx ignores 4xx bodies by default).
        return _panel(request, category, error=error, **extra)
    messages.error(request, error)
    if category is not None:
        return redirect(f"{reverse('knowledge-tree')}?category={category.pk}")
    return redirect("knowledge-tree")


def _form_error(form) -> str:
    return "; ".join(
        f"{name}: {' '.join(errs)}" if name != "__all__" else " ".join(errs)
        for name, errs in form.errors.items()
    )


@editor
@require_POST
def category_edit(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    form = forms.CategoryEditForm(request.POST)
    if not form.is_valid():
        return _refused(request, category, _form_error(form))
    data = form.cleaned_data
    try:
        category = services.category_update(
            actor=request.user,
            category=category,
            expected_version=data["version"],
            name=data["name"],
            description=data["description"],
            aliases=services.aliases_parse(data["aliases"]),
            reason=data["reason"],
        )
    except KnowledgeError as exc:
        return _refused(request, category, str(exc))
    return _done(request, category, f"Saved {category.path_label}.")


@editor
@require_POST
def category_move(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    form = forms.CategoryMoveForm(request.POST)
    if not form.is_valid():
        return _refused(request, category, _form_error(form))
    parent_id = form.cleaned_data["parent"]
    parent = get_object_or_404(Category, pk=parent_id) if parent_id else None
    try:
        category = services.category_move(
            actor=request.user,
            category=category,
            new_parent=parent,
            expected_version=form.cleaned_data["version"],
            reason=form.cleaned_data["reason"],
        )
    except KnowledgeError as exc:
        return _refused(request, category, str(exc))
    return _done(request, category, f"Moved to {category.path_label}.")


@editor
@require_POST
def category_merge(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(Category, pk=pk)
    form = forms.CategoryMergeForm(request.POST)
    if not form.is_valid():
        return _refused(request, source, _form_error(form))
    target = get_object_or_404(Category, pk=form.cleaned_data["target"])
    label = source.path_label
    try:
        target = services.category_merge(
            actor=request.user, source=source, target=target, reason=form.cleaned_data["reason"]
        )
    except KnowledgeError as exc:
        return _refused(request, source, str(exc))
    return _done(request, target, f"Merged {label} into {target.path_label}.")


@editor
@require_POST
def category_delete(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    try:
        version = int(request.POST.get("version", ""))
    except ValueError:
        return _refused(request, category, "The form lost its version; reload the page.")
    label = category.path_label
    try:
        services.category_delete(
            actor=request.user,
            category=category,
            expected_version=version,
            reason=request.POST.get("reason", ""),
        )
    except KnowledgeError as exc:
        return _refused(request, category, str(exc), offer_merge=True)
    messages.success(request, f"Deleted {label}.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("knowledge-tree"))
    return redirect("knowledge-tree")


@editor
@require_POST
def category_create(request: HttpRequest) -> HttpResponse:
    form = forms.CategoryCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_error(form))
        return redirect("knowledge-tree")
    data = form.cleaned_data
    parent = Category.objects.filter(pk=data["parent"]).first() if data["parent"] else None
    try:
        category = services.category_create(
            actor=request.user,
            name=data["name"],
            parent=parent,
            description=data["description"],
            aliases=services.aliases_parse(data["aliases"]),
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
    category = get_object_or_404(Category, pk=pk)
    form = forms.AttributeForm(request.POST)
    if not form.is_valid():
        return _refused(request, category, _form_error(form))
    data = form.cleaned_data
    try:
        services.attribute_set(
            actor=request.user,
            category=category,
            name=data["name"],
            allowed_values=[v.strip() for v in data["allowed_values"].split(",")],
            required=data["rule"] == "required",
            excluded=data["rule"] == "excluded",
            reason=data["reason"],
        )
    except KnowledgeError as exc:
        return _refused(request, category, str(exc))
    return _done(request, category, f"Saved attribute {data['name']}.")


@editor
@require_POST
def attribute_delete(request: HttpRequest, pk: int) -> HttpResponse:
    attribute = get_object_or_404(CategoryAttribute, pk=pk)
    category = attribute.category
    services.attribute_delete(actor=request.user, attribute=attribute)
    return _done(request, category, f"Removed attribute {attribute.name}.")


# ---- brands -------------------------------------------------------------------------------------

BRANDS_PER_PAGE = 50


def _page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", 1)))
    except (TypeError, ValueError):
        return 1


@viewer
@require_GET
def brand_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    ctx = {
        "query": query,
        "page": selectors.brand_page(query=query, number=_page_number(request), size=BRANDS_PER_PAGE),
        **_common(request),
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
        messages.error(request, _form_error(form))
        return redirect("knowledge-brands")
    data = form.cleaned_data
    categories = list(Category.objects.filter(pk=data["category"])) if data["category"] else []
    try:
        brand = services.brand_create(
            actor=request.user,
            name=data["name"],
            aliases=services.aliases_parse(data["aliases"]),
            categories=categories,
            reason=data["reason"],
        )
    except KnowledgeError as exc:
        messages.error(request, str(exc))
        return redirect("knowledge-brands")
    messages.success(request, f"Added brand {brand.name} (pending until published).")
    return redirect("knowledge-brand", pk=brand.pk)


def _brand_ctx(request: HttpRequest, brand: Brand, **extra: Any) -> dict[str, Any]:
    brand.refresh_from_db()
    detail = selectors.brand_detail(brand=brand)
    ctx = {
        "brand": brand,
        **detail,
        "edit_form": forms.BrandEditForm(
            initial={
                "version": brand.version,
                "name": brand.name,
                "description": brand.description,
                "aliases": "\n".join(detail["aliases"]),
            }
        ),
        "category_form": forms.BrandCategoryForm(),
        "merge_form": forms.BrandMergeForm(),
        "last_change": selectors.change_last_for(object_type="brand", object_id=brand.pk),
        **_common(request),
    }
    ctx.update(extra)
    return ctx


def _brand_response(request: HttpRequest, brand: Brand, *, notice: str = "", error: str = "") -> HttpResponse:
    if request.htmx:
        response = render(
            request,
            "knowledge/partials/brand_panel.html",
            _brand_ctx(request, brand, notice=notice, error=error),
        )
        return _changed(response) if notice else response
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    return redirect("knowledge-brand", pk=brand.pk)


@viewer
@require_GET
def brand_detail(request: HttpRequest, pk: int) -> HttpResponse:
    brand = get_object_or_404(Brand, pk=pk)
    return render(request, "knowledge/brand_detail.html", _brand_ctx(request, brand))


@editor
@require_POST
def brand_edit(request: HttpRequest, pk: int) -> HttpResponse:
    brand = get_object_or_404(Brand, pk=pk)
    form = forms.BrandEditForm(request.POST)
    if not form.is_valid():
        return _brand_response(request, brand, error=_form_error(form))
    data = form.cleaned_data
    try:
        brand = services.brand_update(
            actor=request.user,
            brand=brand,
            expected_version=data["version"],
            name=data["name"],
            description=data["description"],
            aliases=services.aliases_parse(data["aliases"]),
            reason=data["reason"],
        )
    except KnowledgeError as exc:
        return _brand_response(request, brand, error=str(exc))
    return _brand_response(request, brand, notice=f"Saved {brand.name}.")


@editor
@require_POST
def brand_categories(request: HttpRequest, pk: int) -> HttpResponse:
    brand = get_object_or_404(Brand, pk=pk)
    remove = request.POST.get("remove")
    if remove:
        category = get_object_or_404(Category, pk=int(remove) if remove.isdigit() else 0)
        services.brand_category_remove(actor=request.user, brand=brand, category=category)
        return _brand_response(request, brand, notice=f"{brand.name} no longer sells {category.path_label}.")
    form = forms.BrandCategoryForm(request.POST)
    if not form.is_valid():
        return _brand_response(request, brand, error=_form_error(form))
    category = get_object_or_404(Category, pk=form.cleaned_data["category"])
    added = services.brand_category_add(
        actor=request.user, brand=brand, category=category, reason=form.cleaned_data["reason"]
    )
    note = f"{brand.name} sells {category.path_label}." if added else "Already recorded."
    return _brand_response(request, brand, notice=note)


@editor
@require_POST
def brand_merge(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(Brand, pk=pk)
    form = forms.BrandMergeForm(request.POST)
    if not form.is_valid():
        return _brand_response(request, source, error=_form_error(form))
    target = selectors.brand_by_name(form.cleaned_data["target"])
    if target is None:
        return _brand_response(request, source, error=f"No brand called {form.cleaned_data['target']!r}.")
    name = source.name
    try:
        target = services.brand_merge(
            actor=request.user, source=source, target=target, reason=form.cleaned_data["reason"]
        )
    except KnowledgeError as exc:
        return _brand_response(request, source, error=str(exc))
    messages.success(request, f"Merged {name} into {target.name}; {name!r} is now an alias.")
    url = reverse("knowledge-brand", args=[target.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# ---- publish, discard, versions, changes --------------------------------------------------------


def _int_param(request: HttpRequest, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(request.GET.get(name, default))))
    except (TypeError, ValueError):
        return default


@viewer
def publish(request: HttpRequest) -> HttpResponse:
    """GET: the impact preview of the pending edits; POST: publish them."""
    if request.method == "POST":
        if not request.user.has_perm(Perm.EDIT_KNOWLEDGE):
            raise PermissionDenied("You need the edit-knowledge permission to publish.")
        form = forms.PublishForm(request.POST)
        if form.is_valid():
            try:
                version = services.knowledge_publish(actor=request.user, reason=form.cleaned_data["reason"])
            except KnowledgeError as exc:
                messages.error(request, str(exc))
            else:
                job = RerouteJob.objects.filter(knowledge_version=version).first()
                if job is not None and job.planned_task_ids:
                    messages.info(
                        request,
                        f"The review queue is re-checked against v{version.number} in the background: "
                        f"{len(job.planned_task_ids)} open task(s) no longer conflict and are being resolved "
                        "(progress and undo on the version page).",
                    )
                if version.activated_at:
                    messages.success(
                        request,
                        f"Published knowledge v{version.number}; workers use it from their next batch.",
                    )
                else:
                    messages.warning(
                        request,
                        f"Published knowledge v{version.number}, but the entity cache is unreachable: "
                        "the previous version stays in force until the retry pushes it.",
                    )
                return redirect("knowledge-versions")
        else:
            messages.error(request, _form_error(form))
        return redirect("knowledge-publish")
    days = _int_param(request, "days", 7, 1, 365)
    limit = _int_param(request, "limit", 5000, 10, 100000)
    ctx = {
        "preview": selectors.impact_preview(days=days, limit=limit),
        "changes": selectors.changes_pending()[:200],
        "form": forms.PublishForm(),
        "days": days,
        "limit": limit,
        **_common(request),
    }
    if request.htmx and request.htmx.target == "impact":
        return render(request, "knowledge/partials/impact.html", ctx)
    return render(request, "knowledge/publish.html", ctx)


@editor
@require_POST
def discard(request: HttpRequest) -> HttpResponse:
    try:
        count = services.knowledge_discard(actor=request.user, reason=request.POST.get("reason", ""))
    except KnowledgeError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Discarded {count} pending changes; the graph is back to the published version."
        )
    return redirect("knowledge-publish")


@viewer
@require_GET
def versions(request: HttpRequest) -> HttpResponse:
    rows = KnowledgeVersion.objects.select_related("created_by").defer("snapshot", "row_ids")[:100]
    return render(request, "knowledge/versions.html", {"versions": rows, **_common(request)})


@viewer
@require_GET
def version_detail(request: HttpRequest, number: int) -> HttpResponse:
    """The version's diff against the previous one (or `?against=N`), with who changed what and why."""
    against_raw = request.GET.get("against", "")
    against = int(against_raw) if against_raw.isdigit() else None
    comparison = selectors.knowledge_version_compare(number=number, against=against)
    if comparison is None:
        raise Http404(f"There is no knowledge v{number}.")
    if against is not None and comparison.base is None:
        messages.error(request, f"There is no knowledge v{against}; compared with the previous version.")
        return redirect("knowledge-version", number=number)
    ctx = {
        "version": comparison.version,
        "comparison": comparison,
        "diff": comparison.diff,
        "unchanged": [
            title
            for title, section in (
                ("brands", comparison.diff.brands),
                ("categories", comparison.diff.categories),
                ("attribute rules", comparison.diff.rules),
                ("noise terms", comparison.diff.noise_terms),
            )
            if section.empty
        ],
        "changes": comparison.changes,
        "numbers": [n for n in selectors.knowledge_version_numbers() if n != number],
        **_common(request),
    }
    return render(request, "knowledge/version_detail.html", ctx)


@editor
@require_POST
def version_restore(request: HttpRequest, number: int) -> HttpResponse:
    try:
        version = services.knowledge_version_restore(
            actor=request.user,
            number=number,
            reason=request.POST.get("reason", "") or f"restore of v{number}",
        )
    except KnowledgeError as exc:
        messages.error(request, str(exc))
        return redirect("knowledge-versions")
    messages.success(request, f"Restored v{number} as knowledge v{version.number}.")
    return redirect("knowledge-versions")


@editor
@require_POST
def version_reroute_undo(request: HttpRequest, number: int) -> HttpResponse:
    """Put back in the queue the review tasks this version's publish resolved (where still possible)."""
    from knowledge.reroute import reroute_undo_version

    result = reroute_undo_version(number=number, actor=request.user)
    text = f"{result['undone']} tasks resolved by v{number} are back in the review queue."
    if result["refused"]:
        text += f" {result['refused']} could not be put back (decided or re-queued since)."
    messages.success(request, text)
    return redirect("knowledge-version", number=number)


@viewer
@require_GET
def changes(request: HttpRequest) -> HttpResponse:
    page = selectors.change_page(number=_page_number(request), size=100)
    ctx = {"changes": page.rows, "page": page, "query": "", **_common(request)}
    return render(request, "knowledge/changes.html", ctx)


# ---- suggestions, noise, import/export ------------------------------------------------------------


@viewer
@require_GET
def suggestions(request: HttpRequest) -> HttpResponse:
    ctx = {
        "pending": selectors.suggestions_pending()[:200],
        "decided": Suggestion.objects.exclude(status=Suggestion.Status.PENDING).select_related(
            "brand", "category__parent__parent__parent", "decided_by"
        )[:50],
        **_common(request),
    }
    return render(request, "knowledge/suggestions.html", ctx)


@editor
@require_POST
def suggestions_refresh(request: HttpRequest) -> HttpResponse:
    result = services.suggestions_refresh()
    messages.success(request, f"{result['created']} new suggestions, {result['pending']} pending.")
    return redirect("knowledge-suggestions")


@editor
@require_POST
def suggestions_accept_bulk(request: HttpRequest) -> HttpResponse:
    """Accept every brand -> category suggestion backed by at least `min_evidence` decisions."""
    try:
        min_evidence = int(request.POST.get("min_evidence", ""))
        result = services.suggestions_accept_bulk(actor=request.user, min_evidence=min_evidence)
    except ValueError as exc:  # KnowledgeError is a ValueError too
        text = str(exc) if isinstance(exc, KnowledgeError) else "The threshold must be a whole number."
        messages.error(request, text)
    else:
        messages.success(
            request,
            f"Accepted {result['accepted']} relations seen in at least {min_evidence} decisions; "
            "pending until published.",
        )
    return redirect("knowledge-suggestions")


@editor
@require_POST
def suggestion_decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    if decision not in ("accept", "reject"):
        raise Http404("Unknown decision.")
    suggestion = get_object_or_404(Suggestion, pk=pk)
    try:
        if decision == "accept":
            services.suggestion_accept(actor=request.user, suggestion=suggestion)
            messages.success(request, "Accepted; the change is pending until published.")
        else:
            services.suggestion_reject(actor=request.user, suggestion=suggestion)
            messages.success(request, "Rejected.")
    except KnowledgeError as exc:
        messages.error(request, str(exc))
    return redirect("knowledge-suggestions")


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
                messages.error(request, _form_error(form))
        return redirect("knowledge-noise")
    ctx = {"terms": NoiseTerm.objects.order_by("term"), "form": forms.NoiseTermForm(), **_common(request)}
    return render(request, "knowledge/noise.html", ctx)


@viewer
def import_export(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm(Perm.EDIT_KNOWLEDGE):
            raise PermissionDenied("You need the edit-knowledge permission to import.")
        form = forms.ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > 20 * 1024 * 1024:
                messages.error(request, "The file is larger than 20 MiB.")
                return redirect("knowledge-import")
            data = upload.read()
            kind = form.cleaned_data["kind"]
            try:
                if kind == "brands-csv":
                    result = brands_csv_import(data=data, actor=request.user, reason=f"upload {upload.name}")
                elif kind == "google-taxonomy":
                    result = google_taxonomy_import(
                        data=data, root=form.cleaned_data["root"] or None, actor=request.user
                    )
                else:
                    result = services.graph_import_snapshot(
                        snapshot=graph_json_parse(data), actor=request.user, reason=f"upload {upload.name}"
                    )
            except (SourceError, KnowledgeError) as exc:
                messages.error(request, f"{upload.name}: {exc}")
            else:
                summary = ", ".join(f"{v} {k}" for k, v in result.items())
                messages.success(request, f"Imported {upload.name}: {summary}. Pending until published.")
        else:
            messages.error(request, _form_error(form))
        return redirect("knowledge-import")
    return render(request, "knowledge/import.html", {"form": forms.ImportForm(), **_common(request)})


@viewer
@require_GET
def export_json(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(graph_export_json(), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="knowledge-graph.json"'
    return response


@viewer
@require_GET
def export_brands_csv(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(brands_csv_export(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="brands.csv"'
    return response
