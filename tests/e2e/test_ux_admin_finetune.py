"""An admin, in a real browser with a real Celery worker: starts a fine-tune from approved corrections,
watches it run, sees the gate's comparison with the version in production, promotes the candidate and
rolls back. Screenshots of each page at 1366x768 are saved as artefacts.

Small on purpose (12 corrections, 1 epoch, 20 replay rows, a 20-item frozen set): the figures are noise,
the path through the pages is what is tested; the gate's rules are tested in tests/integration.
"""

from __future__ import annotations

import pytest

from classifier.models import ModelVersion, TrainingJob
from tests import factories
from tests.e2e.conftest import shoot
from tests.integration.conftest import (  # noqa: F401  (fixtures used by name)
    celery_broker,
    celery_worker_process,
    demo_model_dir,
    make_catalogue_listings,
    redis_urls,
    seeded_knowledge,
    worker_cache,
    worker_media_root,
)
from tests.integration.test_training_worker import _approve_corrections

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def worker_extra_env(tmp_path) -> dict[str, str]:
    return {
        "FUSION_VERSIONS_DIR": str(tmp_path / "versions"),
        "FUSION_EVAL_SIZE": "20",
        "FINETUNE_REPLAY_MAX": "20",
        "FINETUNE_MIN_CORRECTIONS": "10",
        "PROMOTION_MARGIN": "100",
        "PROMOTION_CATEGORY_MARGIN": "100",
        "TRAINING_HEARTBEAT_TIMEOUT": "600",
    }


def test_admin_fine_tunes_watches_the_job_sees_the_gate_and_rolls_back(
    celery_worker_process,  # noqa: F811
    seeded_knowledge,  # noqa: F811
    demo_model_dir,  # noqa: F811
    make_catalogue_listings,  # noqa: F811
    live_server,
    browser_page,
    login,
    admin_user,
    auditor,
    settings,
):
    from classifier.registry.services import model_version_bundled_register

    settings.FINETUNE_MIN_CORRECTIONS = 10
    factories.plain_static_storage(settings)
    v0 = model_version_bundled_register()
    _approve_corrections(make_catalogue_listings(12, split="val", source="reviewed"), auditor, v0)

    page = browser_page
    page.set_default_timeout(20_000)
    login(page, admin_user)
    page.goto(live_server.url + "/models/")
    assert v0.name in page.inner_text("#versions")
    shoot(page, "admin-01-models")

    page.click("text=Start fine-tuning…")
    assert "12 approved corrections" in page.inner_text("main")
    assert page.inner_text("#min-corrections") == "10"
    page.fill("input[name=epochs]", "1")
    shoot(page, "admin-02-training-new")
    page.click("button:has-text('Queue the job')")
    page.wait_for_url("**/models/training/*/")
    job = TrainingJob.objects.get()

    # Watch it: the progress partial polls every 2 s while the worker runs the job.
    page.wait_for_selector("[data-status='running']", timeout=240_000)
    shoot(page, "admin-03-training-running")
    page.wait_for_selector("[data-status='succeeded'], [data-status='failed']", timeout=480_000)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, (job.error, job.log)
    assert "gate passed" in page.inner_text(".log-tail")
    shoot(page, "admin-04-training-done")

    # The gate's comparison on the candidate's page: against the version in production, real figures.
    v1 = job.result_version
    v0.refresh_from_db()
    assert v0.metrics["frozen_eval"]["metrics"]["accuracy"]["article"] > 0.5
    page.click(f"text={v1.name}")
    page.wait_for_selector("#gate-verdict")
    verdict = page.inner_text("#gate-verdict")
    assert "passed" in verdict and f"against {v0.name} (in production then)" in verdict
    levels = page.inner_text("#level-accuracy")
    assert f"{v0.name} (in production)" in levels and "Leaf (article type)" in levels and "points" in levels
    for alt in ("Accuracy per level of every version", "Risk-coverage", "Confusion matrix"):
        selector = f"img[alt^='{alt}']"
        page.locator(selector).scroll_into_view_if_needed()  # the plots load lazily
        page.wait_for_function(
            "s => { const i = document.querySelector(s); return i.complete && i.naturalWidth > 0 }",
            arg=selector,
        )
        assert page.eval_on_selector(selector, "img => img.naturalWidth") > 300, alt  # drawn and loaded
    shoot(page, "admin-05-candidate-gate", full_page=True)

    # Promote it, then roll back to the version that served before.
    page.check("form.promote input[name=confirm]")
    page.click("#btn-promote")
    page.wait_for_selector("#version-status:has-text('In production')")
    v1.refresh_from_db()
    assert v1.status == ModelVersion.Status.PROMOTED
    page.goto(live_server.url + "/models/")
    assert v0.name in page.inner_text("form:has(#btn-rollback)")
    page.check("form:has(#btn-rollback) input[name=confirm]")
    page.click("#btn-rollback")
    page.wait_for_selector(f"text=Rolled back: {v0.name} is in production again.")
    shoot(page, "admin-06-rolled-back")
    v0.refresh_from_db()
    v1.refresh_from_db()
    assert v0.status == ModelVersion.Status.PROMOTED and v1.status == ModelVersion.Status.RETIRED
