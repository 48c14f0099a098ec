"""Import listings from a catalogue CSV (+ images next to it) and queue them for classification.

    manage.py import_catalogue ../shared/data/fashion/catalogue.csv --splits test --limit 200

Every row goes through `listing_ingest` (the same validation as the API). A malformed row
(missing column, empty title, missing or corrupt image, bad encoding) is reported by its line
number at the end; the other rows are imported. Re-running is safe: identical rows are
recognised and skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from classifier.listings.services import listing_classification_dispatch, listing_ingest
from classifier.listings.validation import ListingRejected

REQUIRED = ("id", "title", "image")
ATTRIBUTE_COLUMNS = ("gender", "base_colour", "season", "year", "usage")
MISSING_VALUES = {"", "na", "nan", "none", "null"}


def _has_bad_encoding(row: dict[str, Any]) -> bool:
    for value in row.values():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # surrogate-escaped bytes that were not UTF-8
                return True
    return False


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("catalogue", help="catalogue.csv; image paths are relative to its folder")
        parser.add_argument("--source", default="catalogue", help="source name stored on each listing")
        parser.add_argument("--limit", type=int, default=0, help="import at most N rows (after --splits)")
        parser.add_argument("--splits", default="", help="comma-separated splits to import (default: all)")
        parser.add_argument(
            "--no-classify", action="store_true", help="import only; do not queue classification"
        )
        parser.add_argument("--batch-size", type=int, default=0, help="ids per classification task")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, catalogue: str, source: str, limit: int, splits: str, **options) -> None:
        path = Path(catalogue)
        if not path.is_file():
            raise CommandError(f"{path} does not exist")
        base = path.parent
        wanted_splits = {s.strip() for s in splits.split(",") if s.strip()}
        batch_size = options["batch_size"] or settings.INFERENCE_BATCH_SIZE
        classify = not options["no_classify"]

        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            total_lines = max(0, sum(1 for _ in handle) - 1)
            handle.seek(0)
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise CommandError(f"{path}: header lacks required column(s) {', '.join(missing)}")
            counts = {"created": 0, "existing": 0, "rejected": 0}
            problems: list[tuple[int, str]] = []
            pending: list[int] = []
            seen = 0
            bar = tqdm(total=limit or total_lines, unit="row", disable=options["no_progress"], desc="import")
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    problems.append((reader.line_num, f"unreadable CSV row ({exc})"))
                    continue
                line = reader.line_num
                if wanted_splits and (row.get("split") or "").strip() not in wanted_splits:
                    continue
                seen += 1
                bar.update(1)
                problem = self._import_row(
                    row, line=line, base=base, source=source, counts=counts, pending=pending
                )
                if problem:
                    problems.append((line, problem))
                    counts["rejected"] += 1
                if classify and len(pending) >= batch_size:
                    listing_classification_dispatch(listing_ids=pending[:batch_size])
                    del pending[:batch_size]
                if limit and seen >= limit:
                    break
            bar.close()
        if classify and pending:
            listing_classification_dispatch(listing_ids=pending)

        self.stdout.write(
            f"{counts['created']} listings imported, {counts['existing']} already present, "
            f"{counts['rejected']} rows rejected"
            + (f"; classification queued in batches of {batch_size}" if classify else "")
        )
        if problems:
            self.stdout.write(f"Rejected rows in {path}:")
            for line, message in problems:
                self.stdout.write(f"  line {line}: {message}")

    def _import_row(
        self,
        row: dict[str, Any],
        *,
        line: int,
        base: Path,
        source: str,
        counts: dict[str, int],
        pending: list[int],
    ) -> str | None:
        if None in row:  # DictReader puts surplus fields under the None key
            return f"{len(row[None])} more field(s) than the header"
        if _has_bad_encoding(row):
            return "not valid UTF-8 (check the file's encoding)"
        absent = [c for c in REQUIRED if row.get(c) is None]
        if absent:
            return f"missing column(s) {', '.join(absent)}"
        external_id = row["id"].strip()
        image_rel = row["image"].strip()
        if not image_rel:
            return "image: no image path"
        image_path = (base / image_rel).resolve()
        if base.resolve() not in image_path.parents:
            return f"image: {image_rel} is outside the catalogue folder"
        try:
            data = image_path.read_bytes()
        except OSError:
            return f"image: {image_rel} not found"
        attributes = {
            name: row[name].strip()
            for name in ATTRIBUTE_COLUMNS
            if row.get(name) is not None and row[name].strip().lower() not in MISSING_VALUES
        }
        try:
            listing, created = listing_ingest(
                source=source,
                external_id=external_id,
                title=row["title"],
                description=(row.get("description") or ""),
                attributes=attributes,
                image_file=data,
                actor=None,
                dispatch=False,
            )
        except ListingRejected as exc:
            return exc.message
        if created:
            counts["created"] += 1
            pending.append(listing.pk)
        else:
            counts["existing"] += 1
        return None
