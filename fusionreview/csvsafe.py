"""CSV cells that a spreadsheet will not run as formulas (CSV/formula injection).

Excel, LibreOffice and Google Sheets treat a cell starting with `=`, `+`, `-`, `@`, a tab or a
carriage return as a formula (`=HYPERLINK(...)`, `@SUM(...)`, DDE payloads). OWASP's advice:
prefix such a cell with a single quote, which the spreadsheet shows as text and hides.
`csv_unescape` undoes it for a file that comes back for import.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# A value that itself starts with the quote is quoted too, so that csv_unescape(csv_safe(v)) == v for
# every text (a brand named "'=x" exports as "''=x" and imports as "'=x").
_ESCAPED_STARTS = (*FORMULA_STARTS, "'")


def csv_safe(value: Any) -> Any:
    """`value` with a leading `'` when a spreadsheet would read it as a formula; non-text as is."""
    if isinstance(value, str) and value.startswith(_ESCAPED_STARTS):
        return "'" + value
    return value


def csv_unescape(value: str) -> str:
    """The value `csv_safe` was given: one leading `'` before a formula start (or a quote) is removed.

    A cell written by hand with a single leading quote before ordinary text ("'Brand") is kept.
    """
    if value.startswith("'") and value[1:].startswith(_ESCAPED_STARTS):
        return value[1:]
    return value
