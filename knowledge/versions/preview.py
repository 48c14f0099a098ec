"""The impact preview: what publishing the pending edits would change in recent predictions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.fusion.text import EntityExtractor
from classifier.fusion.verification import verify
from knowledge.changelog import changes_pending, knowledge_version_latest
from knowledge.graph.selectors import category_path_labels
from knowledge.ports import ReroutePlan, references
from knowledge.versions.snapshot import snapshot_build_from_db


def brand_category_conflict(snapshot: KnowledgeSnapshot, *, brand_name: str, category_id: str) -> bool:
    """True when the snapshot knows the brand, it sells something, and nothing covering `category_id`.

    A brand that sells a node sells every node below it, so the check walks the predicted
    category's ancestors. An unknown brand or category is no conflict here (nothing to contradict).
    """
    if not brand_name or not category_id or not snapshot.has_category(category_id):
        return False
    brand = snapshot.find_brand(brand_name)
    if brand is None or not brand.category_ids:
        return False
    covering = set(snapshot.ancestors(category_id, include_self=True))
    return not covering.intersection(brand.category_ids)


ConflictCheck = Callable[[str, str], list[str]]


def _no_conflicts(title: str, category_id: str) -> list[str]:
    return []


def conflict_checker(snapshot: KnowledgeSnapshot) -> ConflictCheck:
    """`check(title, category_id) -> [conflict messages]` with the fusion model's own verification.

    Entities are re-extracted from the title with the snapshot's gazetteer (a new alias counts),
    then `classifier.fusion.verification.verify` runs; only "conflict" findings count (they route
    to review).
    """
    extractor = EntityExtractor(snapshot)

    def check(title: str, category_id: str) -> list[str]:
        if not category_id:
            return []
        findings = verify(snapshot, category_id, extractor.extract(title or ""))
        return [f["message"] for f in findings if f.get("severity") == "conflict"]

    return check


@dataclass
class ImpactPreview:
    window_days: int
    limit: int
    examined: int = 0
    label_changed: int = 0
    category_removed: int = 0
    new_conflicts: int = 0
    resolved_conflicts: int = 0
    examples: list[dict[str, object]] = field(default_factory=list)
    pending_changes: int = 0
    published_version: int = 0
    affected: int = 0  # distinct predictions with at least one effect
    # What publishing does to the review queue (`knowledge.ports.ReroutePlan`): the open
    # knowledge-routed tasks it resolves (the publish's re-route job resolves exactly these) and
    # the open or auto-accepted items it would newly hold back.
    reroute: ReroutePlan | None = None


def impact_preview(*, days: int = 7, limit: int = 5000, max_examples: int = 25) -> ImpactPreview:
    """How the pending (unpublished) edits would change the recent predictions.

    For each of the latest `limit` predictions of the last `days` days, compares the published
    snapshot with the candidate built from the tables: the category path the prediction points
    at (merges, moves and renames change it), whether that category still exists, and the
    knowledge check (the fusion model's verification: brand sells category, title type,
    attributes) — a conflict appearing or going away.
    """
    latest = knowledge_version_latest()
    published = KnowledgeSnapshot.from_dict(latest.snapshot) if latest else None
    candidate = snapshot_build_from_db(version=(latest.number if latest else 0) + 1)
    check_old = conflict_checker(published) if published else _no_conflicts
    check_new = conflict_checker(candidate)
    live_labels = category_path_labels(active_only=True)
    since = timezone.now() - timedelta(days=days)
    rows = references().recent_predictions(since=since, limit=limit)
    preview = ImpactPreview(
        window_days=days,
        limit=limit,
        pending_changes=changes_pending().count(),
        published_version=latest.number if latest else 0,
    )
    for row in rows:
        title, old_label = row.title, row.category_label
        preview.examined += 1
        new_label = live_labels.get(row.category_id) if row.category_id else None
        effects: list[str] = []
        if new_label is None:
            preview.category_removed += 1
            effects.append(f"category {old_label} removed")
        elif new_label != old_label:
            preview.label_changed += 1
            effects.append(f"label {old_label} → {new_label}")
        was = (
            check_old(title, old_label) if published is not None and published.has_category(old_label) else []
        )
        now = check_new(title, new_label) if new_label else []
        if now and not was:
            preview.new_conflicts += 1
            effects.append("new conflict: " + "; ".join(now))
        elif was and not now:
            preview.resolved_conflicts += 1
            effects.append("conflict resolved: " + "; ".join(was))
        preview.affected += bool(effects)
        if effects and len(preview.examples) < max_examples:
            preview.examples.append(
                {"prediction_id": row.id, "listing_id": row.listing_id, "effects": effects}
            )
    preview.reroute = references().reroute_plan(
        snapshot=candidate, row_ids=None, window_days=days, limit=limit
    )
    return preview
