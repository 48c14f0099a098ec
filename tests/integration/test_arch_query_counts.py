"""Query counts of the review loop and the knowledge editor's lists stay flat as the data grows.

Each page is loaded with a few rows, then with many more; the number of queries must not grow with
the rows (no N+1, e.g. a parent walk per category) and stays under a fixed ceiling.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from classifier.review import decisions as review_decisions
from classifier.review import services as svc
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db, pytest.mark.usefixtures("review_pages")]

HTMX = factories.HTMX_REVIEW


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _count(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = fn()
    assert response.status_code == 200, response.status_code
    return len(ctx.captured_queries)


def _tasks_in_many_categories(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        leaf = factories.category_path(f"Master{i % 3}", f"Sub{i % 5}", f"Article{i}")
        factories.review_task(category=leaf, title=f"Listing {i} cotton shirt")


def test_queue_page_queries_do_not_grow_with_the_queue(auditor, django_assert_max_num_queries):
    client = _client(auditor)
    _tasks_in_many_categories(3)
    client.get(reverse("review-queues"))  # warm the session and the cached labels
    few = _count(lambda: client.get(reverse("review-queues")))
    _tasks_in_many_categories(30, start=3)
    factories.review_cache_reset()
    client.get(reverse("review-queues"))
    many = _count(lambda: client.get(reverse("review-queues")))
    assert many == few
    # user, permissions (one query), held item, the two halves of the queue (overdue, by priority);
    # the session is read from the cache (cached_db), not the database
    with django_assert_max_num_queries(5):
        response = client.get(reverse("review-queues"))
    assert b"Listing 32 cotton shirt" in response.content


def test_item_page_next_and_decide_queries_are_bounded(auditor, django_assert_max_num_queries):
    client = _client(auditor)
    _tasks_in_many_categories(20)
    held = svc.review_claim_next(auditor=auditor)
    client.get(reverse("review-task", args=[held.pk]))  # warm the cached labels
    # user, permissions (one query), the task with its listing/prediction/model version, recent
    # categories, the category-labels stamp, history (the session and the similar pool are cached)
    with django_assert_max_num_queries(6):
        response = client.get(reverse("review-task", args=[held.pk]))
    assert response.status_code == 200
    # user, permissions, the claimed rows (held: yes), the held task with its page rows, recent,
    # labels stamp, history
    with django_assert_max_num_queries(7):
        response = client.post(reverse("review-next"), **HTMX)
    assert response.status_code == 200
    # was 32 (a parent walk per category level, the listing and the category labels fetched again),
    # then 26; now the next task is claimed with its page rows and the session and the permission
    # set cost no second query (21 here: no overdue task, so both halves of the claim run)
    with django_assert_max_num_queries(21):
        response = client.post(
            reverse("review-decide", args=[held.pk]),
            {"action": "approve", "version": held.version},
            **HTMX,
        )
    assert response.status_code == 200 and b"Approved" in response.content


def test_item_page_queries_do_not_grow_with_decided_history(auditor):
    """The 'similar reviewed' and history panels fetch related rows in bulk, not one query per row."""
    client = _client(auditor)
    _tasks_in_many_categories(4)
    first = svc.review_claim_next(auditor=auditor)
    client.get(reverse("review-task", args=[first.pk]))
    few = _count(lambda: client.get(reverse("review-task", args=[first.pk])))
    # decide a dozen similar listings so the similar panel fills up
    for i in range(12):
        factories.review_task(title=f"Red cotton t-shirt twin {i}")
    for _ in range(12):
        task = svc.review_claim_next(auditor=auditor)
        if task.pk == first.pk:
            continue
        review_decisions.review_decide(
            auditor=auditor, task_id=task.pk, version=task.version, action="approve"
        )
    task = svc.review_claim_next(auditor=auditor)
    client.get(reverse("review-task", args=[task.pk]))
    many = _count(lambda: client.get(reverse("review-task", args=[task.pk])))
    assert many <= few + 1, (few, many)


def _suggestion(i: int, leaf, status: str) -> None:
    from knowledge.models import Suggestion

    Suggestion.objects.create(
        kind=Suggestion.Kind.BRAND_CATEGORY,
        key=f"brand_category:arch-test:{i}",
        brand=factories.brand(f"SuggestedBrand{i}"),
        category=leaf,
        status=status,
    )


def test_knowledge_editor_lists_do_not_grow_with_rows(ops_user, django_assert_max_num_queries):
    """Tree, brands, changes and suggestions (whose rows show category paths: no parent walk per row)."""
    client = _client(ops_user)
    for i in range(3):
        leaf = factories.category_path("Apparel", f"Sub{i}", f"Leaf{i}")
        factories.brand(f"Brand{i}", sells=leaf)
        _suggestion(i, leaf, "pending" if i % 2 else "rejected")
    urls = [
        reverse("knowledge-tree"),
        reverse("knowledge-brands"),
        reverse("knowledge-changes"),
        reverse("knowledge-suggestions"),
    ]
    for url in urls:
        client.get(url)
    few = {url: _count(lambda u=url: client.get(u)) for url in urls}
    for i in range(3, 40):
        leaf = factories.category_path(f"Master{i % 4}", f"Sub{i % 7}", f"Leaf{i}")
        factories.brand(f"Brand{i}", sells=leaf)
        _suggestion(i, leaf, "pending" if i % 2 else "rejected")
    for url in urls:
        client.get(url)
    many = {url: _count(lambda u=url: client.get(u)) for url in urls}
    for url in urls:
        assert many[url] <= few[url] + 1, (url, few[url], many[url])
    with django_assert_max_num_queries(21):
        client.get(reverse("knowledge-tree"))


def test_the_permission_set_is_one_query_with_model_backends_answer(auditor):
    """fusionreview.roles.PermissionBackend: a user's own and their groups' permissions in one query,
    the same set Django's ModelBackend computes (inactive users none, superusers all)."""
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.models import Permission, User

    auditor.user_permissions.add(Permission.objects.get(codename="ingest_listing"))
    user = User.objects.get(pk=auditor.pk)
    with CaptureQueriesContext(connection) as ctx:
        perms = user.get_all_permissions()
        assert user.has_perm("classifier.review_listing") and user.has_perm("classifier.ingest_listing")
        assert not user.has_perm("classifier.manage_models")
    assert len(ctx.captured_queries) == 1
    assert perms == ModelBackend().get_all_permissions(User.objects.get(pk=auditor.pk))
    assert {"classifier.review_listing", "classifier.ingest_listing"} <= perms

    user = User.objects.get(pk=auditor.pk)
    user.is_active = False
    assert user.get_all_permissions() == set() and not user.has_perm("classifier.review_listing")

    user, other = User.objects.get(pk=auditor.pk), User.objects.get(pk=auditor.pk)
    user.is_superuser = other.is_superuser = True
    assert user.get_all_permissions() == ModelBackend().get_all_permissions(other)
    assert len(other.get_all_permissions()) == Permission.objects.count()


def test_sessions_come_from_the_cache_and_pages_still_work_while_it_is_away(auditor, settings):
    """The session costs no query while Redis answers, and its absence fails no page (the session is
    then read from and written to the database alone)."""
    settings.SESSION_ENGINE = "fusionreview.sessions"
    client = _client(auditor)
    client.get(reverse("review-queues"))
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("review-queues")).status_code == 200
    assert not [q for q in ctx.captured_queries if "django_session" in q["sql"]]

    live = settings.CACHES
    settings.CACHES = {
        "default": {
            "BACKEND": "fusionreview.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1: connection refused
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    try:
        response = client.get(reverse("review-queues"))
        assert response.status_code == 200 and b"Next up" in response.content
        away = _client(auditor)  # a new sign-in while Redis is away
        assert away.get(reverse("review-queues")).status_code == 200
        away.logout()
        assert away.get(reverse("review-queues")).status_code == 302  # signed out: to the login page
    finally:
        settings.CACHES = live  # the cache fixture's teardown talks to Redis
