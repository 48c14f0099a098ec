"""The change log and versioned edits: every edit of the graph is recorded and names its version.

Every edit is recorded in `ChangeLog` (who, when, why, the rows before and after) and stays
*pending* until a publish freezes the tables into a new `KnowledgeVersion`. Edits of one row name
the `version` they started from; a stale one raises `StaleEdit` naming who changed the row
meanwhile. `versioned_update` is that protocol once, for categories and brands alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from django.contrib.auth.models import User
from django.db.models import F, QuerySet
from django.utils import timezone

from knowledge.models import Brand, Category, ChangeLog, KnowledgeVersion
from knowledge.paging import Page, page_bounds
from knowledge.ports import Actor

Node = TypeVar("Node", Category, Brand)


class KnowledgeError(ValueError):
    """An edit refused with a message meant for the person who made it."""


class StaleEdit(KnowledgeError):
    """The row changed since the form was opened."""


def actor_user(actor: Actor) -> User | None:
    """The user to record, or None for the system and anonymous callers."""
    return actor if isinstance(actor, User) and actor.is_authenticated else None


def change_record(
    *,
    actor: Actor,
    action: str,
    obj: Category | Brand | None = None,
    object_type: str = "",
    object_id: str = "",
    label: str = "",
    reason: str = "",
    before: Mapping[str, object] | None = None,
    after: Mapping[str, object] | None = None,
) -> ChangeLog:
    """One pending change-log row; `obj` fills the type, id and label."""
    if obj is not None:
        object_type = "category" if isinstance(obj, Category) else "brand"
        object_id = str(obj.pk)
        label = label or (obj.path_label if isinstance(obj, Category) else obj.name)
    return ChangeLog.objects.create(
        actor=actor_user(actor),
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_label=label[:500],
        reason=reason,
        before=dict(before or {}),
        after=dict(after or {}),
    )


def lock_at_version(model: type[Node], pk: int, expected_version: int | None) -> Node:
    """Lock the row; refuse when it moved past the version the editor started from."""
    obj = model._default_manager.select_for_update().get(pk=pk)
    if expected_version is not None and obj.version != int(expected_version):
        kind = "category" if model is Category else "brand"
        last = change_last_for(object_type=kind, object_id=pk)
        who = "someone else"
        when = ""
        if last is not None:
            who = last.actor.get_username() if last.actor else "the system"
            when = f" at {timezone.localtime(last.created_at):%H:%M:%S}"
        raise StaleEdit(
            f"{obj} was changed by {who}{when} after you opened it (version {obj.version}, "
            f"yours {expected_version}). Reload to see their change, then edit again."
        )
    return obj


def version_bump(obj: Category | Brand) -> None:
    type(obj)._default_manager.filter(pk=obj.pk).update(version=F("version") + 1)
    obj.refresh_from_db()


def versioned_update(
    model: type[Node],
    pk: int,
    *,
    expected_version: int | None,
    actor: Actor,
    action: str,
    reason: str,
    row: Callable[[Node], dict[str, object]],
    change: Callable[[Node], None],
) -> Node:
    """The one edit protocol: lock at the expected version, change, bump, log before and after."""
    obj = lock_at_version(model, pk, expected_version)
    before = row(obj)
    change(obj)
    version_bump(obj)
    change_record(actor=actor, action=action, obj=obj, reason=reason, before=before, after=row(obj))
    return obj


def knowledge_version_latest() -> KnowledgeVersion | None:
    """The newest published version; its snapshot (20 MiB at 100k brands) loads only when read."""
    return KnowledgeVersion.objects.defer("snapshot", "row_ids").order_by("-number").first()


def merge_record(
    *,
    actor: Actor,
    target: Node,
    row: Callable[[Node], dict[str, object]],
    reason: str,
    before: Mapping[str, object],
    folded: Mapping[str, object],
) -> None:
    """A merge is an edit of its target: the version moves on, then the change log keeps the
    target as it is now (`row`) and what was folded into it."""
    version_bump(target)
    after = {"target": row(target), **folded}
    change_record(actor=actor, action="merge", obj=target, reason=reason, before=before, after=after)


def changes_pending() -> QuerySet[ChangeLog]:
    return ChangeLog.objects.filter(status=ChangeLog.Status.PENDING).select_related("actor")


def change_last_for(*, object_type: str, object_id: int | str) -> ChangeLog | None:
    return (
        ChangeLog.objects.filter(object_type=object_type, object_id=str(object_id))
        .select_related("actor")
        .order_by("-created_at", "-id")
        .first()
    )


def change_page(*, number: int = 1, size: int = 100) -> Page[ChangeLog]:
    """A page of the change log, newest first (the joined versions' snapshots are never fetched)."""
    total = ChangeLog.objects.count()
    number = page_bounds(number, size, total)
    start = (number - 1) * size
    rows = list(
        ChangeLog.objects.select_related("actor", "knowledge_version")
        .defer("knowledge_version__snapshot", "knowledge_version__row_ids")
        .order_by("-created_at", "-id")[start : start + size]
    )
    return Page(rows=rows, total=total, number=number, size=size)
