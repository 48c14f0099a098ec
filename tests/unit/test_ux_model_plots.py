"""The version page's plot data: confusion counts, risk-coverage and short category names (pure logic)."""

from __future__ import annotations

import pytest

from classifier.registry.plots import (
    confusion_matrix_data,
    confusion_png,
    history_png,
    risk_coverage_data,
    risk_coverage_png,
    short_category_names,
)

A, B, C = "Men > Topwear > Tshirts", "Women > Topwear > Tshirts", "Men > Bottomwear > Jeans"


def test_confusion_counts_rows_by_truth_and_folds_the_rest_into_other():
    items = [[A, A, 0.9, False], [A, B, 0.6, True], [B, B, 0.8, False], [C, "Unknown > X > Y", 0.4, True]]
    data = confusion_matrix_data(items, top=2)
    assert data["labels"] == [A, B]
    index = {label: i for i, label in enumerate(data["labels"])}
    assert data["counts"][index[A]][index[A]] == 1 and data["counts"][index[A]][index[B]] == 1
    assert sum(map(sum, data["counts"])) == len(items)  # nothing lost: the rest is in "(other)"
    assert data["counts"][-1][-1] == 1


def test_risk_coverage_ranks_by_confidence_and_marks_the_threshold_point():
    items = [[A, A, 0.99, False], [A, A, 0.95, False], [A, B, 0.90, False], [B, C, 0.30, True]]
    data = risk_coverage_data(items)
    assert data["coverage"] == [0.25, 0.5, 0.75, 1.0]
    assert data["risk"] == pytest.approx([0.0, 0.0, 1 / 3, 0.5])
    assert data["operating_point"] == pytest.approx((0.75, 1 / 3))  # three auto-accepted, one wrong


def test_short_names_keep_the_parent_only_where_a_leaf_name_repeats():
    assert short_category_names([A, B, C]) == {A: A, B: B, C: "Jeans"}
    assert short_category_names(["X > Shoes > Flats", "Y > Heels > Flats"]) == {
        "X > Shoes > Flats": "Shoes > Flats",
        "Y > Heels > Flats": "Heels > Flats",
    }


def test_the_plots_are_pngs():
    items = [[A, A, 0.9, False], [B, A, 0.5, True], [C, C, 0.8, False]]
    for png in (
        confusion_png(items, title="t"),
        risk_coverage_png(items, title="t", threshold=0.8),
        history_png(
            [{"name": "v1", "accuracy": {"master": 1, "sub": 0.9, "article": 0.8}, "promoted": True}],
            current="v1",
            title="t",
        ),
    ):
        assert png.startswith(b"\x89PNG")
