"""Listing pages."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from classifier.models import Listing
from fusionreview.roles import Perm


@permission_required(Perm.VIEW_LISTINGS, raise_exception=True)
def listing_list(request: HttpRequest) -> HttpResponse:
    listings = Listing.objects.select_related("final_category")[:100]
    return render(request, "classifier/listing_list.html", {"listings": listings})
