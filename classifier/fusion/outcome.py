"""What the engine knows about one item after its path ran (`RawPrediction`), and how that becomes
the prediction a caller gets (`build_prediction`): levels, top-k, brand, routing."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

import numpy as np
import torch

from classifier.fusion.engine_state import SnapshotState
from classifier.fusion.predictions import FusionPrediction, ListingInput
from classifier.fusion.routing import NEW_CATEGORY_UNCONFIRMED, TITLE_NAMES_NO_TYPE, Finding, Severity, route
from classifier.fusion.text import Entity


@dataclass
class RawPrediction:
    """Per-item intermediate results (kept for evaluation, calibration and ablations)."""

    logits: torch.Tensor  # [k] final (uncalibrated) logits of the path taken
    path: str
    findings: list[dict[str, str]]  # routing.Finding.to_dict
    attention: np.ndarray | None
    image_logits: torch.Tensor | None = None
    text_logits: torch.Tensor | None = None  # the text head alone (full path; benchmarks' text-only figure)


def names_type(ents: list[Entity]) -> bool:
    """Does the title name a product type (a gazetteer hit)? Picks the full path's temperature and the
    review threshold (a title that names none is held to the stricter untyped one)."""
    return any(e.type == "product_type" for e in ents)


def blend_heads(fused: torch.Tensor, other: torch.Tensor, weight: float) -> torch.Tensor:
    """The fused logits with another head's mixed in by ``weight`` (0: the fused logits alone)."""
    if weight <= 0.0:
        return fused
    return (1.0 - weight) * fused + weight * other


def mix_heads(
    fused: torch.Tensor,
    text: torch.Tensor | None,
    image: torch.Tensor | None,
    *,
    title_names_type: torch.Tensor,
    text_weight: float,
    image_weight: float,
) -> torch.Tensor:
    """The full path's logits of a batch (``[batch, leaves]``; ``title_names_type``: ``[batch]`` bools): a
    decision-level fusion on top of the trained one, each weight chosen on `val` by calibration
    (``typed_text_weight``, ``untyped_image_weight``).

    A title that names a product type mixes in the text head: on `val` the text head alone was right on
    97.8% of such full titles, the fused model on 97.6%, and the two together on more. A title that names none
    mixes in the image head: with nothing in the title to say what the product is, the brand, gender and
    colour words pull the fused answer toward what such sellers usually list; on `val` the image head alone
    was right more often (90.2%) than the fused model (88.2%)."""
    typed_mix = fused if text is None else blend_heads(fused, text, text_weight)
    untyped_mix = fused if image is None else blend_heads(fused, image, image_weight)
    return torch.where(title_names_type.unsqueeze(-1), typed_mix, untyped_mix)


def prediction_names_type(p: FusionPrediction) -> bool:
    """:func:`names_type` of a prediction's title, read off the entities it carries."""
    return any(e.get("type") == "product_type" for e in p.entities)


def new_category_finding(st: SnapshotState, j: int, ents: list[Entity], trained: Set[str]) -> Finding | None:
    """Leaf `j` was added to the graph after the model was trained (known zero-shot or from a few
    examples) and the title does not name it: the threshold chosen on `val` says nothing about such
    a confidence (a few examples of Kurtis outscore the trained Kurtas on vague titles), so a person
    confirms it. A title that names the leaf is the evidence the model lacks."""
    leaf = st.leaves[j]
    if leaf in trained:
        return None
    named = {e.value for e in ents if e.type == "product_type" and e.value in st.under}
    if leaf in named or any(j in st.by_name.get(st.snapshot.category(c).name.lower(), []) for c in named):
        return None
    return Finding(
        NEW_CATEGORY_UNCONFIRMED,
        f"“{st.snapshot.category(leaf).name}” was added after this model was trained and the title "
        "does not name it: its confidence is not calibrated yet, so a person confirms it.",
        Severity.CONFLICT,
    )


def title_names_no_type_finding(confidence: float, review_threshold: float, untyped: float) -> Finding | None:
    """The item would have been auto-accepted had its title named a product type: only the untyped
    threshold sends it to a person. A hint, so the auditor knows the photo carried the decision."""
    if not review_threshold <= confidence < untyped:
        return None
    why = (
        "no confidence reached the target precision for such titles on val, so a person confirms each one"
        if untyped > 1
        else f"such titles are auto-accepted only from {untyped:.1%} (titles naming their type: "
        f"{review_threshold:.1%})"
    )
    return Finding(
        TITLE_NAMES_NO_TYPE,
        f"The title names no product type, so the photo carried this decision; {why}.",
        Severity.HINT,
    )


def build_prediction(
    st: SnapshotState,
    item: ListingInput,
    probs: torch.Tensor,
    raw: RawPrediction,
    ents: list[Entity],
    *,
    cplx: float,
    latency: float,
    thr: float,
    model_version: str,
    trained: Set[str],
    review_threshold: float | None = None,
) -> FusionPrediction:
    """One item's calibrated leaf probabilities -> the three levels with their top-5, the brand,
    and the review routing (confidence vs `thr`, the knowledge findings, and whether the leaf is one
    the model was trained on: `trained`). ``review_threshold``: the threshold of titles that name their
    type, when `thr` is the stricter one of a title that names none (the item then says so)."""
    j = int(probs.argmax())
    chain = st.chains[j]
    names = [st.snapshot.category(c).name for c in chain]
    lv = []
    top_k = {}
    for lvl, key in ((0, "master"), (1, "sub")):
        pl = probs @ st.level_mats[lvl]
        lv.append(float(pl[st.level_ids[lvl].index(chain[min(lvl, len(chain) - 1)])]))
        order = torch.argsort(pl, descending=True)[:5]
        top_k[key] = [
            (st.snapshot.category(st.level_ids[lvl][int(o)]).name, round(float(pl[o]), 6)) for o in order
        ]
    order = torch.argsort(probs, descending=True)[:5]
    top_k["article"] = [
        (st.snapshot.category(st.leaves[int(o)]).name, round(float(probs[o]), 6)) for o in order
    ]
    conf = float(probs[j])
    findings = raw.findings
    unconfirmed = new_category_finding(st, j, ents, trained)
    if unconfirmed is not None:
        findings = [*findings, unconfirmed.to_dict()]
    held = None if review_threshold is None else title_names_no_type_finding(conf, review_threshold, thr)
    if held is not None:
        findings = [*findings, held.to_dict()]
    decision = route(confidence=conf, threshold=thr, findings=findings)
    reasons = [r.value for r in decision.reasons]
    brand, bconf = None, 0.0
    for e in sorted((e for e in ents if e.type == "brand"), key=lambda e: e.start != 0):
        # at the start of the title (where sellers put it) the brand is near certain
        brand, bconf = e.value, (0.95 if e.start == 0 else 0.6)
        break
    att = None if raw.attention is None else np.clip(raw.attention.astype(np.float32), 0.0, 1.0)
    return FusionPrediction(
        master_category=names[0],
        sub_category=names[1] if len(names) > 2 else names[0],
        article_type=names[-1],
        category_id=st.leaves[j],
        level_confidences=(lv[0], lv[1], conf),
        confidence=conf,
        top_k=top_k,
        brand=brand,
        brand_confidence=bconf,
        needs_review=decision.needs_review,
        review_reasons=reasons,
        route_reason=decision.primary,
        knowledge_findings=findings,
        entities=[e.to_dict() for e in ents],
        path=raw.path,
        latency_ms=latency,
        complexity=cplx,
        attention_map=att,
        key=item.key,
        model_version=model_version,
        snapshot_version=st.snapshot.version,
    )
