"""Source: a catalogue CSV (id,title,master_category,sub_category,article_type,...) -> tree, brands, rules."""

from __future__ import annotations

from pathlib import Path

from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
from classifier.fusion.knowledge import KnowledgeSnapshot
from knowledge.importexport.services import graph_import_snapshot
from knowledge.models import BrandCategory
from knowledge.ports import Actor


class SourceError(ValueError):
    """The source file cannot be read; the message names the file and, where known, the line."""


def catalogue_read(
    path: str | Path, *, splits: tuple[str, ...] = (), merge_duplicates: bool = True
) -> KnowledgeSnapshot:
    """Categories from the rows' paths, brands from the titles with the support of each relation
    (listings behind it), audience rules; categories that mean one thing under two names merged
    and reported in ``meta["merge_report"]`` (see the fusion miner)."""
    try:
        return snapshot_from_catalogue(path, splits=splits, merge_duplicates=merge_duplicates)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except (OSError, KeyError, ValueError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc


def catalogue_import(
    *, path: str | Path, splits: tuple[str, ...] = (), actor: Actor = None, merge_duplicates: bool = True
) -> dict[str, object]:
    """Read the catalogue and upsert it into the tables (additive; publish separately).

    Relations are marked as mined from the catalogue; the result lists the merges.
    """
    snapshot = catalogue_read(path, splits=splits, merge_duplicates=merge_duplicates)
    return graph_import_snapshot(
        snapshot=snapshot,
        actor=actor,
        reason=f"imported from {Path(path).name}",
        relation_source=BrandCategory.Source.MINED,
    )
