"""Import a knowledge source: brands CSV (name,aliases,categories), Google product taxonomy, or a JSON export."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from knowledge.changelog import KnowledgeError
from knowledge.importexport.brands_csv import brands_csv_import
from knowledge.importexport.catalogue import SourceError
from knowledge.importexport.google_taxonomy import google_taxonomy_import
from knowledge.importexport.json_graph import graph_json_parse
from knowledge.importexport.services import graph_import_snapshot
from knowledge.versions.publish import knowledge_publish


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("kind", choices=["brands-csv", "google-taxonomy", "json"])
        parser.add_argument("path")
        parser.add_argument("--root", default=None, help="google-taxonomy: put the tree under this node")
        parser.add_argument("--publish", default="", help="publish afterwards with this reason")

    def handle(self, *args, kind: str, path: str, root: str | None, publish: str, **options) -> None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            if kind == "brands-csv":
                result = brands_csv_import(data=data, reason=f"imported from {path}")
            elif kind == "google-taxonomy":
                result = google_taxonomy_import(data=data, root=root)
            else:
                result = graph_import_snapshot(
                    snapshot=graph_json_parse(data), reason=f"imported from {path}"
                )
        except (SourceError, KnowledgeError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        self.stdout.write(f"imported: {result}")
        if publish:
            version = knowledge_publish(reason=publish)
            self.stdout.write(f"published knowledge v{version.number}")
