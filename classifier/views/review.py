"""Review queue pages (scaffold: replaced by the review-queue work)."""

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from classifier.models import ReviewTask
from fusionreview.roles import Perm


@permission_required(Perm.REVIEW, raise_exception=True)
def queues(request: HttpRequest) -> HttpResponse:
    tasks = ReviewTask.objects.filter(status=ReviewTask.Status.PENDING).select_related("listing")[:50]
    return render(request, "classifier/review_queues.html", {"tasks": tasks})
