"""Seed the knowledge graph from a catalogue CSV (categories from paths, brands from titles) and publish."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from knowledge.services import knowledge_publish
from knowledge.sources.catalogue import SourceError, catalogue_import


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("catalogue", help="CSV with the catalogue's columns")
        parser.add_argument("--splits", default="", help="comma-separated splits to read (default: all rows)")
        parser.add_argument("--no-publish", action="store_true", help="leave the import pending")

    def handle(self, *args, catalogue: str, splits: str, no_publish: bool, **options) -> None:
        try:
            created = catalogue_import(path=catalogue, splits=tuple(s for s in splits.split(",") if s))
        except SourceError as exc:
            raise CommandError(str(exc)) from exc
        msg = f"{created['categories']} categories and {created['brands']} brands added"
        if not no_publish:
            version = knowledge_publish(reason=f"imported from {catalogue}")
            msg += f"; published knowledge v{version.number}"
        self.stdout.write(msg)
