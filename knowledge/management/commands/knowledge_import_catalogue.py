"""Seed the knowledge graph from a catalogue CSV (categories from paths, brands from titles) and publish.

Every brand seen in the rows is imported with the categories it sells and the number of listings
behind each relation; categories that mean one thing under two names are merged, and each merge
is printed. `--out FILE` writes the graph as JSON (the snapshot format) instead of importing it.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from knowledge.changelog import KnowledgeError
from knowledge.importexport.catalogue import SourceError, catalogue_import, catalogue_read
from knowledge.versions.publish import knowledge_publish


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("catalogue", help="CSV with the catalogue's columns")
        parser.add_argument("--splits", default="", help="comma-separated splits to read (default: all rows)")
        parser.add_argument("--no-publish", action="store_true", help="leave the import pending")
        parser.add_argument(
            "--keep-duplicates", action="store_true", help="do not merge categories that mean the same thing"
        )
        parser.add_argument(
            "--out", default="", help="write the graph to this JSON file instead of importing"
        )

    def handle(
        self, *args, catalogue: str, splits: str, no_publish: bool, keep_duplicates: bool, out: str, **options
    ) -> None:
        wanted = tuple(s for s in splits.split(",") if s)
        try:
            if out:
                snapshot = catalogue_read(catalogue, splits=wanted, merge_duplicates=not keep_duplicates)
                snapshot.save(out)
                merges = json.loads(dict(snapshot.meta).get("merge_report") or "[]")
                created = {
                    "categories": len(snapshot.categories),
                    "brands": len(snapshot.brands),
                    "merges": merges,
                }
            else:
                created = catalogue_import(
                    path=catalogue, splits=wanted, merge_duplicates=not keep_duplicates
                )
        except (SourceError, KnowledgeError) as exc:
            raise CommandError(str(exc)) from exc
        for source, target, why in created.get("merges", []):
            self.stdout.write(f"merged {source} into {target}: {why}")
        if out:
            self.stdout.write(
                f"{created['categories']} categories and {created['brands']} brands written to {out}"
            )
            return
        msg = (
            f"{created['categories']} categories, {created['brands']} brands and "
            f"{created.get('relations', 0)} brand-category relations added"
        )
        if not no_publish:
            version = knowledge_publish(reason=f"imported from {catalogue}")
            msg += f"; published knowledge v{version.number}"
        self.stdout.write(msg)
