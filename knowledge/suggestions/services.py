"""Suggestions from review: knowledge gaps the decisions reveal, accepted or rejected by ops."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from classifier.fusion.catalogue_snapshot import brand_prefix
from knowledge.changelog import KnowledgeError, actor_user
from knowledge.graph.brands import brand_alias_add, brand_category_add, brand_create
from knowledge.graph.rules import ALIAS_MAX
from knowledge.models import Brand, BrandAlias, BrandCategory, Category, Suggestion
from knowledge.ports import Actor, references


def _title_brand_prefix(title: str) -> str | None:
    prefix = brand_prefix(title or "")
    return prefix.strip() if prefix and len(prefix) <= ALIAS_MAX else None


@dataclass
class _Gap:
    kind: str
    brand_id: int
    category_id: int | None
    alias: str
    listings: list[int] = field(default_factory=list)


class _Gaps:
    """The gaps found so far, by suggestion key, with the listings that show each."""

    def __init__(self) -> None:
        self.parents = dict(Category.objects.values_list("id", "parent_id"))
        self.sells: dict[int, set[int]] = {}
        for brand_id, category_id in BrandCategory.objects.values_list("brand_id", "category_id"):
            self.sells.setdefault(brand_id, set()).add(category_id)
        self.by_key: dict[str, _Gap] = {}

    def add(self, key: str, gap: _Gap, listing_id: int) -> None:
        self.by_key.setdefault(key, gap).listings.append(listing_id)

    def sells_branch(self, brand_id: int, category_id: int) -> bool:
        """Whether the brand sells the node or any ancestor of it."""
        chain: set[int] = set()
        cur: int | None = category_id
        while cur is not None and cur not in chain:
            chain.add(cur)
            cur = self.parents.get(cur)
        return bool(chain & self.sells.get(brand_id, set()))

    def relation(self, brand_id: int, category_id: int, listing_id: int) -> None:
        if not self.sells_branch(brand_id, category_id):
            gap = _Gap(Suggestion.Kind.BRAND_CATEGORY, brand_id, category_id, "")
            self.add(f"brand_category:{brand_id}:{category_id}", gap, listing_id)


def suggestions_refresh() -> dict[str, int]:
    """Derive pending suggestions from review decisions (approve/correct, not undone) and
    auto-accepted listings. Idempotent.

    - brand_category: the decision names a brand and a category the brand does not sell (at that
      node or any ancestor);
    - brand_alias: the title starts with a brand spelling that is neither the decided brand's
      name nor one of its aliases nor any other brand's.
    A gap already accepted or rejected is not suggested again; its evidence count is kept current.
    """
    known_names = {n.lower() for n in Brand.objects.values_list("name", flat=True)}
    known_names |= {a.lower() for a in BrandAlias.objects.values_list("alias", flat=True)}
    gaps = _Gaps()
    for decision in references().decision_evidence():
        if decision.category_id:
            gaps.relation(decision.brand_id, decision.category_id, decision.listing_id)
        prefix = _title_brand_prefix(decision.title)
        if prefix and prefix.lower() not in known_names:
            gap = _Gap(Suggestion.Kind.BRAND_ALIAS, decision.brand_id, None, prefix)
            gaps.add(f"brand_alias:{decision.brand_id}:{prefix.lower()}", gap, decision.listing_id)
    # Auto-accepted listings are evidence too ("Puma sells Caps? seen 14 times"): the knowledge
    # check left them a hint, and ops decide whether the relation is real.
    for listing_id, brand_id, category_id in references().accepted_listings():
        gaps.relation(brand_id, category_id, listing_id)
    created = updated = 0
    with transaction.atomic():
        for key, gap in gaps.by_key.items():
            listings = list(dict.fromkeys(gap.listings))
            _, was_created = Suggestion.objects.update_or_create(
                key=key,
                defaults={
                    "kind": gap.kind,
                    "brand_id": gap.brand_id,
                    "category_id": gap.category_id,
                    "alias": gap.alias,
                    "evidence_count": len(listings),
                    "example_listing_ids": listings[:10],
                },
            )
            created += int(was_created)
            updated += int(not was_created)
        # Gaps closed meanwhile (someone added the alias or relation by hand) stop being pending.
        closed = (
            Suggestion.objects.filter(status=Suggestion.Status.PENDING)
            .exclude(key__in=list(gaps.by_key))
            .exclude(kind=Suggestion.Kind.BRAND_NEW)  # recorded by decisions, not derived here
            .delete()[0]
        )
        # a missing brand that exists now (added by hand) is no longer a gap
        for suggestion in Suggestion.objects.filter(
            status=Suggestion.Status.PENDING, kind=Suggestion.Kind.BRAND_NEW
        ):
            if known_names and suggestion.alias.lower() in known_names:
                suggestion.delete()
                closed += 1
    return {
        "created": created,
        "updated": updated,
        "closed": closed,
        "pending": Suggestion.objects.filter(status=Suggestion.Status.PENDING).count(),
    }


def suggestion_brand_gap_record(*, name: str, listing_id: int) -> Suggestion:
    """An auditor named a brand the graph lacks: a pending "missing brand" suggestion for ops
    (one per spelling, case-folded), with its evidence count and example listings."""
    name = name.strip()[:ALIAS_MAX]
    key = f"brand_new:{name.lower()}"
    with transaction.atomic():
        suggestion, _ = Suggestion.objects.select_for_update().get_or_create(
            key=key, defaults={"kind": Suggestion.Kind.BRAND_NEW, "alias": name}
        )
        examples = list(dict.fromkeys([*suggestion.example_listing_ids, listing_id]))
        Suggestion.objects.filter(pk=suggestion.pk).update(
            evidence_count=F("evidence_count") + 1, example_listing_ids=examples[:10]
        )
    suggestion.refresh_from_db()
    return suggestion


def suggestions_accept_bulk(*, actor: Actor, min_evidence: int) -> dict[str, int]:
    """Accept every pending brand -> category suggestion backed by at least `min_evidence`
    decisions: each relation is created with that support, marked as learnt from decisions."""
    if min_evidence < 1:
        raise KnowledgeError("The threshold must be at least one decision.")
    accepted = 0
    for suggestion in Suggestion.objects.filter(
        status=Suggestion.Status.PENDING,
        kind=Suggestion.Kind.BRAND_CATEGORY,
        evidence_count__gte=min_evidence,
    ).order_by("-evidence_count", "id"):
        try:
            suggestion_accept(actor=actor, suggestion=suggestion)
            accepted += 1
        except KnowledgeError:
            continue  # decided meanwhile by someone else
    return {"accepted": accepted}


@transaction.atomic
def suggestion_accept(*, actor: Actor, suggestion: Suggestion) -> Suggestion:
    suggestion = Suggestion.objects.select_for_update().get(pk=suggestion.pk)
    if suggestion.status != Suggestion.Status.PENDING:
        raise KnowledgeError(f"This suggestion was already {suggestion.get_status_display().lower()}.")
    why = f"accepted suggestion: {suggestion.evidence_count} review decisions"
    brand, category = suggestion.brand, suggestion.category
    if suggestion.kind == Suggestion.Kind.BRAND_ALIAS:
        if brand is None:
            raise KnowledgeError("This suggestion names no brand.")
        brand_alias_add(actor=actor, brand=brand, alias=suggestion.alias, reason=why)
    elif suggestion.kind == Suggestion.Kind.BRAND_NEW:
        if Brand.objects.filter(name__iexact=suggestion.alias).exists():
            raise KnowledgeError(f"The brand “{suggestion.alias}” exists already.")
        created = brand_create(actor=actor, name=suggestion.alias, reason=why)
        Suggestion.objects.filter(pk=suggestion.pk).update(brand=created)
    else:
        if brand is None or category is None:
            raise KnowledgeError("This suggestion names no brand or no category.")
        brand_category_add(actor=actor, brand=brand, category=category, reason=why)
        # the decisions that revealed the gap are the relation's evidence
        BrandCategory.objects.filter(brand=suggestion.brand, category=suggestion.category).update(
            support=suggestion.evidence_count, source=BrandCategory.Source.DECISIONS
        )
    suggestion.status = Suggestion.Status.ACCEPTED
    suggestion.decided_by = actor_user(actor)
    suggestion.decided_at = timezone.now()
    suggestion.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
    return suggestion


@transaction.atomic
def suggestion_reject(*, actor: Actor, suggestion: Suggestion) -> Suggestion:
    updated = Suggestion.objects.filter(pk=suggestion.pk, status=Suggestion.Status.PENDING).update(
        status=Suggestion.Status.REJECTED, decided_by=actor_user(actor), decided_at=timezone.now()
    )
    if not updated:
        raise KnowledgeError("This suggestion was already decided.")
    suggestion.refresh_from_db()
    return suggestion
