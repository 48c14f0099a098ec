"""Source: brands and their aliases as CSV.

Format (UTF-8, header required)::

    name,aliases,categories
    United Colors of Benetton,UCB|Benetton|贝纳通,Apparel > Topwear|Apparel > Bottomwear
    Puma,,Footwear > Shoes > Sports Shoes

`aliases` and `categories` hold several values separated by `|`; categories are path labels
("Apparel > Topwear > Tshirts") of existing nodes, any level.
"""

from __future__ import annotations

import csv
import io

from fusionreview.csvsafe import csv_safe, csv_unescape
from knowledge.importexport.catalogue import SourceError
from knowledge.importexport.services import BrandRowInput, brands_import_rows
from knowledge.ports import Actor
from knowledge.versions.snapshot import snapshot_build_from_db

HEADER = ("name", "aliases", "categories")
SEP = "|"
MAX_BYTES = 20 * 1024 * 1024


def brands_csv_parse(data: bytes) -> list[BrandRowInput]:
    """Rows {"line", "name", "aliases", "categories"}; a broken encoding or shape names the line."""
    if len(data) > MAX_BYTES:
        raise SourceError(
            f"The file is {len(data) // 1024 // 1024} MiB; the limit is {MAX_BYTES // 1024 // 1024} MiB."
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines: list[str] = []
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"line {number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                "save the file as UTF-8 and try again."
            ) from None
    reader = csv.reader(io.StringIO("".join(lines)))
    try:
        header = next(reader)
    except StopIteration:
        raise SourceError("The file is empty.") from None
    header = [h.strip().lower() for h in header]
    if tuple(header[:3]) != HEADER:
        raise SourceError(f"line 1: the header must be {','.join(HEADER)} (got {','.join(header)}).")
    rows: list[BrandRowInput] = []
    for fields in reader:
        number = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) > 3:
            raise SourceError(f"line {number}: {len(fields)} columns, expected 3 (quote values with commas).")
        # Undo the export's formula escaping (a leading ' before =, +, -, @): export -> import round-trips.
        fields = [csv_unescape(f) for f in [*fields, "", ""][:3]]
        name = fields[0].strip()
        if not name:
            raise SourceError(f"line {number}: the brand name is empty.")
        rows.append(
            {
                "line": number,
                "name": name,
                "aliases": [a.strip() for a in fields[1].split(SEP) if a.strip()],
                "categories": [c.strip() for c in fields[2].split(SEP) if c.strip()],
            }
        )
    return rows


def brands_csv_import(*, data: bytes, actor: Actor = None, reason: str = "") -> dict[str, int]:
    """Parse and upsert; all or nothing."""
    return brands_import_rows(actor=actor, rows=brands_csv_parse(data), reason=reason or "brands CSV import")


def brands_csv_export() -> str:
    """Every active brand in the import format."""
    snapshot = snapshot_build_from_db(version=0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for brand in sorted(snapshot.brands, key=lambda b: b.name.lower()):
        # csv_safe: a cell a spreadsheet would run as a formula (=, +, -, @, tab, CR) gets a leading '.
        writer.writerow(
            [csv_safe(v) for v in (brand.name, SEP.join(brand.aliases), SEP.join(brand.category_ids))]
        )
    return out.getvalue()
