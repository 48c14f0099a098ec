"""CSV formula escaping is undone exactly on import (issue 13, fault 8)."""

from __future__ import annotations

import pytest

from fusionreview.csvsafe import FORMULA_STARTS, csv_safe, csv_unescape

VALUES = [
    "Plain",
    "=Cool",
    "+Plus",
    "-Minus",
    "@At",
    "\tTab",
    "\rCR",
    "'=Quoted",
    "''=Twice",
    "'",
    "''",
    "O'Neill",
    "'Neill",
    "",
    "=",
]


@pytest.mark.parametrize("value", VALUES)
def test_unescape_inverts_escape(value):
    escaped = csv_safe(value)
    assert not escaped.startswith(FORMULA_STARTS)
    assert csv_unescape(escaped) == value


def test_a_hand_written_leading_quote_before_text_is_kept():
    assert csv_unescape("'Brand") == "'Brand"
    assert csv_safe("Brand") == "Brand" and csv_safe(3) == 3
