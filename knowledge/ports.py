"""What the knowledge app needs from the apps that point at the graph (listings, review, models).

`knowledge` never imports those apps (an import-linter contract holds it): it states here, as one
Protocol, the few facts and moves it needs from them -- how many rows use a category, re-pointing
rows when two nodes are merged, the review evidence behind suggestions, what a publish would do to
the review queue -- and the classifier app registers the implementation in its AppConfig.ready().
After a publish, `knowledge.signals.snapshot_published` tells the same app to re-route its queue.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.contrib.auth.models import AnonymousUser, User

from classifier.fusion.knowledge import KnowledgeSnapshot

# Who makes an edit: a request's user, or None for the system (imports, the suggestion job).
Actor = User | AnonymousUser | None
RowIds = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class ListingRef:
    """A listing as the knowledge pages show it."""

    id: int
    title: str
    created_at: datetime
    category_id: int | None


@dataclass(frozen=True)
class CategoryUse:
    """How many rows outside the graph name one category."""

    listings: int
    predictions: int
    decisions: int


@dataclass(frozen=True)
class Evidence:
    """One approved or corrected review decision that names a brand (not undone)."""

    listing_id: int
    brand_id: int
    category_id: int | None
    title: str


@dataclass(frozen=True)
class RecentPrediction:
    """A recent (non-shadow) prediction, for the impact preview."""

    id: int
    listing_id: int
    title: str
    category_id: int | None
    category_label: str


@dataclass
class ReroutePlan:
    """What a snapshot would do to the queue (task ids, listing ids; counts are their lengths)."""

    checked: int = 0
    resolve: list[int] = field(default_factory=list)  # open knowledge tasks that would be resolved
    resolve_held: list[int] = field(default_factory=list)  # ...of which held by an auditor right now
    # conflict gone, but the item still needs a person (low confidence, a category the model never trained on)
    conflict_gone_still_routed: list[int] = field(default_factory=list)
    still_conflicting: list[int] = field(default_factory=list)
    new_conflicts: list[dict[str, object]] = field(default_factory=list)  # open/accepted items newly held
    examples: list[dict[str, object]] = field(default_factory=list)


class GraphReferences(Protocol):
    """The rows of other apps that point at categories and brands."""

    def category_use(self, *, category_id: int) -> CategoryUse: ...

    def category_listing_counts(self) -> dict[int, int]:
        """Final listings per category id."""
        ...

    def category_repoint(
        self, *, source_id: int, target_id: int
    ) -> tuple[dict[str, int], dict[str, list[int]]]:
        """Move every row naming `source_id` to `target_id`: (counts moved, ids moved) by kind."""
        ...

    def category_repoint_back(
        self, *, moved_ids: Mapping[str, Sequence[int]], from_id: int, to_id: int
    ) -> int:
        """Put back rows a merge moved (only those still on `from_id`); how many moved."""
        ...

    def brand_repoint(self, *, source_id: int, target_id: int) -> dict[str, int]: ...

    def brand_listings(self, *, brand_id: int, limit: int) -> tuple[list[ListingRef], int]:
        """The brand's newest final listings and how many there are in all."""
        ...

    def decision_evidence(self) -> Iterator[Evidence]: ...

    def accepted_listings(self) -> Iterator[tuple[int, int, int]]:
        """(listing id, brand id, category id) of auto-accepted listings with both set."""
        ...

    def recent_predictions(self, *, since: datetime, limit: int) -> list[RecentPrediction]: ...

    def reroute_plan(
        self, *, snapshot: KnowledgeSnapshot, row_ids: RowIds | None, window_days: int, limit: int
    ) -> ReroutePlan:
        """What publishing `snapshot` would do to the open review tasks (the preview's promise)."""
        ...

    def reroute_undo(self, *, number: int, actor: Actor) -> dict[str, int]:
        """Put back the tasks version `number`'s publish resolved: {"undone", "refused"}."""
        ...


_registered: GraphReferences | None = None


def references_register(impl: GraphReferences) -> None:
    """Called once by the app that owns the rows (classifier's AppConfig.ready)."""
    global _registered
    _registered = impl


def references() -> GraphReferences:
    if _registered is None:
        raise RuntimeError("no GraphReferences registered: is the classifier app installed and ready?")
    return _registered
