"""Structured (JSON) logs that carry the listing id.

`LOG_FORMAT=json` (the compose default) writes one JSON object per line:

    {"ts": "...", "level": "INFO", "logger": "classifier.listings.tasks", "message": "...",
     "listing_ids": [12, 13], "task": "classifier.tasks.classify_listings", "task_id": "..."}

The ids come from two places: a context bound for the duration of a Celery task or an API
request (`bind_context`), and `extra={...}` on the logging call itself
(`log.info("accepted", extra={"listing_id": listing.pk})`).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_context: ContextVar[dict[str, Any] | None] = ContextVar("fusionreview_log_context", default=None)

# `extra=` keys copied into the JSON line when present on a record.
EXTRA_KEYS = ("listing_id", "listing_ids", "task", "task_id", "request_id", "path", "status", "duration_ms")
_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def bind_context(**values: Any) -> None:
    """Attach values (listing_ids, task, ...) to every log line of the current task/request."""
    current = dict(_context.get() or {})
    current.update({k: v for k, v in values.items() if v not in (None, "", [])})
    _context.set(current)


def clear_context() -> None:
    _context.set(None)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


class JsonFormatter(logging.Formatter):
    """One JSON object per line; context and `extra=` fields as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(current_context())
        for key, value in vars(record).items():
            if (
                key not in _RESERVED
                and not key.startswith("_")
                and (key in EXTRA_KEYS or key.startswith("fr_"))
            ):
                line[key.removeprefix("fr_")] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ContextTextFormatter(logging.Formatter):
    """The plain format, with the bound listing ids appended when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = current_context()
        ids = getattr(record, "listing_id", None) or getattr(record, "listing_ids", None)
        ids = ids or context.get("listing_ids")
        return f"{text} [listing {ids}]" if ids else text
