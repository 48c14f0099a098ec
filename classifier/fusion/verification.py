"""Decision-level verification of a prediction against the knowledge snapshot (findings in words)."""

from __future__ import annotations

from classifier.fusion.knowledge import KnowledgeSnapshot
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


def _norm_name(s: str) -> tuple[str, ...]:
    return tuple(w for w, _, _ in latin_words(s)) or (s,)


def _join(names: list[str], limit: int = 3) -> str:
    names = sorted(set(names))
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def verify(
    snapshot: KnowledgeSnapshot, leaf_id: str, entities: list[Entity], *, brand_level: int = 1
) -> list[dict]:
    """Check a predicted leaf against the title's entities and the knowledge snapshot.

    Args:
        snapshot: the knowledge in force.
        leaf_id: predicted leaf category id.
        entities: entities extracted from the title.
        brand_level: depth at which a brand's categories are compared (0 master, 1 sub-category, ...).

    Returns:
        findings ``{"code", "message", "severity"}``; severity "conflict" routes to review (after a
        high-resolution second pass), "warning" is shown to the auditor only.
    """
    out: list[dict] = []
    if not snapshot.has_category(leaf_id):
        return [
            {
                "code": "unknown_category",
                "message": f"category {leaf_id} is not in the knowledge graph",
                "severity": "conflict",
            }
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
            if b is None or not b.category_ids:
                continue
            known = [c for c in b.category_ids if snapshot.has_category(c)]
            if not known:
                continue
            lvl = min(brand_level, len(chain) - 1)
            sold_at = set()
            for c in known:
                a = snapshot.ancestors(c, include_self=True)
                sold_at.add(a[min(lvl, len(a) - 1)])
            # the brand sells something at or below the predicted category, or the predicted branch
            if chain[lvl] not in sold_at and not any(
                leaf_id in snapshot.ancestors(c, include_self=True) for c in known
            ):
                sells = _join([snapshot.category(c).name for c in known])
                out.append(
                    {
                        "code": "brand_category",
                        "severity": "conflict",
                        "message": f"brand {b.name} sells {sells}, not {leaf_name}",
                    }
                )
        elif e.type == "product_type" and snapshot.has_category(e.value):
            ent_chain = snapshot.ancestors(e.value, include_self=True)
            same_name = (
                _norm_name(snapshot.category(e.value).name) in chain_names
                or _norm_name(e.text) in chain_names
            )
            related = e.value in chain or leaf_id in ent_chain
            if not (same_name or related):
                out.append(
                    {
                        "code": "title_type",
                        "severity": "conflict",
                        "message": f"title says '{e.text}' ({snapshot.category(e.value).name}), "
                        f"not {leaf_name}",
                    }
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
                    {
                        "code": "attribute",
                        "severity": "conflict" if r.required else "warning",
                        "message": f"{leaf_name} is listed for {_join(list(r.allowed_values))}, "
                        f"not {_join(list(bad))}",
                    }
                )
        elif r.required and r.attribute not in {e.type for e in entities}:
            out.append(
                {
                    "code": "attribute_missing",
                    "severity": "warning",
                    "message": f"{leaf_name} requires {r.attribute}, the title gives none",
                }
            )
        if r.excluded and r.attribute in {e.type for e in entities}:
            out.append(
                {
                    "code": "attribute_excluded",
                    "severity": "warning",
                    "message": f"{leaf_name} should not have {r.attribute}",
                }
            )
    return out
