"""Publish re-routes the queue: it resolves exactly what the preview promised, and people win races."""

from __future__ import annotations

import threading

import pytest
from django.core.cache import cache as django_cache
from django.db import connection, transaction

from classifier.models import AuditEvent, Listing, Prediction, ReviewTask
from classifier.reroute.jobs import knowledge_reroute_run, review_task_auto_resolve_undo
from classifier.review import decisions as review_decisions
from classifier.review import services as review_services
from knowledge import cache
from knowledge.graph.brands import brand_category_add
from knowledge.models import BrandCategory, KnowledgeVersion, RerouteJob
from knowledge.versions.preview import impact_preview
from knowledge.versions.publish import knowledge_publish
from tests import factories

pytestmark = [pytest.mark.integration]

TITAN_CONFLICT = [
    {"code": "brand_category", "message": "brand Titan sells Watches, not Topwear", "severity": "conflict"}
]


@pytest.fixture(autouse=True)
def clean_cache():
    django_cache.delete_many(
        [cache.VERSION_KEY, *(cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    cache.memo_clear()
    yield
    cache.memo_clear()


@pytest.fixture
def graph(ops_user):
    """Titan is a watch brand with 50 approved listings; Fastrack too. Published as v1."""
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    watches = factories.category_path("Accessories", "Watches", "Watches")
    for name in ("Titan", "Fastrack"):
        brand = factories.brand(name)
        BrandCategory.objects.create(brand=brand, category=watches, support=50, source="import")
    version = factories.model_version()
    version.review_threshold = 0.9
    version.save(update_fields=["review_threshold"])
    knowledge_publish(actor=ops_user, reason="baseline")
    return {"tshirts": tshirts, "watches": watches, "version": version}


def _knowledge_task(
    title: str, category, *, confidence: float = 0.97, route_reason: str = "knowledge_conflict"
):
    task = factories.review_task(
        title=title,
        category=category,
        confidence=confidence,
        reason=ReviewTask.Reason.KNOWLEDGE_CONFLICT,
        findings=TITAN_CONFLICT,
    )
    ReviewTask.objects.filter(pk=task.pk).update(route_reason=route_reason)
    Prediction.objects.filter(pk=task.prediction_id).update(route_reason=route_reason)
    task.refresh_from_db()
    return task


def _publish(ops_user, django_capture_on_commit_callbacks, reason: str) -> KnowledgeVersion:
    with django_capture_on_commit_callbacks(execute=True):
        return knowledge_publish(actor=ops_user, reason=reason)


@pytest.mark.django_db
def test_publish_resolves_exactly_the_tasks_its_preview_named(
    ops_user, auditor, graph, django_capture_on_commit_callbacks
):
    tshirts = graph["tshirts"]
    resolvable = [_knowledge_task(f"Titan Men Blue Tshirt {i}", tshirts) for i in range(4)]
    low = _knowledge_task("Titan Men Red Tshirt", tshirts, confidence=0.5)
    other_brand = _knowledge_task("Fastrack Men Tshirt", tshirts)
    decided = _knowledge_task("Titan Men Green Tshirt", tshirts)
    review_services.review_claim_task(auditor=auditor, task_id=decided.pk)
    decided.refresh_from_db()
    review_decisions.review_decide(
        auditor=auditor, task_id=decided.pk, version=decided.version, action="approve"
    )
    decided.refresh_from_db()
    decided_before = (
        decided.status,
        decided.version,
        decided.decided_at,
        decided.resolved_by_knowledge_version,
    )

    # Ops fix the cause: Titan does sell T-shirts.
    brand_category_add(actor=ops_user, brand=factories.brand("Titan"), category=tshirts)
    preview = impact_preview(days=7)
    promised = sorted(preview.reroute.resolve)
    assert promised == sorted(t.pk for t in resolvable)
    assert preview.reroute.conflict_gone_still_routed == [low.pk]
    assert preview.reroute.still_conflicting == [other_brand.pk]

    v2 = _publish(ops_user, django_capture_on_commit_callbacks, "Titan sells T-shirts")
    job = RerouteJob.objects.get(knowledge_version=v2)
    assert job.status == RerouteJob.Status.DONE
    assert sorted(job.planned_task_ids) == promised
    assert sorted(job.resolved_task_ids) == promised, "the count equals the preview's promise"
    assert job.progress_line.startswith(f"{job.total}/{job.total} open tasks checked, 4 resolved")
    for task in resolvable:
        task.refresh_from_db()
        assert task.status == ReviewTask.Status.DONE and task.resolved_by_knowledge_version == v2.number
        listing = Listing.objects.get(pk=task.listing_id)
        assert listing.status == Listing.Status.ACCEPTED and listing.final_category_id == tshirts.pk
        event = AuditEvent.objects.get(verb="review.auto_resolve", object_id=str(task.pk))
        assert event.data["knowledge_version"] == v2.number
    low.refresh_from_db()
    assert low.status == ReviewTask.Status.PENDING and low.route_reason == "low_confidence"
    other_brand.refresh_from_db()
    assert (
        other_brand.status == ReviewTask.Status.PENDING and other_brand.route_reason == "knowledge_conflict"
    )
    decided.refresh_from_db()
    assert (decided.status, decided.version, decided.decided_at, decided.resolved_by_knowledge_version) == (
        decided_before
    ), "a decided task never changes"

    # Undoable: the task goes back to the queue as it was.
    back = review_task_auto_resolve_undo(task_id=resolvable[0].pk, actor=ops_user)
    assert back.status == ReviewTask.Status.PENDING and back.resolved_by_knowledge_version is None
    assert back.route_reason == "knowledge_conflict"
    assert Listing.objects.get(pk=back.listing_id).status == Listing.Status.IN_REVIEW
    # A second run of the same job changes nothing (idempotent).
    knowledge_reroute_run(job_id=job.pk)
    back.refresh_from_db()
    assert back.status == ReviewTask.Status.PENDING


@pytest.mark.django_db
def test_a_fixed_conflict_does_not_release_a_new_category_the_model_never_trained_on(
    ops_user, graph, django_capture_on_commit_callbacks
):
    """What the model said of itself (a leaf it never trained on, not named by the title) does not
    depend on the graph: fixing the brand conflict leaves the task with a person, for that reason."""
    new_leaf = {
        "code": "new_category_unconfirmed",
        "message": "“Tshirts” was added after this model was trained and the title does not name it",
        "severity": "conflict",
    }
    task = _knowledge_task("Titan Men Blue", graph["tshirts"])
    Prediction.objects.filter(pk=task.prediction_id).update(knowledge_findings=[*TITAN_CONFLICT, new_leaf])
    brand_category_add(actor=ops_user, brand=factories.brand("Titan"), category=graph["tshirts"])
    assert impact_preview(days=7).reroute.conflict_gone_still_routed == [task.pk]

    v2 = _publish(ops_user, django_capture_on_commit_callbacks, "Titan sells T-shirts")
    job = RerouteJob.objects.get(knowledge_version=v2)
    assert job.status == RerouteJob.Status.DONE and job.resolved_task_ids == []
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.PENDING and task.route_reason == "new_category"


@pytest.mark.django_db
def test_preview_shows_the_new_conflicts_a_change_creates(ops_user, graph):
    tshirts = graph["tshirts"]
    accepted = factories.review_task(title="Titan Men Blue Tshirt", category=tshirts, confidence=0.97)
    ReviewTask.objects.filter(pk=accepted.pk).update(status=ReviewTask.Status.DONE)
    Listing.objects.filter(pk=accepted.listing_id).update(status=Listing.Status.ACCEPTED)
    # waiting for a person only because the model never trained on its leaf: not a conflict yet
    new_leaf = {"code": "new_category_unconfirmed", "message": "“Tshirts” is new", "severity": "conflict"}
    waiting = factories.review_task(title="Titan Men Blue", category=tshirts, findings=[new_leaf])
    ReviewTask.objects.filter(pk=waiting.pk).update(route_reason="new_category")
    # Titan's record was thin (no conflict), then ops import evidence that it sells watches only.
    titan = factories.brand("Titan")
    BrandCategory.objects.filter(brand=titan).update(support=3)
    assert impact_preview(days=7).reroute.new_conflicts == []
    BrandCategory.objects.filter(brand=titan).update(support=80)
    new = impact_preview(days=7).reroute.new_conflicts
    assert sorted(n["listing_id"] for n in new) == sorted([accepted.listing_id, waiting.listing_id])
    assert all("Titan" in n["findings"][0] for n in new)


@pytest.mark.django_db
def test_a_task_held_by_an_auditor_is_left_to_them_and_their_decision_is_kept(
    ops_user, auditor, graph, django_capture_on_commit_callbacks
):
    tshirts = graph["tshirts"]
    task = _knowledge_task("Titan Men Blue Tshirt", tshirts)
    review_services.review_claim_task(auditor=auditor, task_id=task.pk)
    brand_category_add(actor=ops_user, brand=factories.brand("Titan"), category=tshirts)
    assert impact_preview(days=7).reroute.resolve_held == [task.pk]
    _publish(ops_user, django_capture_on_commit_callbacks, "Titan sells T-shirts")
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED and task.resolved_by_knowledge_version is None
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")
    outcome = review_decisions.review_decide(
        auditor=auditor, task_id=task.pk, version=task.version, action="correct", category_id=shirts.pk
    )
    assert outcome.task.status == ReviewTask.Status.DONE
    assert Listing.objects.get(pk=task.listing_id).final_category_id == shirts.pk


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_auditor_decision_on_a_task_being_rerouted_wins(ops_user, auditor, graph, monkeypatch):
    """The auditor's transaction holds the row while the job runs: the job skips it, the decision stays."""
    tshirts = graph["tshirts"]
    task = _knowledge_task("Titan Men Blue Tshirt", tshirts)
    brand_category_add(actor=ops_user, brand=factories.brand("Titan"), category=tshirts)
    # The job is run by hand below, at the moment the auditor holds the row.
    monkeypatch.setattr("classifier.reroute.wiring.reroute_job_dispatch", lambda job_id: None)
    version = knowledge_publish(actor=ops_user, reason="Titan sells T-shirts")
    job = RerouteJob.objects.get(knowledge_version=version)
    assert job.planned_task_ids == [task.pk]
    locked, release = threading.Event(), threading.Event()
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")

    def auditor_decides() -> None:
        try:
            with transaction.atomic():
                ReviewTask.objects.select_for_update().get(pk=task.pk)  # the claim in progress
                locked.set()
                release.wait(10)
                review_services.review_claim_task(auditor=auditor, task_id=task.pk)
                fresh = ReviewTask.objects.get(pk=task.pk)
                review_decisions.review_decide(
                    auditor=auditor,
                    task_id=task.pk,
                    version=fresh.version,
                    action="correct",
                    category_id=shirts.pk,
                )
        finally:
            connection.close()

    thread = threading.Thread(target=auditor_decides)
    thread.start()
    assert locked.wait(10)
    knowledge_reroute_run(job_id=job.pk)  # runs while the auditor holds the row
    release.set()
    thread.join(10)
    task.refresh_from_db()
    job.refresh_from_db()
    assert task.status == ReviewTask.Status.DONE and task.resolved_by_knowledge_version is None
    assert Listing.objects.get(pk=task.listing_id).final_category_id == shirts.pk
    assert job.resolved_task_ids == [] and job.status == RerouteJob.Status.DONE


@pytest.mark.django_db
def test_the_version_page_shows_the_reroute_and_ops_can_put_the_tasks_back(
    ops_user, auditor, graph, django_capture_on_commit_callbacks
):
    from django.test import Client
    from django.urls import reverse

    tshirts = graph["tshirts"]
    tasks = [_knowledge_task(f"Titan Men Tshirt {i}", tshirts) for i in range(2)]
    brand_category_add(actor=ops_user, brand=factories.brand("Titan"), category=tshirts)
    ops = Client()
    ops.force_login(ops_user)
    preview = ops.get(reverse("knowledge-publish")).content.decode()
    assert 'data-testid="reroute-resolve">2<' in preview
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(reverse("knowledge-publish"), {"reason": "Titan sells T-shirts"}, follow=True)
    assert "2 open task(s) no longer conflict" in response.content.decode()
    v2 = KnowledgeVersion.objects.order_by("-number").first()
    page = ops.get(reverse("knowledge-version", args=[v2.number])).content.decode()
    assert "2/2 open tasks checked, 2 resolved" in page and 'data-testid="reroute-undo"' in page
    other = Client()
    other.force_login(auditor)
    assert other.post(reverse("knowledge-version-reroute-undo", args=[v2.number])).status_code == 403
    ops.post(reverse("knowledge-version-reroute-undo", args=[v2.number]))
    for task in tasks:
        task.refresh_from_db()
        assert task.status == ReviewTask.Status.PENDING


@pytest.mark.django_db
def test_the_checker_holds_a_title_that_names_no_type_to_the_models_untyped_threshold(tmp_path):
    """A knowledge re-route decides as the engine did: a vague title ("Puma Men Blue") at the stricter
    untyped threshold stored with the model, a title naming its type at the version's threshold."""
    import json

    from classifier.reroute.checker import Checker
    from tests.unit.fusion.factories import LEAVES, tiny_snapshot

    (tmp_path / "calibration.json").write_text(
        json.dumps({"review_threshold": 0.9, "untyped_threshold": 0.99}), encoding="utf-8"
    )
    version = factories.model_version("untyped-v1")
    version.artifact_dir, version.review_threshold = str(tmp_path), 0.9
    version.save(update_fields=["artifact_dir", "review_threshold"])
    checker = Checker(tiny_snapshot())
    tshirts = LEAVES[0]  # Apparel > Topwear > Tshirts

    def primary(title: str, confidence: float) -> str:
        return checker.check(title=title, label=tshirts, confidence=confidence, version=version).primary

    assert primary("Puma Men Blue Tshirt", 0.95) == "auto_accepted"
    assert primary("Puma Men Blue", 0.95) == "low_confidence"
    assert primary("Puma Men Blue", 0.995) == "auto_accepted"
