"""The entity cache: the published knowledge snapshot as workers see it.

Workers call `snapshot_version_current()` (cheap) before each batch and fetch the snapshot
only when the version moved. Backed by Django's cache (Redis in deployments, in-process in
the demo), with the database as the source of truth when the cache is empty or down.
"""

from __future__ import annotations

import logging

from django.core.cache import cache as django_cache

from classifier.fusion.knowledge import KnowledgeSnapshot

log = logging.getLogger(__name__)

VERSION_KEY = "knowledge:snapshot:version"
SNAPSHOT_KEY = "knowledge:snapshot:{version}"


def snapshot_store(snapshot: KnowledgeSnapshot) -> None:
    """Write the snapshot first, then the version pointer, so readers never see a dangling version."""
    try:
        django_cache.set(SNAPSHOT_KEY.format(version=snapshot.version), snapshot.to_json(), timeout=None)
        django_cache.set(VERSION_KEY, snapshot.version, timeout=None)
    except Exception:  # the database keeps the version; readers fall back to it
        log.exception("could not store knowledge snapshot v%s in the cache", snapshot.version)


def snapshot_version_current() -> int:
    """The version in force (0 when nothing was ever published)."""
    try:
        version = django_cache.get(VERSION_KEY)
    except Exception:
        log.warning("entity cache unreachable; reading the knowledge version from the database")
        version = None
    if version is None:
        from knowledge.selectors import knowledge_version_latest

        latest = knowledge_version_latest()
        version = latest.number if latest else 0
    return int(version)


def snapshot_current() -> KnowledgeSnapshot | None:
    """The published snapshot in force, or None when nothing was published yet."""
    version = snapshot_version_current()
    if version == 0:
        return None
    try:
        raw = django_cache.get(SNAPSHOT_KEY.format(version=version))
    except Exception:
        raw = None
    if raw is not None:
        return KnowledgeSnapshot.from_json(raw)
    from knowledge.models import KnowledgeVersion

    row = KnowledgeVersion.objects.filter(number=version).first()
    if row is None:
        return None
    snapshot = KnowledgeSnapshot.from_dict(row.snapshot)
    snapshot_store(snapshot)
    return snapshot
