"""Pure helpers of the review page: title highlighting, top-k rows, findings, priority, charts."""

from datetime import UTC, datetime

from classifier.review.display import labels_key_from
from classifier.review.item import findings_in_words, title_segments, top_k_rows
from classifier.review.services import review_priority
from classifier.review.stats import svg_bars


def test_title_segments_cover_the_title_and_drop_bad_or_overlapping_spans():
    title = "小米米家智能空气炸锅3.5L家用"
    ents = [
        {"text": "小米", "type": "brand", "start": 0, "end": 2, "weight": 1.0},
        {"text": "米家", "type": "brand", "start": 1, "end": 4},  # overlaps: dropped
        {"text": "空气炸锅", "type": "product_type", "start": 6, "end": 10},
        {"text": "x", "type": "colour", "start": 40, "end": 44},  # out of range: dropped
        {"type": "material", "start": "a", "end": 3},  # not numbers: dropped
        "junk",
    ]
    segs = title_segments(title, ents)
    assert "".join(s.text for s in segs) == title
    assert [(s.text, s.entity_type) for s in segs if s.entity_type] == [
        ("小米", "brand"),
        ("空气炸锅", "product_type"),
    ]


def test_entity_type_becomes_a_safe_class_name():
    segs = title_segments("cotton tee", [{"start": 0, "end": 6, "type": 'x" onmouseover="evil'}])
    assert segs[0].entity_type == "xonmouseoverevil"


def test_top_k_rows_are_percentages_per_level_and_tolerate_odd_shapes():
    rows = top_k_rows(
        {"master": [["Apparel", 0.91], ["Footwear", 0.05]], "sub": [["Topwear"]], "article": "nope"}
    )
    assert [r["level"] for r in rows] == ["master", "sub", "article"]
    assert rows[0]["options"] == [{"name": "Apparel", "pct": 91.0}, {"name": "Footwear", "pct": 5.0}]
    assert rows[1]["options"] == [] and rows[2]["options"] == []
    assert top_k_rows(None)[0]["options"] == []


def test_findings_are_worded_and_unknown_severities_become_info():
    out = findings_in_words(
        [
            {"code": "brand_category", "message": "Nike does not sell Sarees", "severity": "conflict"},
            {"code": "x", "severity": "<b>"},
            3,
        ]
    )
    assert out[0]["message"] == "Nike does not sell Sarees" and out[0]["severity"] == "conflict"
    assert out[1] == {"code": "x", "message": "x", "severity": "info"}


def test_priority_rises_with_uncertainty_and_conflicts():
    assert review_priority(confidence=0.2, reasons=["low_confidence"]) > review_priority(
        confidence=0.6, reasons=["low_confidence"]
    )
    assert review_priority(confidence=0.9, reasons=["knowledge_conflict"]) > review_priority(
        confidence=0.5, reasons=["low_confidence"]
    )
    assert review_priority(confidence=7, reasons=[]) == 0.0


def test_svg_bars_scale_to_the_largest_value():
    chart = svg_bars([0, 5, 10], width=300, height=120)
    heights = [b["h"] for b in chart["bars"]]
    assert heights[0] == 0 and heights[2] == chart["plot_h"] and heights[1] == chart["plot_h"] / 2
    assert svg_bars([])["bars"] == []


def test_labels_key_reads_the_stamp_from_postgresql_and_sqlite_alike():
    # PostgreSQL's driver gives a datetime, SQLite's (the demo database) the same moment as text.
    when = datetime(2026, 11, 30, 14, 4, 25, 822000, tzinfo=UTC)
    from_postgres = labels_key_from(146, 146, when)
    from_sqlite = labels_key_from(146, 146, "2026-11-30 14:04:25.822000")
    assert " " not in from_postgres and " " not in from_sqlite
    assert from_sqlite != labels_key_from(146, 146, "2026-11-30 14:04:26.000000")  # an edit changes it
    assert labels_key_from(0, None, None).endswith(":0:None:0")  # no categories yet


def test_stored_route_reasons_are_the_routers_reasons_plus_auto_accepted():
    from classifier.fusion.routing import AUTO_ACCEPTED, RouteReason
    from classifier.listings.models import RouteReasonChoice

    assert set(RouteReasonChoice.values) == {r.value for r in RouteReason} | {AUTO_ACCEPTED}
