"""Connects the classifier to the knowledge app's hooks; called once from `ClassifierConfig.ready`."""

from __future__ import annotations

from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.reroute.checker import reroute_plan
from classifier.reroute.jobs import reroute_job_create
from classifier.reroute.references import ClassifierReferences
from classifier.reroute.tasks import knowledge_reroute
from fusionreview.dispatch import task_dispatch
from knowledge.models import KnowledgeVersion
from knowledge.ports import RowIds, references_register
from knowledge.signals import snapshot_published


def on_snapshot_published(
    sender: object, *, version: KnowledgeVersion, snapshot: KnowledgeSnapshot, row_ids: RowIds, **_: object
) -> None:
    """The queue follows the graph: the open tasks the knowledge check sent are checked again
    against this version in the background; the plan recorded here is the preview's promise."""
    plan = reroute_plan(snapshot=snapshot, row_ids=row_ids, with_new_conflicts=False)
    job = reroute_job_create(version=version, planned_task_ids=plan.resolve)
    reroute_job_dispatch(job.pk)


def reroute_job_dispatch(job_id: int) -> None:
    """Queue the job once the publish has committed (in-process when there is no broker)."""
    # A failed send (broker down) is logged by the helper; the periodic sweep starts queued jobs.
    task_dispatch(knowledge_reroute, args=[job_id])


def connect() -> None:
    references_register(ClassifierReferences())
    snapshot_published.connect(on_snapshot_published, dispatch_uid="classifier_reroute_on_publish")
