"""Claiming under concurrency, claim expiry, and the race cases of deciding (PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection
from django.utils import timezone

from classifier.models import AuditEvent, Listing, ReviewDecision, ReviewTask
from classifier.review import decisions as review_decisions
from classifier.review import services as svc
from tests import factories

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean_cache():
    factories.review_cache_reset()
    yield
    factories.review_cache_reset()


def _auditors(n: int) -> list[User]:
    group = Group.objects.get(name="auditor")
    users = User.objects.bulk_create([User(username=f"claimer{i}") for i in range(n)])
    group.user_set.add(*users)
    return list(User.objects.filter(username__startswith="claimer").order_by("id"))


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_claimers_never_share_a_task_and_lose_none():
    task_ids = set(factories.review_tasks_bulk(1000))
    auditors = _auditors(50)
    claimed: dict[int, list[int]] = {a.pk: [] for a in auditors}
    errors: list[BaseException] = []
    start = threading.Barrier(len(auditors))

    def work(auditor: User) -> None:
        try:
            start.wait()
            while True:
                task = svc.review_claim_next(auditor=auditor)
                if task is None:
                    return
                claimed[auditor.pk].append(task.pk)
                # Finish it with a conditional update so "next" hands out a new one.
                assert ReviewTask.objects.filter(
                    pk=task.pk, status=ReviewTask.Status.CLAIMED, claimed_by=auditor
                ).update(status=ReviewTask.Status.DONE)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(a,)) for a in auditors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    all_claims = [pk for pks in claimed.values() for pk in pks]
    assert len(all_claims) == len(set(all_claims)), "a task was handed to two auditors"
    assert set(all_claims) == task_ids, "a task was lost"
    assert not ReviewTask.objects.exclude(status=ReviewTask.Status.DONE).exists()
    # every claim is in the audit trail, with who
    assert AuditEvent.objects.filter(verb="review.claim").count() == 1000
    busy = sum(1 for pks in claimed.values() if pks)
    assert busy > 1  # the work was really shared


@pytest.mark.django_db(transaction=True)
def test_two_auditors_pressing_next_at_the_same_instant_get_one_task_between_them():
    factories.review_task()
    a, b = _auditors(2)
    got: dict[str, int | None] = {}
    barrier = threading.Barrier(2)

    def press(user: User) -> None:
        try:
            barrier.wait()
            task = svc.review_claim_next(auditor=user)
            got[user.username] = task.pk if task else None
        finally:
            connection.close()

    threads = [threading.Thread(target=press, args=(u,)) for u in (a, b)]
    [t.start() for t in threads]
    [t.join(timeout=30) for t in threads]
    assert sorted(v is not None for v in got.values()) == [False, True]


@pytest.mark.django_db
def test_auditor_holding_a_claim_gets_the_same_task_back_from_next(auditor):
    factories.review_task()
    factories.review_task()
    first = svc.review_claim_next(auditor=auditor)
    assert svc.review_claim_next(auditor=auditor).pk == first.pk


@pytest.mark.django_db
def test_expired_claim_is_claimable_again_and_the_late_decision_is_refused(auditor, ops_user):
    task = factories.review_task()
    claimed = svc.review_claim_next(auditor=auditor)
    stale_version = claimed.version
    later = timezone.now() + timedelta(seconds=settings.CLAIM_TTL_SECONDS + 5)

    taken = svc.review_claim_next(auditor=ops_user, now=later)
    assert taken.pk == task.pk and taken.claimed_by == ops_user
    assert AuditEvent.objects.filter(verb="review.release", object_id=str(task.pk)).exists()

    with pytest.raises(svc.ClaimLost, match="otto took this item"):
        review_decisions.review_decide(
            auditor=auditor, task_id=task.pk, version=stale_version, action="approve"
        )
    task.refresh_from_db()
    assert task.claimed_by == ops_user and task.status == ReviewTask.Status.CLAIMED
    assert not ReviewDecision.objects.exists()
    assert Listing.objects.get(pk=task.listing_id).final_category is None


@pytest.mark.django_db
def test_periodic_release_returns_expired_claims_to_the_queue(auditor):
    task = factories.review_task()
    svc.review_claim_next(auditor=auditor)
    ReviewTask.objects.filter(pk=task.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    from classifier.review.tasks import review_release_expired

    assert review_release_expired.delay().get() == 1
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.PENDING and task.claimed_by is None
    assert "review-release-expired" in settings.CELERY_BEAT_SCHEDULE
    with pytest.raises(svc.ClaimLost, match="went back to the queue"):
        review_decisions.review_decide(
            auditor=auditor, task_id=task.pk, version=task.version - 1, action="approve"
        )


@pytest.mark.django_db
def test_overdue_items_are_served_first_then_by_priority(auditor):
    urgent = factories.review_task(confidence=0.05)
    overdue = factories.review_task(confidence=0.9, age=timedelta(hours=settings.REVIEW_SLA_HOURS + 1))
    first = svc.review_claim_next(auditor=auditor)
    assert first.pk == overdue.pk
    review_decisions.review_decide(auditor=auditor, task_id=first.pk, version=first.version, action="approve")
    assert svc.review_claim_next(auditor=auditor).pk == urgent.pk


@pytest.mark.django_db
def test_double_submitted_decision_is_a_no_op_with_a_message(auditor):
    factories.review_task()
    task = svc.review_claim_next(auditor=auditor)
    review_decisions.review_decide(auditor=auditor, task_id=task.pk, version=task.version, action="approve")
    with pytest.raises(svc.AlreadyRecorded, match="already recorded"):
        review_decisions.review_decide(
            auditor=auditor, task_id=task.pk, version=task.version, action="approve"
        )
    assert ReviewDecision.objects.filter(task=task).count() == 1


@pytest.mark.django_db
def test_correction_to_a_deleted_or_deactivated_category_is_refused_clearly(auditor):
    factories.review_task()
    task = svc.review_claim_next(auditor=auditor)
    gone = factories.category_path("Apparel", "Topwear", "Vests")
    gone_id = gone.pk
    gone.delete()
    with pytest.raises(svc.InvalidDecision, match="no longer exists"):
        review_decisions.review_decide(
            auditor=auditor, task_id=task.pk, version=task.version, action="correct", category_id=gone_id
        )
    retired = factories.category_path("Apparel", "Topwear", "Kurtas")
    retired.is_active = False
    retired.save()
    with pytest.raises(svc.InvalidDecision, match="deactivated"):
        review_decisions.review_decide(
            auditor=auditor, task_id=task.pk, version=task.version, action="correct", category_id=retired.pk
        )
    with pytest.raises(svc.InvalidDecision, match="not a leaf"):
        review_decisions.review_decide(
            auditor=auditor,
            task_id=task.pk,
            version=task.version,
            action="correct",
            category_id=factories.category_path("Apparel").pk,
        )
    with pytest.raises(svc.InvalidDecision, match="Unknown brand"):
        review_decisions.review_decide(
            auditor=auditor,
            task_id=task.pk,
            version=task.version,
            action="correct",
            category_id=factories.category_path("Apparel", "Topwear", "Shirts").pk,
            brand_name="No Such Brand",
        )
    assert not ReviewDecision.objects.exists()
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED and task.claimed_by == auditor
