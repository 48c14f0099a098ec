"""Publish, discard, restore: the pending edits become a numbered version, or are thrown away.

`knowledge_publish` freezes the tables into a new `KnowledgeVersion`, tells the apps that depend
on the graph (`knowledge.signals.snapshot_published`: the classifier re-routes its review queue)
and hands the snapshot to the workers through the entity cache.
"""

from __future__ import annotations

import hashlib
import json
import logging

from django.conf import settings
from django.db import connection, transaction
from django.db.models.expressions import RawSQL

from classifier.fusion.knowledge import KnowledgeSnapshot
from fusionreview.dispatch import task_publish
from knowledge.changelog import KnowledgeError, actor_user, change_record, knowledge_version_latest
from knowledge.models import ChangeLog, KnowledgeVersion
from knowledge.ports import Actor
from knowledge.signals import snapshot_published
from knowledge.versions.activation import snapshot_push
from knowledge.versions.restore import graph_restore_snapshot
from knowledge.versions.snapshot import snapshot_as_dict, snapshot_build_with_ids
from knowledge.versions.tasks import knowledge_snapshot_push

log = logging.getLogger(__name__)


def knowledge_publish(*, actor: Actor = None, reason: str) -> KnowledgeVersion:
    """Freeze the current graph into a new numbered snapshot and hand it to the workers.

    The row is committed first (the source of truth), then the entity cache is written. If the
    cache is down, the previous snapshot stays in force and a `default`-queue task retries the
    push (and the periodic sweep catches it if even the broker was down).
    """
    reason = (reason or "").strip()
    if not reason:
        raise KnowledgeError("Say why you publish (it goes into the version history).")
    with transaction.atomic():
        # Serialise publishers: two at once would race for the same number.
        numbers = list(
            KnowledgeVersion.objects.select_for_update()
            .order_by("-number")
            .values_list("number", flat=True)[:1]
        )
        number = (numbers[0] if numbers else 0) + 1
        snapshot, row_ids = snapshot_build_with_ids(version=number)
        # Serialise once: the checksum, the cache body and the row share it (20 MiB at 100k brands).
        # Same bytes as snapshot.to_json(), so the checksum equals snapshot.checksum().
        as_dict = snapshot_as_dict(snapshot)
        raw = json.dumps(as_dict, ensure_ascii=False, sort_keys=True)
        version = KnowledgeVersion.objects.create(
            number=number,
            # Hand PostgreSQL the JSON text rather than let the field serialise the dict again.
            snapshot=RawSQL("%s::jsonb", (raw,)) if connection.vendor == "postgresql" else as_dict,
            checksum=hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16],
            reason=reason,
            created_by=actor_user(actor),
            row_ids=row_ids,
        )
        version.snapshot = as_dict
        ChangeLog.objects.filter(status=ChangeLog.Status.PENDING).update(
            status=ChangeLog.Status.PUBLISHED, knowledge_version=version
        )
        # The apps that depend on the graph follow it (the classifier re-checks its open
        # knowledge-routed review tasks); a receiver's failure rolls the publish back.
        snapshot_published.send(sender=KnowledgeVersion, version=version, snapshot=snapshot, row_ids=row_ids)
    # After commit: a worker must never see a version the database does not have.
    if not snapshot_push(number=number, snapshot=snapshot, raw=raw):
        _schedule_push(number)
    version.refresh_from_db(fields=["activated_at"])
    return version


def _schedule_push(number: int) -> None:
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        # In-process tasks would retry at once against the same dead cache; the sweep retries later.
        log.warning("entity cache down: knowledge v%s waits for the activation sweep", number)
        return
    # The broker is often the same Redis: a failed send is logged, the periodic sweep pushes it.
    task_publish(knowledge_snapshot_push, args=[number], countdown=5)


@transaction.atomic
def knowledge_discard(*, actor: Actor, reason: str = "") -> int:
    """Throw away the pending edits: the tables go back to the last published snapshot."""
    latest = knowledge_version_latest()
    if latest is None:
        raise KnowledgeError("Nothing was ever published, so there is nothing to go back to.")
    pending = ChangeLog.objects.filter(status=ChangeLog.Status.PENDING)
    count = pending.count()
    graph_restore_snapshot(
        snapshot=KnowledgeSnapshot.from_dict(latest.snapshot),
        row_ids=latest.row_ids,
        merges_since=latest.created_at,
    )
    pending.update(status=ChangeLog.Status.DISCARDED)
    entry = change_record(
        actor=actor,
        action="discard",
        object_type="graph",
        object_id=str(latest.number),
        label=f"back to v{latest.number}",
        reason=reason,
        after={"discarded_changes": count},
    )
    ChangeLog.objects.filter(pk=entry.pk).update(status=ChangeLog.Status.DISCARDED)
    return count


def knowledge_version_restore(*, actor: Actor, number: int, reason: str = "") -> KnowledgeVersion:
    """Bring back an earlier published version: import its snapshot into the tables, publish anew."""
    row = KnowledgeVersion.objects.filter(number=number).first()
    if row is None:
        raise KnowledgeError(f"There is no knowledge version {number}.")
    with transaction.atomic():
        graph_restore_snapshot(
            snapshot=KnowledgeSnapshot.from_dict(row.snapshot),
            row_ids=row.row_ids,
            merges_since=row.created_at,
        )
        change_record(
            actor=actor,
            action="restore",
            object_type="graph",
            object_id=str(number),
            label=f"restore v{number}",
            reason=reason,
        )
    return knowledge_publish(actor=actor, reason=reason or f"restore of v{number}")
