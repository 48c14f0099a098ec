"""Seed the knowledge graph from a catalogue CSV (categories from paths, brands from titles) and publish."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from classifier.fusion.knowledge import snapshot_from_catalogue
from knowledge.services import graph_import_snapshot, knowledge_publish


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("catalogue", help="CSV with the catalogue's columns")
        parser.add_argument("--splits", default="", help="comma-separated splits to read (default: all rows)")

    def handle(self, *args, catalogue: str, splits: str, **options) -> None:
        try:
            snapshot = snapshot_from_catalogue(catalogue, splits=tuple(s for s in splits.split(",") if s))
        except (OSError, KeyError, ValueError) as exc:
            raise CommandError(f"cannot read {catalogue}: {exc}") from exc
        created = graph_import_snapshot(snapshot=snapshot)
        version = knowledge_publish(reason=f"imported from {catalogue}")
        self.stdout.write(
            f"{created['categories']} categories and {created['brands']} brands added; published knowledge v{version.number}"
        )
