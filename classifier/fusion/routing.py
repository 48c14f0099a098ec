"""The routing contract: one vocabulary of findings and reasons, one `route()` that decides review.

Every side speaks it: the engine (`FusionPrediction.review_reasons` / `route_reason`), the
Django pipeline that opens review tasks, the review queue filter, the offline `predict` CSV and
the benchmarks. Nothing else decides whether an item needs a person.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AUTO_ACCEPTED",
    "NEW_CATEGORY_UNCONFIRMED",
    "TITLE_NAMES_NO_TYPE",
    "Finding",
    "RouteDecision",
    "RouteReason",
    "Severity",
    "from_the_model",
    "route",
    "title_threshold",
]


class Severity(StrEnum):
    """How much a knowledge finding weighs.

    CONFLICT: the graph holds positive evidence against the prediction; the item goes to a person.
    HINT: worth showing the auditor (and ops), never a reason to route on its own.
    """

    CONFLICT = "conflict"
    HINT = "hint"

    @classmethod
    def parse(cls, value: object) -> Severity:
        """Read a stored severity; older artifacts wrote "warning" for what is now a hint."""
        text = str(value or "").strip().lower()
        return cls.CONFLICT if text in {"conflict", "error"} else cls.HINT


class RouteReason(StrEnum):
    """Why an item was sent to review, ordered from most to least specific (see `route`)."""

    UNKNOWN_CATEGORY = "unknown_category"  # predicted category is not (or no longer) in the graph
    KNOWLEDGE_CONFLICT = "knowledge_conflict"  # the graph holds evidence against the prediction
    # a leaf the model was never trained on (added to the graph since; known zero-shot or from a few
    # examples), read from the photo without the title naming it: its confidence has no calibration
    NEW_CATEGORY = "new_category"
    LOW_CONFIDENCE = "low_confidence"  # calibrated confidence below the model version's threshold


AUTO_ACCEPTED = "auto_accepted"  # the `route_reason` written for items that need no person

# Finding codes that mean "the category itself is unknown", whatever the checker calls them.
_UNKNOWN_CATEGORY_CODES = frozenset({"unknown_category", "category_retired"})
# The finding the engine writes when it predicts an untrained leaf the title does not name.
NEW_CATEGORY_UNCONFIRMED = "new_category_unconfirmed"
# The hint the engine writes when only the stricter threshold of titles naming no product type sent the
# item to a person (the photo carried the decision).
TITLE_NAMES_NO_TYPE = "title_names_no_type"
_OWN_REASON_CODES = _UNKNOWN_CATEGORY_CODES | {NEW_CATEGORY_UNCONFIRMED}


def from_the_model(finding: Mapping[str, object]) -> bool:
    """A finding the engine made about itself, not the knowledge graph's: checking the item again
    against a new snapshot keeps it, and it is no conflict the graph raised."""
    return finding.get("code") in (NEW_CATEGORY_UNCONFIRMED, TITLE_NAMES_NO_TYPE)


@dataclass(frozen=True)
class Finding:
    """One result of the knowledge check, in words for the auditor."""

    code: str
    message: str
    severity: Severity = Severity.HINT

    @property
    def routes(self) -> bool:
        return self.severity is Severity.CONFLICT

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "severity": self.severity.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Finding:
        return cls(
            code=str(data.get("code") or ""),
            message=str(data.get("message") or data.get("code") or ""),
            severity=Severity.parse(data.get("severity")),
        )


@dataclass(frozen=True)
class RouteDecision:
    """The outcome of `route`: whether a person decides, and every reason why."""

    reasons: tuple[RouteReason, ...]

    @property
    def needs_review(self) -> bool:
        return bool(self.reasons)

    @property
    def primary(self) -> str:
        """The one reason shown first (queue filter, CSV column); `auto_accepted` when none."""
        return self.reasons[0].value if self.reasons else AUTO_ACCEPTED


def title_threshold(review_threshold: float, untyped_threshold: float | None, *, names_type: bool) -> float:
    """The threshold a prediction is routed at: ``review_threshold``, or, for a title that names no product
    type, the model's stricter ``untyped_threshold`` (chosen on `val`) when that is higher. The engine,
    the pipeline's reroute and the knowledge re-route check all route by this."""
    if names_type or untyped_threshold is None:
        return review_threshold
    return max(review_threshold, untyped_threshold)


def route(
    *,
    confidence: float,
    threshold: float,
    findings: Iterable[Finding | Mapping[str, object]] = (),
) -> RouteDecision:
    """Decide whether a prediction needs a person.

    Args:
        confidence: calibrated probability of the predicted leaf, in [0, 1].
        threshold: the serving model version's review threshold (chosen on `val` for the target
            precision of auto-accepted items).
        findings: the knowledge check's findings; only CONFLICT findings route.

    Returns:
        the reasons, most specific first (unknown category, knowledge conflict, new category,
        low confidence).
    """
    parsed = [f if isinstance(f, Finding) else Finding.from_dict(f) for f in findings]
    conflicts = [f for f in parsed if f.routes]
    reasons: list[RouteReason] = []
    if any(f.code in _UNKNOWN_CATEGORY_CODES for f in conflicts):
        reasons.append(RouteReason.UNKNOWN_CATEGORY)
    if any(f.code not in _OWN_REASON_CODES for f in conflicts):
        reasons.append(RouteReason.KNOWLEDGE_CONFLICT)
    if any(f.code == NEW_CATEGORY_UNCONFIRMED for f in conflicts):
        reasons.append(RouteReason.NEW_CATEGORY)
    if confidence < threshold:
        reasons.append(RouteReason.LOW_CONFIDENCE)
    return RouteDecision(reasons=tuple(reasons))
