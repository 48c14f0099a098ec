"""One page of a list (the editor's brand, category and change lists, and the API's envelopes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

Row = TypeVar("Row")


@dataclass
class Page(Generic[Row]):
    """One page of a search: the rows, the total number of matches and how they matched."""

    rows: list[Row]
    total: int
    number: int
    size: int
    match: str = "all"  # "all" (no query), "prefix" (name/alias starts with it) or "contains"

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def previous_number(self) -> int:
        return self.number - 1

    @property
    def next_number(self) -> int:
        return self.number + 1

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return min(self.total, self.number * self.size)


def page_bounds(number: int, size: int, total: int) -> int:
    """The page number clamped to the pages that exist (a stale link to page 900 shows the last)."""
    last = max(1, -(-total // size))
    return max(1, min(number, last))
