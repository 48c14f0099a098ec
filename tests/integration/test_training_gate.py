"""Every registered version is evaluated on the frozen set (the bundled one too, with its threshold); the
gate compares a candidate with the version in production and refuses one fine-tuned on too few corrections;
the version page draws its figures. With the real demo model on a 20-item frozen set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from classifier.models import ModelEvaluation, ModelVersion, TrainingJob
from classifier.registry import evaluation as svc
from classifier.registry import services as registry_services
from tests import factories

pytestmark = pytest.mark.integration

SAMPLE = Path(django_settings.BASE_DIR) / "fusionreview" / "demo" / "sample" / "catalogue.csv"


@pytest.fixture
def gate_settings(settings, demo_model_dir, tmp_path):
    factories.plain_static_storage(settings)
    settings.FUSION_MODEL_DIR = demo_model_dir
    settings.FUSION_DEVICE = "cpu"
    settings.FUSION_EVAL_CATALOGUE = str(SAMPLE)
    settings.FUSION_EVAL_SIZE = 20
    settings.EVALUATE_ON_REGISTER = True
    settings.FINETUNE_MIN_CORRECTIONS = 20
    settings.GATE_RECENT_MIN_ITEMS = 20
    return settings


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_every_version_is_evaluated_when_registered_against_production(
    gate_settings, seeded_knowledge, demo_model_dir, tmp_path, client, admin_user
):
    from classifier.registry.services import model_version_bundled_register

    # The bundled model: registered with its threshold, promoted, and evaluated at once as the reference.
    v0 = model_version_bundled_register()
    v0.refresh_from_db()
    calibration = json.loads((demo_model_dir / "calibration.json").read_text())
    assert v0.status == ModelVersion.Status.PROMOTED
    assert v0.review_threshold == pytest.approx(calibration["review_threshold"])
    reference = v0.evaluations.get()
    assert reference.baseline_id == v0.pk and reference.passed
    assert "reference" in " ".join(reference.candidate_metrics["notes"])
    frozen = v0.metrics["frozen_eval"]
    assert frozen["metrics"]["n"] == 20 and len(frozen["items"]) == 20
    assert frozen["set"].startswith("frozen:sample:test:n=20")
    # real figures: the bundled model gets most of the sample's test photos right
    assert frozen["metrics"]["accuracy"]["article"] > 0.7, (frozen["metrics"], frozen["items"][:5])

    # A candidate (same weights, another directory): evaluated on registration, against v0.
    v1 = registry_services.model_version_register(
        artifact_dir=_copy_model(demo_model_dir, tmp_path / "v1"), name="v1", parent=v0
    )
    evaluation = v1.evaluations.get()
    assert evaluation.baseline_id == v0.pk and evaluation.passed, evaluation.reasons
    assert v1.review_threshold == pytest.approx(calibration["review_threshold"])
    assert any("in production" in note for note in evaluation.candidate_metrics["notes"])

    # A candidate fine-tuned on 3 corrections: the gate refuses it whatever its accuracy.
    v2 = registry_services.model_version_register(
        artifact_dir=_copy_model(demo_model_dir, tmp_path / "v2"), name="v2", parent=v0, evaluate=False
    )
    TrainingJob.objects.create(
        base_version=v0,
        data_window_end=timezone.now(),
        status=TrainingJob.Status.SUCCEEDED,
        example_count=3,
        result_version=v2,
    )
    refused = svc.model_version_evaluate(version=v2)
    assert not refused.passed
    assert any(
        "only 3 approved corrections" in r and "FINETUNE_MIN_CORRECTIONS" in r for r in refused.reasons
    )
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.REJECTED
    assert ModelEvaluation.objects.filter(baseline__isnull=True).count() == 0  # never "against nothing"

    client.force_login(admin_user)
    html = client.get(reverse("model-list")).content.decode()
    assert "evaluation pending" not in html and f"{v0.review_threshold:.3f}" in html
    page = client.get(reverse("model-detail", args=[v1.pk])).content.decode()
    assert f">{v0.name}</a> (in production then)" in page
    assert 'id="level-accuracy"' in page and "Leaf (article type)" in page
    page = client.get(reverse("model-detail", args=[v0.pk])).content.decode()
    assert "the version every candidate is compared with" in page and "nothing in production" not in page
    # no threshold reached 99% on val's vague titles: the page says where they go
    assert 'id="version-untyped-threshold"' in page and "every one goes to a person" in page
    # and the photo weighs more in their answer (the bundled model's weight, chosen on val)
    assert 'id="version-untyped-image-weight"' in page and "the image head weighs 0.65" in page
    assert 'id="version-typed-text-weight"' in page and "the text head's own answer weighs 0.35" in page
    for kind in ("confusion", "risk-coverage", "history"):
        response = client.get(reverse("model-plot", args=[v1.pk, kind]))
        assert response.status_code == 200 and response["Content-Type"] == "image/png", kind
        assert response.content.startswith(b"\x89PNG") and len(response.content) > 5000, kind
    assert client.get(reverse("model-plot", args=[v1.pk, "nope"])).status_code == 404
