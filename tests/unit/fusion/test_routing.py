"""The one routing rule: reasons, their order, and what never routes."""

from classifier.fusion.routing import (
    AUTO_ACCEPTED,
    NEW_CATEGORY_UNCONFIRMED,
    Finding,
    RouteReason,
    Severity,
    from_the_model,
    route,
    title_threshold,
)


def test_confident_prediction_without_conflicts_is_auto_accepted():
    decision = route(confidence=0.995, threshold=0.9, findings=[])
    assert not decision.needs_review
    assert decision.primary == AUTO_ACCEPTED


def test_below_threshold_routes_for_low_confidence():
    decision = route(confidence=0.5, threshold=0.9)
    assert decision.reasons == (RouteReason.LOW_CONFIDENCE,)


def test_hints_never_route_even_when_many():
    hints = [
        {"code": "brand_category_unseen", "message": "Puma sells Caps? seen 0 times", "severity": "hint"}
    ] * 3
    assert not route(confidence=0.99, threshold=0.9, findings=hints).needs_review


def test_legacy_warning_severity_reads_as_a_hint():
    assert Severity.parse("warning") is Severity.HINT
    assert Severity.parse("conflict") is Severity.CONFLICT


def test_reasons_are_ordered_most_specific_first():
    findings = [
        Finding("brand_category", "Puma sells only Footwear", Severity.CONFLICT),
        {"code": "unknown_category", "message": "retired", "severity": "conflict"},
    ]
    decision = route(confidence=0.2, threshold=0.9, findings=findings)
    assert decision.reasons == (
        RouteReason.UNKNOWN_CATEGORY,
        RouteReason.KNOWLEDGE_CONFLICT,
        RouteReason.LOW_CONFIDENCE,
    )
    assert decision.primary == "unknown_category"


def test_an_unconfirmed_new_category_has_its_own_reason_not_a_knowledge_conflict():
    finding = Finding(
        NEW_CATEGORY_UNCONFIRMED, "“Kurtis” was added after this model was trained", Severity.CONFLICT
    )
    decision = route(confidence=0.99, threshold=0.9, findings=[finding.to_dict()])
    assert decision.reasons == (RouteReason.NEW_CATEGORY,)
    assert decision.primary == "new_category"
    low = route(confidence=0.2, threshold=0.9, findings=[finding])
    assert low.reasons == (RouteReason.NEW_CATEGORY, RouteReason.LOW_CONFIDENCE)
    assert from_the_model(finding.to_dict())
    assert not from_the_model(
        Finding("brand_category", "Puma sells only Footwear", Severity.CONFLICT).to_dict()
    )


def test_finding_round_trips_through_its_dict():
    f = Finding("attribute", "Bra is listed for Women, not Men", Severity.CONFLICT)
    assert Finding.from_dict(f.to_dict()) == f


def test_title_threshold_is_stricter_only_for_a_title_that_names_no_type():
    assert title_threshold(0.96, 1.000001, names_type=True) == 0.96
    assert title_threshold(0.96, 1.000001, names_type=False) == 1.000001
    assert title_threshold(0.96, 0.5, names_type=False) == 0.96  # never below the review threshold
    assert title_threshold(0.96, None, names_type=False) == 0.96  # a model calibrated without one
