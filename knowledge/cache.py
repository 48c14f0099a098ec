"""The entity cache: the published knowledge snapshot as workers see it.

Workers call `snapshot_version_current()` before each batch (one cache GET) and fetch the
snapshot only when the version moved. Backed by Django's cache (Redis in deployments,
in-process in the demo). The database row (`KnowledgeVersion`) is the source of truth; a
version is *in force* once the cache holds it (`activated_at` set). When the cache is empty
or unreachable, readers fall back to the newest activated version in the database.

Write order matters: the snapshot body first, the version pointer second, so a reader never
sees a pointer to a body that is not there; a failure between the two leaves the pointer on
the previous version (nothing half-applied).
"""

from __future__ import annotations

import contextlib
import logging
import threading

from django.core.cache import cache as django_cache

from classifier.fusion.knowledge import KnowledgeSnapshot

log = logging.getLogger(__name__)

VERSION_KEY = "knowledge:snapshot:version"
SNAPSHOT_KEY = "knowledge:snapshot:{version}"

# Per-process memo of the last parsed snapshot: parsing 100k brands is not free, and every
# batch asks for the same version until a publish moves it.
_memo_lock = threading.Lock()
_memo: tuple[int, KnowledgeSnapshot] | None = None


class CacheUnavailable(RuntimeError):
    """The entity cache refused a write; the previous snapshot stays in force."""


def snapshot_store(
    snapshot: KnowledgeSnapshot, *, raw: str | None = None, raise_errors: bool = False
) -> bool:
    """Put `snapshot` in the cache and point the version at it. Returns False when the cache failed.

    `raw` is the snapshot's JSON when the caller already has it (it is 20 MiB at 100k brands).
    The pointer never moves backwards: a late retry of an older version leaves a newer one in force.
    """
    try:
        body = raw if raw is not None else snapshot.to_json()
        django_cache.set(SNAPSHOT_KEY.format(version=snapshot.version), body, timeout=None)
        current = django_cache.get(VERSION_KEY)
        if current is None or int(current) < snapshot.version:
            django_cache.set(VERSION_KEY, snapshot.version, timeout=None)
    except Exception as exc:
        log.warning("could not store knowledge snapshot v%s in the entity cache: %s", snapshot.version, exc)
        if raise_errors:
            raise CacheUnavailable(str(exc)) from exc
        return False
    return True


def _version_from_db() -> int:
    from knowledge.models import KnowledgeVersion

    number = (
        KnowledgeVersion.objects.filter(activated_at__isnull=False)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )
    return int(number or 0)


def snapshot_version_current() -> int:
    """The version in force (0 when nothing was ever published): one cache GET in the common case."""
    try:
        version = django_cache.get(VERSION_KEY)
    except Exception:
        log.warning("entity cache unreachable; reading the knowledge version from the database")
        version = None
    if version is None:
        version = _version_from_db()
    return int(version)


def snapshot_current() -> KnowledgeSnapshot | None:
    """The published snapshot in force, or None when nothing was published yet."""
    global _memo
    version = snapshot_version_current()
    if version == 0:
        return None
    memo = _memo
    if memo is not None and memo[0] == version:
        return memo[1]
    snapshot = snapshot_by_version(version)
    if snapshot is not None:
        with _memo_lock:
            _memo = (version, snapshot)
    return snapshot


def snapshot_by_version(version: int) -> KnowledgeSnapshot | None:
    """One published snapshot, from the cache or else from its database row (re-filling the cache)."""
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
    # The database answered; if the cache refuses the refill, a later read tries again.
    with contextlib.suppress(Exception):
        django_cache.set(SNAPSHOT_KEY.format(version=version), snapshot.to_json(), timeout=None)
    return snapshot


def memo_clear() -> None:
    """Forget the per-process parsed snapshot (tests)."""
    global _memo
    with _memo_lock:
        _memo = None
