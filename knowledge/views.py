"""Knowledge-graph editor pages (scaffold: replaced by the editor work)."""

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from fusionreview.roles import Perm
from knowledge.models import Category


@permission_required(Perm.VIEW_KNOWLEDGE, raise_exception=True)
def tree(request: HttpRequest) -> HttpResponse:
    roots = Category.objects.filter(parent=None).prefetch_related("children__children")
    return render(request, "knowledge/tree.html", {"roots": roots})
