"""The import/export page and the two downloads (the whole graph as JSON, brands as CSV)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from fusionreview.roles import Perm
from knowledge import forms
from knowledge.changelog import KnowledgeError
from knowledge.importexport.brands_csv import brands_csv_export, brands_csv_import
from knowledge.importexport.catalogue import SourceError
from knowledge.importexport.google_taxonomy import google_taxonomy_import
from knowledge.importexport.json_graph import graph_export_json, graph_json_parse
from knowledge.importexport.services import graph_import_snapshot
from knowledge.web import common, form_error, viewer

MAX_UPLOAD = 20 * 1024 * 1024


@viewer
def import_export(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm(Perm.EDIT_KNOWLEDGE):
            raise PermissionDenied("You need the edit-knowledge permission to import.")
        form = forms.ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > MAX_UPLOAD:
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
                    result = graph_import_snapshot(
                        snapshot=graph_json_parse(data), actor=request.user, reason=f"upload {upload.name}"
                    )
            except (SourceError, KnowledgeError) as exc:
                messages.error(request, f"{upload.name}: {exc}")
            else:
                summary = ", ".join(f"{v} {k}" for k, v in result.items())
                messages.success(request, f"Imported {upload.name}: {summary}. Pending until published.")
        else:
            messages.error(request, form_error(form))
        return redirect("knowledge-import")
    return render(request, "knowledge/import.html", {"form": forms.ImportForm(), **common(request)})


def _download(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@viewer
@require_GET
def export_json(request: HttpRequest) -> HttpResponse:
    return _download(graph_export_json(), "application/json", "knowledge-graph.json")


@viewer
@require_GET
def export_brands_csv(request: HttpRequest) -> HttpResponse:
    return _download(brands_csv_export(), "text/csv", "brands.csv")
