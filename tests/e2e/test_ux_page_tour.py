"""Every auditor and admin page at 1366x768: it loads, fits the screen's width (no sideways scrolling),
and its screenshot is saved as an artefact (test-artifacts/e2e/tour-*.png)."""

from __future__ import annotations

import random

import pytest
from django.utils import timezone

from classifier.models import ModelEvaluation, ModelVersion, TrainingJob
from tests import factories
from tests.e2e.conftest import shoot

pytestmark = pytest.mark.e2e


def _frozen(accuracy: float, labels: list[str], seed: int) -> dict:
    rng = random.Random(seed)
    items = []
    for i in range(120):
        truth = labels[i % len(labels)]
        pred = truth if rng.random() < accuracy else labels[(i + 1) % len(labels)]
        items.append([truth, pred, round(rng.uniform(0.5, 1.0), 3), rng.random() < 0.2])
    right = sum(t == p for t, p, *_ in items) / len(items)
    metrics = {
        "n": len(items),
        "accuracy": {"master": 0.99, "sub": 0.96, "article": right},
        "per_category": {},
        "ece": 0.02,
        "review_rate": 0.2,
        "auto_accept_precision": 0.98,
        "latency_ms": {"mean": 9.0, "p95": 15.0},
    }
    return {"set": "frozen:tour", "metrics": metrics, "items": items}


def _overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def _visit(page, url: str, name: str, *, status: int = 200) -> None:
    response = page.goto(url)
    assert response is not None and response.status == status, (url, response and response.status)
    assert _overflow(page) <= 0, f"{url} scrolls sideways at 1366 px"
    shoot(page, f"tour-{name}")


def test_every_page_fits_a_laptop_screen(live_server, browser_page, login, auditor, admin_user):
    factories.review_cache_reset()
    labels = [f"Apparel > Topwear > {name}" for name in ("Tshirts", "Shirts", "Tops", "Sweaters")]
    tasks = [factories.review_task(title=f"Tour listing {n} cotton tee") for n in range(3)]
    v0 = ModelVersion.objects.create(
        name="fusion-v1",
        artifact_dir="/nonexistent",
        checksum="a" * 64,
        status=ModelVersion.Status.PROMOTED,
        promoted_at=timezone.now(),
        review_threshold=0.8734,
        metrics={"frozen_eval": _frozen(0.9, labels, 1)},
    )
    v1 = ModelVersion.objects.create(
        name="fusion-v1+ft1",
        artifact_dir="/nonexistent",
        checksum="b" * 64,
        parent=v0,
        review_threshold=0.8734,
        metrics={"frozen_eval": _frozen(0.93, labels, 2)},
    )
    ModelEvaluation.objects.create(
        candidate=v0, baseline=v0, eval_set="frozen:tour", passed=True, margin_points=0.5
    )
    ModelEvaluation.objects.create(
        candidate=v1,
        baseline=v0,
        eval_set="frozen:tour",
        passed=True,
        margin_points=0.5,
        candidate_metrics={"notes": ["frozen evaluation set: leaf accuracy 93.0% vs 90.0% in production"]},
    )
    job = TrainingJob.objects.create(
        base_version=v0,
        data_window_end=timezone.now(),
        status=TrainingJob.Status.SUCCEEDED,
        example_count=25,
        result_version=v1,
        log="06:00:00 25 corrections\n06:01:00 gate passed\n",
    )
    page = browser_page
    base = live_server.url

    login(page, auditor)
    _visit(page, f"{base}/review/", "auditor-queues")
    _visit(page, f"{base}/review/task/{tasks[0].pk}/", "auditor-item")
    _visit(page, f"{base}/review/bulk/", "auditor-bulk")
    _visit(page, f"{base}/review/audit/", "auditor-audit")
    _visit(page, f"{base}/review/stats/", "auditor-stats")
    _visit(page, f"{base}/listings/", "auditor-listings")
    _visit(page, f"{base}/listings/{tasks[0].listing_id}/", "auditor-listing")
    _visit(page, f"{base}/models/", "auditor-forbidden", status=403)
    assert "You don't have access to this page" in page.inner_text("main")
    _visit(page, f"{base}/no-such-page/", "auditor-not-found", status=404)
    assert "There is nothing at this address" in page.inner_text("main")
    page.context.clear_cookies()

    admin_user.is_staff = True
    admin_user.save()
    login(page, admin_user)
    _visit(page, f"{base}/models/", "admin-models")
    assert "87.34" not in page.inner_text("#versions") and "0.873" in page.inner_text("#versions")
    _visit(page, f"{base}/models/{v1.pk}/", "admin-version")
    assert "against fusion-v1 (in production then)" in page.inner_text("#gate-verdict")
    for img in page.query_selector_all(".plots img"):
        img.scroll_into_view_if_needed()
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img)
    shoot(page, "tour-admin-version-full", full_page=True)
    _visit(page, f"{base}/models/{v0.pk}/", "admin-version-in-production")
    assert "the version every candidate is compared with" in page.inner_text("#gate-verdict")
    _visit(page, f"{base}/models/compare/?a={v0.pk}&b={v1.pk}", "admin-compare")
    _visit(page, f"{base}/models/training/new/", "admin-training-new")
    _visit(page, f"{base}/models/training/{job.pk}/", "admin-training-job")
    _visit(page, f"{base}/admin/", "admin-django-admin")
    assert "Model versions" in page.inner_text("body")
    _visit(page, f"{base}/admin/classifier/listing/", "admin-django-admin-listings")
