"""Export the whole knowledge graph as JSON (or the brands as CSV) to a file or stdout."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from knowledge.importexport.brands_csv import brands_csv_export
from knowledge.importexport.json_graph import graph_export_json


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--format", choices=["json", "brands-csv"], default="json")
        parser.add_argument("--output", "-o", default="-", help="file path, '-' for stdout")

    def handle(self, *args, format: str, output: str, **options) -> None:
        text = graph_export_json() if format == "json" else brands_csv_export()
        if output == "-":
            self.stdout.write(text)
        else:
            Path(output).write_text(text, encoding="utf-8")
            self.stdout.write(f"wrote {output}")
