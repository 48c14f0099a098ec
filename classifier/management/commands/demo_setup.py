"""Prepare the embedded demo: knowledge graph, one user per role, the bundled sample classified."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.listings.models import Listing
from knowledge.importexport.services import graph_import_snapshot
from knowledge.models import Category
from knowledge.versions.publish import knowledge_publish

SAMPLE_CSV = Path(settings.BASE_DIR) / "fusionreview" / "demo" / "sample" / "catalogue.csv"
# The demo's knowledge graph: built from the whole `train` catalogue (every brand, its categories
# with their support, duplicate categories merged); see fusionreview/demo/sample/README.md.
DEMO_GRAPH = Path(settings.BASE_DIR) / "fusionreview" / "demo" / "sample" / "knowledge.json"
DEMO_USERS = (("auditor", "auditor"), ("ops", "ops"), ("admin", "admin"))


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--password", default="fusion-demo", help="password of the demo users")

    def handle(self, *args, password: str, **options) -> None:
        model_dir = Path(settings.FUSION_MODEL_DIR)
        snapshot_path = model_dir / "snapshot.json"
        if not (model_dir / "model.safetensors").exists():
            raise CommandError(f"no trained model in {model_dir} (set FUSION_MODEL_DIR)")
        if not Category.objects.exists():
            source = DEMO_GRAPH if DEMO_GRAPH.exists() else snapshot_path
            if not source.exists():
                raise CommandError(f"{snapshot_path} is missing: the model directory is incomplete")
            snapshot = KnowledgeSnapshot.from_dict(json.loads(source.read_text(encoding="utf-8")))
            created = graph_import_snapshot(snapshot=snapshot, relation_source="mined")
            version = knowledge_publish(reason=f"demo: knowledge graph from {source.name}")
            self.stdout.write(
                f"knowledge graph: {created['categories']} categories, {created['brands']} brands, "
                f"{created['relations']} relations with their support (v{version.number})"
            )
            for merged, into, why in created.get("merges", []):
                self.stdout.write(f"  merged {merged} into {into}: {why}")

        for username, role in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.save()
            user.groups.add(Group.objects.get(name=role))
            if role == "admin":
                user.is_staff = True
                user.save(update_fields=["is_staff"])

        if not Listing.objects.filter(source="demo").exists():
            call_command("import_catalogue", str(SAMPLE_CSV), source="demo", stdout=self.stdout)

        counts = {s.label: Listing.objects.filter(status=s.value).count() for s in Listing.Status}
        self.stdout.write(
            "listings: " + ", ".join(f"{n} {label.lower()}" for label, n in counts.items() if n)
        )
        self.stdout.write(self.style.SUCCESS(f"\nDemo users (password: {password}):"))
        for username, role in DEMO_USERS:
            self.stdout.write(f"  {username:<8} role {role}")
