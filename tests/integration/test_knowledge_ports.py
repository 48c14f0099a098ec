"""The one direction: knowledge asks (knowledge.ports, knowledge.signals), the classifier answers."""

from __future__ import annotations

import pytest

from classifier.reroute.references import ClassifierReferences
from knowledge import ports
from knowledge.graph.categories import category_merge, category_usage
from knowledge.models import ChangeLog, KnowledgeVersion, RerouteJob
from knowledge.signals import snapshot_published
from knowledge.versions.publish import knowledge_publish
from tests import factories

pytestmark = [pytest.mark.integration]


def test_the_classifier_registers_its_answers_at_start() -> None:
    assert isinstance(ports.references(), ClassifierReferences)


def test_without_a_registered_app_knowledge_says_what_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(ports, "_registered", None)
    with pytest.raises(RuntimeError, match="no GraphReferences registered"):
        ports.references()


@pytest.mark.django_db
def test_a_publish_sends_snapshot_published_once_inside_its_transaction(ops_user) -> None:
    factories.brand("Puma", sells=factories.category_path("Apparel", "Topwear", "Tshirts"))
    received: list[dict[str, object]] = []

    def receiver(sender: object, **kwargs: object) -> None:
        version = kwargs["version"]
        assert isinstance(version, KnowledgeVersion)
        # the row exists and the pending edits are already marked published when it is sent
        assert not ChangeLog.objects.filter(status=ChangeLog.Status.PENDING).exists()
        received.append(kwargs)

    snapshot_published.connect(receiver, dispatch_uid="test-receiver")
    try:
        version = knowledge_publish(actor=ops_user, reason="first")
    finally:
        snapshot_published.disconnect(dispatch_uid="test-receiver")
    assert len(received) == 1
    sent = received[0]
    assert sent["version"] == version
    assert sent["snapshot"].version == version.number  # type: ignore[attr-defined]
    assert sent["row_ids"] == version.row_ids
    # the classifier's receiver recorded the re-route job for the version
    assert RerouteJob.objects.filter(knowledge_version=version).exists()


@pytest.mark.django_db
def test_a_merge_moves_the_classifier_rows_through_the_port_and_records_their_ids(ops_user) -> None:
    source = factories.category_path("Apparel", "Topwear", "Tees")
    target = factories.category_path("Apparel", "Topwear", "Tshirts")
    task = factories.review_task(category=source)
    assert category_usage(category=source)["predictions"] == 1

    category_merge(actor=ops_user, source=source, target=target, reason="same thing")

    task.refresh_from_db()
    task.prediction.refresh_from_db()
    assert (task.category_id, task.prediction.category_id) == (target.pk, target.pk)
    entry = ChangeLog.objects.get(action="merge", object_type="category")
    assert entry.after["moved"] == {"listings": 0, "predictions": 1, "review_tasks": 1, "decisions": 0}
    assert entry.after["moved_ids"]["review_tasks"] == [task.pk]
    # the target as it is after the merge (its version moved on)
    assert entry.after["target"]["version"] == target.version + 1
