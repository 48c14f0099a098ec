"""Review pages and actions through the HTTP layer: permissions, CSRF, decisions, undo, bulk, audit, stats."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from classifier.models import AuditEvent, Listing, ReviewDecision, ReviewTask
from classifier.review import decisions as review_decisions
from classifier.review import services as svc
from classifier.review.examples import training_examples_since
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db, pytest.mark.usefixtures("review_pages")]

HTMX = factories.HTMX_REVIEW


@pytest.fixture
def client_for():
    def make(user, **kwargs):
        client = Client(**kwargs)
        client.force_login(user)
        return client

    return make


def test_people_without_the_review_permission_get_403_everywhere(client_for, nobody):
    task = factories.review_task()
    client = client_for(nobody)
    for url in [
        reverse("review-queues"),
        reverse("review-task", args=[task.pk]),
        reverse("review-audit"),
        reverse("review-stats"),
        reverse("review-bulk"),
        reverse("review-category-search") + "?q=shirt",
    ]:
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("review-next")).status_code == 403
    response = client.post(
        reverse("review-decide", args=[task.pk]), {"action": "approve", "version": task.version}
    )
    assert response.status_code == 403
    assert not ReviewDecision.objects.exists()


def test_anonymous_visitors_are_sent_to_login():
    response = Client().get(reverse("review-queues"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_forged_post_without_csrf_token_is_refused(auditor):
    factories.review_task()
    task = svc.review_claim_next(auditor=auditor)
    client = Client(enforce_csrf_checks=True)
    client.force_login(auditor)
    response = client.post(
        reverse("review-decide", args=[task.pk]), {"action": "approve", "version": task.version}
    )
    assert response.status_code == 403
    assert not ReviewDecision.objects.exists()


@pytest.mark.parametrize("fixture", ["auditor", "ops_user", "admin_user"])
def test_auditors_ops_and_admins_see_the_queues(client_for, request, fixture):
    factories.review_task(title="Blue denim jeans")
    response = client_for(request.getfixturevalue(fixture)).get(reverse("review-queues"))
    assert response.status_code == 200
    assert b"Blue denim jeans" in response.content
    assert b"Low confidence" in response.content


def test_item_page_escapes_the_title_and_highlights_entities_safely(client_for, auditor):
    title = 'Nike <script>alert("x")</script> cotton tee'
    nike = factories.brand("Nike")
    factories.review_task(
        title=title,
        brand_obj=nike,
        entities=[
            {"text": "Nike", "type": "brand", "start": 0, "end": 4, "weight": 0.9},
            {"text": "cotton", "type": 'material"><b', "start": 35, "end": 41, "weight": 0.5},
            {"text": "bad", "type": "x", "start": 500, "end": 900},
        ],
        findings=[
            {"code": "brand_category", "message": "Nike is not known to sell Tshirts", "severity": "conflict"}
        ],
    )
    client = client_for(auditor)
    response = client.post(reverse("review-next"), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert '<mark class="rv-ent rv-ent-brand"' in html
    assert 'rv-ent-materialb"' in html  # the type is reduced to a safe class name
    assert "Nike is not known to sell Tshirts" in html
    assert "Approve <kbd>A</kbd>" in html
    assert response["HX-Push-Url"].startswith("/review/task/")


def test_approve_then_next_item_then_undo_restores_everything(client_for, auditor):
    cat = factories.category_path("Apparel", "Topwear", "Tshirts")
    first = factories.review_task(confidence=0.1, category=cat)
    second = factories.review_task(confidence=0.3, category=cat)
    client = client_for(auditor)
    task = svc.review_claim_next(auditor=auditor)
    assert task.pk == first.pk
    response = client.post(
        reverse("review-decide", args=[task.pk]), {"action": "approve", "version": task.version}, **HTMX
    )
    assert b"Approved" in response.content
    assert response["HX-Push-Url"] == reverse("review-task", args=[second.pk])
    listing = Listing.objects.get(pk=first.listing_id)
    assert listing.status == Listing.Status.REVIEWED and listing.final_category == cat
    decision = ReviewDecision.objects.get(task=first)
    assert decision.is_training_example and decision.action == "approve"
    assert list(training_examples_since()) == [decision]

    response = client.post(reverse("review-undo"), **HTMX)
    assert b"Undid your approve" in response.content
    listing.refresh_from_db()
    assert listing.status == Listing.Status.IN_REVIEW and listing.final_category is None
    decision.refresh_from_db()
    assert not decision.is_training_example
    undo = ReviewDecision.objects.get(action="undo")
    assert undo.undoes == decision
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == ReviewTask.Status.CLAIMED and first.claimed_by == auditor
    assert second.status == ReviewTask.Status.PENDING  # the item handed out after the approval went back
    assert not training_examples_since().exists()
    # nothing more to undo
    response = client.post(reverse("review-undo"), **HTMX)
    assert b"Nothing to undo" in response.content
    assert set(AuditEvent.objects.values_list("verb", flat=True)) >= {
        "review.claim",
        "review.approve",
        "review.undo",
        "review.release",
    }


def test_correct_records_the_cause_and_search_offers_full_paths(client_for, auditor):
    factories.review_task()
    jeans = factories.category_path("Apparel", "Bottomwear", "Jeans")
    levis = factories.brand("Levis")
    client = client_for(auditor)
    html = client.get(reverse("review-category-search"), {"q": "jean"}).content.decode()
    assert "Apparel &gt; Bottomwear &gt; Jeans" in html and f'data-id="{jeans.pk}"' in html
    assert "Levis" in client.get(reverse("review-brand-search"), {"brand": "lev"}).content.decode()
    task = svc.review_claim_next(auditor=auditor)
    client.post(
        reverse("review-decide", args=[task.pk]),
        {
            "action": "correct",
            "version": task.version,
            "category_id": jeans.pk,
            "brand": "levis",
            "cause": "knowledge_gap",
        },
        **HTMX,
    )
    decision = ReviewDecision.objects.get(task=task)
    assert (decision.action, decision.category, decision.brand, decision.cause) == (
        "correct",
        jeans,
        levis,
        "knowledge_gap",
    )
    listing = Listing.objects.get(pk=task.listing_id)
    assert listing.final_category == jeans and listing.final_brand == levis


def test_correct_without_a_category_stays_on_the_item_with_a_message(client_for, auditor):
    factories.review_task()
    task = svc.review_claim_next(auditor=auditor)
    response = client_for(auditor).post(
        reverse("review-decide", args=[task.pk]), {"action": "correct", "version": task.version}, **HTMX
    )
    assert b"Pick a category from the search list" in response.content
    assert not ReviewDecision.objects.exists()


def test_skip_lowers_priority_and_hands_the_auditor_another_item(client_for, auditor):
    a = factories.review_task(confidence=0.1)
    b = factories.review_task(confidence=0.2)
    client = client_for(auditor)
    task = svc.review_claim_next(auditor=auditor)
    assert task.pk == a.pk
    response = client.post(
        reverse("review-decide", args=[a.pk]), {"action": "skip", "version": task.version}, **HTMX
    )
    assert response["HX-Push-Url"] == reverse("review-task", args=[b.pk])
    a.refresh_from_db()
    assert a.status == ReviewTask.Status.PENDING and a.claimed_by is None
    assert a.priority == pytest.approx(0.9 - svc.SKIP_PRIORITY_PENALTY)


def test_escalate_needs_a_comment_and_moves_the_task_to_the_escalated_queue(client_for, auditor):
    factories.review_task()
    task = svc.review_claim_next(auditor=auditor)
    client = client_for(auditor)
    url = reverse("review-decide", args=[task.pk])
    assert (
        b"Say why you escalate"
        in client.post(url, {"action": "escalate", "version": task.version}, **HTMX).content
    )
    client.post(url, {"action": "escalate", "version": task.version, "comment": "brand unknown"}, **HTMX)
    task.refresh_from_db()
    assert task.reason == ReviewTask.Reason.ESCALATED and task.reason_detail == "brand unknown"
    assert task.status == ReviewTask.Status.PENDING
    assert b"Escalated" in client.get(reverse("review-queues"), {"reason": "escalated"}).content


def test_deciding_on_a_task_someone_else_holds_is_refused_and_nothing_is_overwritten(
    client_for, auditor, ops_user
):
    factories.review_task()
    task = svc.review_claim_next(auditor=ops_user)
    response = client_for(auditor).post(
        reverse("review-decide", args=[task.pk]), {"action": "approve", "version": task.version}, **HTMX
    )
    assert "your decision was not saved" in response.content.decode()
    assert not ReviewDecision.objects.exists()
    task.refresh_from_db()
    assert task.claimed_by == ops_user


def test_bulk_approve_confirms_the_count_and_rechecks_every_item(client_for, auditor, ops_user):
    tasks = [factories.review_task(confidence=0.9) for _ in range(4)]
    held = svc.review_claim_task(auditor=ops_user, task_id=tasks[0].pk)
    client = client_for(auditor)
    ids = [t.pk for t in tasks]
    response = client.post(reverse("review-bulk"), {"task": ids}, **HTMX)
    assert b"Approve 4 items?" in response.content
    ReviewTask.objects.filter(pk=tasks[1].pk).update(status=ReviewTask.Status.DONE)
    response = client.post(reverse("review-bulk"), {"task": ids, "confirm": "yes"}, **HTMX)
    html = response.content.decode()
    assert "Approved 2 of 4" in html
    assert f"Task {held.pk}: claimed by otto" in html
    assert f"Task {tasks[1].pk}: already decided" in html
    assert ReviewDecision.objects.filter(action="approve", is_training_example=True).count() == 2


def test_bulk_list_filters_by_confidence(client_for, auditor):
    factories.review_task(title="Sure thing", confidence=0.95)
    factories.review_task(title="Unsure thing", confidence=0.2)
    html = client_for(auditor).get(reverse("review-bulk"), {"min_confidence": "0.9"}).content.decode()
    assert "Sure thing" in html and "Unsure thing" not in html
    bad = client_for(auditor).get(reverse("review-bulk"), {"min_confidence": "lots"}).content.decode()
    assert "between 0 and 1" in bad


def test_audit_trail_is_filterable_by_user_and_verb(client_for, auditor, ops_user):
    factories.review_task()
    factories.review_task()
    t1 = svc.review_claim_next(auditor=auditor)
    review_decisions.review_decide(auditor=auditor, task_id=t1.pk, version=t1.version, action="approve")
    svc.review_claim_next(auditor=ops_user)
    client = client_for(auditor)
    html = client.get(
        reverse("review-audit"), {"user": auditor.pk, "verb": "review.approve"}
    ).content.decode()
    assert html.count("<tr><td>") == 1 and "audrey" in html
    html = client.get(reverse("review-audit"), {"verb": "review.claim"}).content.decode()
    assert "otto" in html and "audrey" in html
    assert "must be a date" in client.get(reverse("review-audit"), {"from": "yesterday"}).content.decode()


def test_stats_page_shows_agreement_and_overturns(client_for, auditor, ops_user):
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")
    factories.review_task()
    t = svc.review_claim_next(auditor=auditor)
    review_decisions.review_decide(auditor=auditor, task_id=t.pk, version=t.version, action="approve")
    # ops later relabels the same listing through a new task: audrey's label is overturned
    t2 = ReviewTask.objects.create(
        listing=t.listing, prediction=t.prediction, reason="escalated", category=t.category
    )
    t2 = svc.review_claim_task(auditor=ops_user, task_id=t2.pk)
    review_decisions.review_decide(
        auditor=ops_user, task_id=t2.pk, version=t2.version, action="correct", category_id=shirts.pk
    )
    response = client_for(auditor).get(reverse("review-stats"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in html
    rows = {r["username"]: r for r in response.context["auditors"]}
    assert rows["audrey"]["overturn"] == 100.0 and rows["audrey"]["agreement"] == 0.0
    assert rows["otto"]["agreement"] == 100.0 and rows["otto"]["overturn"] == 0.0
