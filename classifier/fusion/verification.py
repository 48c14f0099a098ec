"""Decision-level verification of a prediction against the knowledge snapshot (findings in words).

Evidence, not absence: a finding is a ``conflict`` (it routes the item to a person) only when the
graph holds positive evidence against the prediction; anything the graph merely has not seen yet
is a ``hint`` for the auditor and, through the review decisions, a suggestion for ops.

- brand -> category: a conflict only when the brand is well supported (at least
  ``min_brand_support`` approved listings, every relation counted), none of them lies in the
  predicted sub-category, and the brand either never sold in the predicted master category or is
  a specialist (nearly all its listings in one or two sub-categories); a generalist not seen in
  the branch yet, a thin or uncounted record gives a hint at most (see `brand_evidence`);
- the title naming another product type: a hint (titles name accessories, sets and gifts);
- attribute rules: a conflict only for a ``required`` rule that the title violates;
- a predicted category that the graph does not hold (or retired): a conflict.
"""

from __future__ import annotations

from collections import Counter

from classifier.fusion.knowledge import BrandEntry, KnowledgeSnapshot
from classifier.fusion.routing import Finding, Severity
from classifier.fusion.text import Entity, latin_words

AUDIENCE_MAP = {
    "men": "Men",
    "mens": "Men",
    "man": "Men",
    "男": "Men",
    "男士": "Men",
    "women": "Women",
    "womens": "Women",
    "ladies": "Women",
    "女": "Women",
    "女士": "Women",
    "boys": "Boys",
    "男童": "Boys",
    "girls": "Girls",
    "女童": "Girls",
    "unisex": "Unisex",
}

# Approved listings a brand needs, all outside the predicted branch, before "never seen in this
# branch" counts as evidence. Chosen on `val` (see tests/bench/bench_knowledge_precision.py).
MIN_BRAND_SUPPORT = 20
# Depth of the branch compared (0 master category, 1 sub-category).
BRAND_LEVEL = 1
# A specialist brand: this share of its listings in its this-many largest branches.
SPECIALIST_SHARE = 0.9
SPECIALIST_BRANCHES = 2


def _norm_name(s: str) -> tuple[str, ...]:
    return tuple(w for w, _, _ in latin_words(s)) or (s,)


def _join(names: list[str], limit: int = 3) -> str:
    names = sorted(set(names))
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _finding(code: str, message: str, severity: Severity) -> dict[str, str]:
    return Finding(code, message, severity).to_dict()


def brand_evidence(
    snapshot: KnowledgeSnapshot,
    brand: BrandEntry,
    leaf_id: str,
    *,
    brand_level: int = BRAND_LEVEL,
    min_support: int = MIN_BRAND_SUPPORT,
) -> tuple[Severity | None, str]:
    """How the brand's relations bear on the predicted leaf: (None, "") when they agree with it.

    Positive evidence (CONFLICT) takes a brand with at least ``min_support`` counted listings,
    none of them in the predicted branch, and either
    - none in the predicted master category at all (a watch brand and a T-shirt), or
    - a specialist: at least ``SPECIALIST_SHARE`` of its listings in its ``SPECIALIST_BRANCHES``
      largest branches (a brand of two trades, and not this one).
    A generalist merely not seen in this branch yet, a thin or uncounted record: HINT.
    """
    known = [(i, c) for i, c in enumerate(brand.category_ids) if snapshot.has_category(c)]
    if not known:
        return None, ""
    chain = snapshot.ancestors(leaf_id, include_self=True)
    leaf_key = _norm_name(snapshot.category(leaf_id).name)
    level = min(brand_level, len(chain) - 1)
    branch, master = chain[level], chain[0]
    per_branch: Counter[str] = Counter()
    in_master = 0
    outside: list[str] = []
    uncounted = False
    for i, c in known:
        c_chain = snapshot.ancestors(c, include_self=True)
        support = brand.support_of(i)
        # a relation at or above the predicted leaf covers it, whatever its count
        if c in chain:
            return None, ""
        # the same type under another parent (a stray placement) is the same evidence
        if branch in c_chain or _norm_name(snapshot.category(c).name) == leaf_key:
            return None, ""
        if support is None:
            uncounted = True
            support = 0
        per_branch[c_chain[min(level, len(c_chain) - 1)]] += support
        in_master += support if c_chain[0] == master else 0
        outside.append(snapshot.category(c).name)
    total = brand.support_total
    branch_name = snapshot.category(branch).name
    sells = _join(outside)
    if total is not None and not uncounted and total >= min_support:
        largest = sum(n for _, n in per_branch.most_common(SPECIALIST_BRANCHES))
        specialist = largest >= SPECIALIST_SHARE * total
        if in_master == 0 or specialist:
            where = snapshot.category(master).name if in_master == 0 else branch_name
            return (
                Severity.CONFLICT,
                f"brand {brand.name} sells {sells}, not {where} ({total} approved listings, none in {where})",
            )
    seen = f"seen {total} times" if total is not None else "relations not counted"
    return Severity.HINT, f"brand {brand.name} not seen in {branch_name} yet ({seen}: {sells})"


