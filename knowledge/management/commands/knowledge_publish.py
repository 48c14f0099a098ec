"""Publish the pending knowledge edits as a new version (or push versions the cache missed)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from knowledge.changelog import KnowledgeError
from knowledge.versions.activation import knowledge_activation_sweep
from knowledge.versions.publish import knowledge_publish


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reason", default="")
        parser.add_argument(
            "--sweep", action="store_true", help="only push unactivated versions to the cache"
        )

    def handle(self, *args, reason: str, sweep: bool, **options) -> None:
        if sweep:
            self.stdout.write(f"pushed: {knowledge_activation_sweep()}")
            return
        try:
            version = knowledge_publish(reason=reason)
        except KnowledgeError as exc:
            raise CommandError(str(exc)) from exc
        state = "in force" if version.activated_at else "waiting for the entity cache"
        self.stdout.write(f"published knowledge v{version.number} ({state})")
