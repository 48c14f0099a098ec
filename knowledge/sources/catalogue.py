"""Source: a catalogue CSV (id,title,master_category,sub_category,article_type,...) -> tree, brands, rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from classifier.fusion.knowledge import KnowledgeSnapshot, snapshot_from_catalogue


class SourceError(ValueError):
    """The source file cannot be read; the message names the file and, where known, the line."""


def catalogue_read(path: str | Path, *, splits: tuple[str, ...] = ()) -> KnowledgeSnapshot:
    """Categories from the rows' paths, brands from the titles, audience rules (see the fusion miner)."""
    try:
        return snapshot_from_catalogue(path, splits=splits)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except (OSError, KeyError, ValueError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc


def catalogue_import(*, path: str | Path, splits: tuple[str, ...] = (), actor: Any = None) -> dict[str, int]:
    """Read the catalogue and upsert it into the tables (additive; publish separately)."""
    from knowledge.services import graph_import_snapshot

    snapshot = catalogue_read(path, splits=splits)
    return graph_import_snapshot(snapshot=snapshot, actor=actor, reason=f"imported from {Path(path).name}")