def verify(
    snapshot: KnowledgeSnapshot,
    leaf_id: str,
    entities: list[Entity],
    *,
    brand_level: int = BRAND_LEVEL,
    min_brand_support: int = MIN_BRAND_SUPPORT,
) -> list[dict[str, str]]:
    """Check a predicted leaf against the title's entities and the knowledge snapshot.

    Args:
        snapshot: the knowledge in force.
        leaf_id: predicted leaf category id.
        entities: entities extracted from the title.
        brand_level: depth of the branch a brand's record is compared at (0 master, 1 sub-category).
        min_brand_support: approved listings a brand needs before its absence from a branch counts.

    Returns:
        findings ``{"code", "message", "severity"}`` (`classifier.fusion.routing.Finding.to_dict`);
        severity "conflict" routes to review (after a high-resolution second pass), "hint" is shown
        to the auditor and becomes an ops suggestion.
    """
    out: list[dict[str, str]] = []
    if not snapshot.has_category(leaf_id):
        return [
            _finding(
                "unknown_category", f"category {leaf_id} is not in the knowledge graph", Severity.CONFLICT
            )
        ]
    chain = snapshot.ancestors(leaf_id, include_self=True)
    leaf_name = snapshot.category(leaf_id).name
    chain_names = {_norm_name(snapshot.category(c).name) for c in chain}
    seen_brands = set()
    for e in entities:
        # a Latin brand counts only where sellers put it, at the start ("Puma Men ... Cat Remix" is not Cat)
        if e.type == "brand" and e.value not in seen_brands and (e.start == 0 or not e.text.isascii()):
            seen_brands.add(e.value)
            b = snapshot.find_brand(e.value)
            if b is None:
                continue
            severity, message = brand_evidence(
                snapshot, b, leaf_id, brand_level=brand_level, min_support=min_brand_support
            )
            if severity is not None:
                out.append(_finding("brand_category", message, severity))
        elif e.type == "product_type" and snapshot.has_category(e.value):
            ent_chain = snapshot.ancestors(e.value, include_self=True)
            same_name = (
                _norm_name(snapshot.category(e.value).name) in chain_names
                or _norm_name(e.text) in chain_names
            )
            related = e.value in chain or leaf_id in ent_chain
            if not (same_name or related):
                out.append(
                    _finding(
                        "title_type",
                        f"title says '{e.text}' ({snapshot.category(e.value).name}), not {leaf_name}",
                        Severity.HINT,
                    )
                )
    audience = {
        AUDIENCE_MAP[e.value.lower()]
        for e in entities
        if e.type == "audience" and e.value.lower() in AUDIENCE_MAP
    }
    for r in snapshot.rules_for(leaf_id):
        if r.attribute == "audience" and audience and r.allowed_values:
            bad = audience - set(r.allowed_values) - {"Unisex"}
            if bad and "Unisex" not in r.allowed_values:
                out.append(
                    _finding(
                        "attribute",
                        f"{leaf_name} is listed for {_join(list(r.allowed_values))}, not {_join(list(bad))}",
                        Severity.CONFLICT if r.required else Severity.HINT,
                    )
                )
        elif r.required and r.attribute not in {e.type for e in entities}:
            out.append(
                _finding(
                    "attribute_missing",
                    f"{leaf_name} requires {r.attribute}, the title gives none",
                    Severity.HINT,
                )
            )
        if r.excluded and r.attribute in {e.type for e in entities}:
            out.append(
                _finding("attribute_excluded", f"{leaf_name} should not have {r.attribute}", Severity.HINT)
            )
    return out
