"""Model registry pages (scaffold: replaced by the fine-tuning work)."""

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from classifier.models import ModelVersion
from fusionreview.roles import Perm


@permission_required(Perm.MANAGE_MODELS, raise_exception=True)
def model_list(request: HttpRequest) -> HttpResponse:
    return render(request, "classifier/model_list.html", {"versions": ModelVersion.objects.all()})
