"""CSV cells that a spreadsheet will not run as formulas (CSV/formula injection).

Excel, LibreOffice and Google Sheets treat a cell starting with `=`, `+`, `-`, `@`, a tab or a
carriage return as a formula (`=HYPERLINK(...)`, `@SUM(...)`, DDE payloads). OWASP's advice:
prefix such a cell with a single quote, which the spreadsheet shows as text and hides.
`csv_unescape` undoes it for a file that comes back for import.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """`value` with a leading `'` when a spreadsheet would read it as a formula; non-text as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_unescape(value: str) -> str:
    """The value `csv_safe` was given (a leading `'` before a formula start is removed)."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value
