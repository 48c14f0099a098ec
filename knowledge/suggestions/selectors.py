"""Reads of the suggestions list."""

from __future__ import annotations

from django.db.models import QuerySet

from knowledge.models import Suggestion


def suggestions_pending() -> QuerySet[Suggestion]:
    # The category's ancestors too: the list shows each category's path (a parent walk per row otherwise).
    return Suggestion.objects.filter(status=Suggestion.Status.PENDING).select_related(
        "brand", "category__parent__parent__parent"
    )


def suggestions_decided() -> QuerySet[Suggestion]:
    return Suggestion.objects.exclude(status=Suggestion.Status.PENDING).select_related(
        "brand", "category__parent__parent__parent", "decided_by"
    )
