"""Undo of an escalation, through the HTTP layer on PostgreSQL: the task is back exactly as it was
(reason, comment, priority), held by the auditor who escalated it, out of the escalated queue, and
nothing of the escalation is kept as a training example."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from classifier.models import AuditEvent, ReviewDecision, ReviewTask
from classifier.review import services as svc
from classifier.review.selectors import review_queue_counts, review_queue_tasks
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db, pytest.mark.usefixtures("review_pages")]

HTMX = factories.HTMX_REVIEW


def test_undo_of_an_escalation_restores_the_task_and_hands_it_back(auditor):
    client = Client()
    client.force_login(auditor)
    task = factories.review_task(
        title="Blue denim jeans slim fit", reason=ReviewTask.Reason.KNOWLEDGE_CONFLICT, priority=0.7
    )
    before = ReviewTask.objects.get(pk=task.pk)
    held = svc.review_claim_next(auditor=auditor)
    assert held.pk == task.pk

    response = client.post(
        reverse("review-decide", args=[task.pk]),
        {"action": "escalate", "version": held.version, "comment": "brand sells no jeans?"},
        **HTMX,
    )
    assert response.status_code == 200 and b"Escalated" in response.content
    escalated = ReviewTask.objects.get(pk=task.pk)
    assert escalated.status == ReviewTask.Status.PENDING and escalated.claimed_by_id is None
    assert escalated.reason == ReviewTask.Reason.ESCALATED
    assert escalated.reason_detail == "brand sells no jeans?"
    assert escalated.priority > before.priority
    assert [t.pk for t in review_queue_tasks(reason=ReviewTask.Reason.ESCALATED)] == [task.pk]

    response = client.post(reverse("review-undo"), **HTMX)
    assert response.status_code == 200
    assert b"Undid your escalate" in response.content

    restored = ReviewTask.objects.get(pk=task.pk)
    assert restored.status == ReviewTask.Status.CLAIMED and restored.claimed_by_id == auditor.pk
    assert restored.reason == ReviewTask.Reason.KNOWLEDGE_CONFLICT
    assert restored.reason_detail == before.reason_detail
    assert restored.priority == pytest.approx(before.priority)
    assert restored.version > escalated.version
    assert review_queue_tasks(reason=ReviewTask.Reason.ESCALATED) == []
    assert review_queue_counts(fresh=True)["by_reason"][2] == {
        "reason": "escalated",
        "label": "Escalated",
        "n": 0,
    }

    decisions = list(ReviewDecision.objects.filter(task=task).order_by("id"))
    assert [d.action for d in decisions] == ["escalate", "undo"]
    assert decisions[1].undoes_id == decisions[0].pk
    assert not any(d.is_training_example for d in decisions)
    verbs = list(
        AuditEvent.objects.filter(object_type="classifier.reviewtask", object_id=str(task.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )
    assert verbs == ["review.claim", "review.escalate", "review.undo"]

    # The undone task is the auditor's again: "next" hands it back (the skip exclusion is lifted).
    response = client.post(reverse("review-next"), **HTMX)
    assert f'action="/review/task/{task.pk}/decide/"'.encode() in response.content


def test_undo_of_an_escalation_is_refused_once_someone_else_picked_it_up(auditor, ops_user):
    client = Client()
    client.force_login(auditor)
    task = factories.review_task(title="Red cotton kurta")
    held = svc.review_claim_next(auditor=auditor)
    client.post(
        reverse("review-decide", args=[task.pk]),
        {"action": "escalate", "version": held.version, "comment": "unsure"},
        **HTMX,
    )
    taken = svc.review_claim_next(auditor=ops_user)
    assert taken.pk == task.pk

    response = client.post(reverse("review-undo"), **HTMX)
    assert response.status_code == 200
    assert b"can no longer be undone" in response.content
    after = ReviewTask.objects.get(pk=task.pk)
    assert after.claimed_by_id == ops_user.pk and after.reason == ReviewTask.Reason.ESCALATED
    assert list(ReviewDecision.objects.filter(task=task).values_list("action", flat=True)) == ["escalate"]
