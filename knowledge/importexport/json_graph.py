"""Source and export: the whole graph as JSON (the snapshot format, plus a format marker)."""

from __future__ import annotations

import json

from classifier.fusion.knowledge import KnowledgeSnapshot
from knowledge.changelog import knowledge_version_latest
from knowledge.importexport.catalogue import SourceError
from knowledge.versions.snapshot import snapshot_build_from_db

FORMAT = "fusionreview.knowledge/1"


def graph_export() -> dict[str, object]:
    """The current tables (published or not) as a JSON-ready dict."""
    latest = knowledge_version_latest()
    snapshot = snapshot_build_from_db(version=latest.number if latest else 0)
    return {"format": FORMAT, "published_version": latest.number if latest else 0, **snapshot.to_dict()}


def graph_export_json() -> str:
    return json.dumps(graph_export(), ensure_ascii=False, indent=1, sort_keys=True)


def graph_json_parse(data: bytes | str) -> KnowledgeSnapshot:
    try:
        payload = json.loads(data)
    except UnicodeDecodeError:
        raise SourceError("The file is not UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"line {exc.lineno}: not valid JSON ({exc.msg}).") from None
    if not isinstance(payload, dict) or "categories" not in payload:
        raise SourceError("Not a knowledge graph export (no 'categories').")
    try:
        return KnowledgeSnapshot.from_dict({**payload, "version": payload.get("version", 0)})
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"Malformed graph export: {exc}") from None
