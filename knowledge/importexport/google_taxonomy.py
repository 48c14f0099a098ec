"""Source: Google's product taxonomy text format.

::

    # Google_Product_Taxonomy_Version: 2021-09-21
    Apparel & Accessories
    Apparel & Accessories > Clothing
    1604 - Apparel & Accessories > Clothing      (the id-prefixed variant)

Every line is a full path; parents may be implied. The taxonomy's numeric ids are kept as
aliases-free metadata (not stored); names are the path parts.
"""

from __future__ import annotations

import re
from pathlib import Path

from classifier.fusion.knowledge import PATH_SEP, CategoryNode, KnowledgeSnapshot
from knowledge.importexport.catalogue import SourceError
from knowledge.importexport.services import graph_import_snapshot
from knowledge.ports import Actor

_ID_PREFIX = re.compile(r"^(\d+)\s+-\s+(.*)$")
_HEADER = re.compile(r"^#?\s*Google_Product_Taxonomy_Version:\s*(.+)$", re.IGNORECASE)


def google_taxonomy_parse(data: bytes | str, *, root: str | None = None) -> KnowledgeSnapshot:
    """Parse the text into a snapshot of categories (optionally all under one `root` node)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            bad_line = data[: exc.start].count(b"\n") + 1
            raise SourceError(f"line {bad_line}: not valid UTF-8.") from None
    else:
        text = data
    version = ""
    nodes: dict[str, CategoryNode] = {}
    prefix = [root] if root else []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        header = _HEADER.match(line)
        if header:
            version = header.group(1).strip()
            continue
        if line.startswith("#"):
            continue
        match = _ID_PREFIX.match(line)
        if match:
            line = match.group(2)
        parts = [p.strip() for p in line.split(">")]
        if any(not p for p in parts):
            raise SourceError(f"line {number}: empty level in {raw.strip()!r}.")
        if any(len(p) > 120 for p in parts):
            raise SourceError(f"line {number}: a level is longer than 120 characters.")
        parts = prefix + parts
        parent = None
        for depth in range(len(parts)):
            cid = PATH_SEP.join(parts[: depth + 1])
            if cid not in nodes:
                nodes[cid] = CategoryNode(cid, parts[depth], parent)
            parent = cid
    if not nodes:
        raise SourceError("No category lines found (expected 'A > B > C' lines).")
    return KnowledgeSnapshot(
        version=0,
        categories=tuple(nodes.values()),
        brands=(),
        meta=(("source", "google_product_taxonomy"), ("taxonomy_version", version)),
    )


def google_taxonomy_import(
    *, data: bytes | str | Path, root: str | None = None, actor: Actor = None
) -> dict[str, object]:
    if isinstance(data, Path):
        data = data.read_bytes()
    snapshot = google_taxonomy_parse(data, root=root)
    return graph_import_snapshot(snapshot=snapshot, actor=actor, reason="Google product taxonomy import")
