"""Signals the knowledge app sends; receivers live in the apps that depend on it."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the publish transaction, after the new `KnowledgeVersion` row and before the entity
# cache is written, with `version` (the row), `snapshot` (the KnowledgeSnapshot) and `row_ids`
# (its label -> row id map). A receiver's exception rolls the publish back. The classifier app
# records and queues the re-route of its review queue here.
snapshot_published = Signal()
