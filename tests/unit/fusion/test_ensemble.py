"""Seed ensembles: fusion models of one recipe served as one (logit averaging through the engine, zero- and
few-shot prototypes included), the frozen stages run once, what a directory stores, fine-tuning one."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from classifier.fusion.artifacts import load_model, save_model
from classifier.fusion.data import image_to_array, load_image
from classifier.fusion.engine import InferenceEngine, ListingInput
from classifier.fusion.ensemble import EnsembleModel, combine
from classifier.fusion.finetune import finetune
from classifier.fusion.knowledge import CategoryNode, KnowledgeSnapshot
from classifier.fusion.modeling import FusionModel
from classifier.fusion.onnx_backbone import OnnxBackbone
from classifier.fusion.text import EntityExtractor

from .factories import LEAVES, catalogue_rows, tiny_snapshot, v2_config

ROWS = catalogue_rows(per_leaf=2)
# the `data_dir` fixture fails with what to install when the catalogue is missing (never a silent skip)
pytestmark = pytest.mark.usefixtures("data_dir")
CAPS = "Accessories > Headwear > Caps"


def _member(encoder, seed: int) -> FusionModel:
    cfg = v2_config(seed=seed, frozen_blocks=11)  # blocks 11.. fine-tuned: the stride-16 map is shared
    torch.manual_seed(seed)
    model = FusionModel(cfg, len(LEAVES))
    model.head.category_text.copy_(encoder.sentence_embeddings([leaf.replace(" > ", " ") for leaf in LEAVES]))
    with torch.no_grad():  # members that differ where training would make them differ
        model.head.delta.normal_(0.0, 0.5)
        model.backbone.net._blocks[15]._project_conv.weight.mul_(1.0 + 0.2 * seed)
    return model.eval()


@pytest.fixture(scope="module")
def members(encoder):
    return [_member(encoder, 0), _member(encoder, 1)]


@pytest.fixture(scope="module")
def ensemble_dir(members, tmp_path_factory):
    ens = combine(members)
    d = tmp_path_factory.mktemp("ensemble")
    save_model(d, ens, ens.cfg, {"leaves": list(LEAVES)}, {"review_threshold": 0.5}, {}, tiny_snapshot())
    return d


def _pixels(n: int = 3) -> torch.Tensor:
    return torch.from_numpy(np.stack([image_to_array(load_image(r["bytes"]), 64) for r in ROWS[:n]]))


def _with_caps(snapshot: KnowledgeSnapshot) -> KnowledgeSnapshot:
    new = (
        CategoryNode("Accessories > Headwear", "Headwear", "Accessories"),
        CategoryNode(CAPS, "Caps", "Accessories > Headwear", description="baseball cap with a visor"),
    )
    return replace(snapshot, version=snapshot.version + 1, categories=snapshot.categories + new)


def test_the_ensemble_scores_are_the_mean_of_its_members_scores(members, encoder):
    ens = combine(members)
    text = encoder.encode([r["title"] for r in ROWS[:3]], EntityExtractor(tiny_snapshot()))
    with torch.no_grad():
        out = ens(_pixels(), text)
        outs = [m(_pixels(), text) for m in members]
    assert torch.allclose(out.logits, torch.stack([o.logits for o in outs]).mean(0), atol=1e-4)
    assert torch.allclose(out.image_logits, torch.stack([o.image_logits for o in outs]).mean(0), atol=1e-4)
    maps = torch.stack([o.features.attention for o in outs]).mean(0)
    assert torch.allclose(out.features.attention, maps, atol=1e-6)
    assert not torch.allclose(outs[0].logits, outs[1].logits, atol=1e-2)  # the members do differ


def test_the_frozen_stages_run_once_and_each_member_gets_its_own_later_maps(members):
    ens = combine(members)
    assert ens.shares_early_stages
    with torch.no_grad():
        hs = ens.image_stages(_pixels())
        assert len(hs) == 4  # stride 8, stride 16 (shared), stride 32 of each member
        for i, m in enumerate(members):
            own = m.image_stages(_pixels())
            got = ens.member_stages(hs, i)
            assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, own, strict=True))


def test_combine_refuses_members_of_another_recipe_or_the_same_seed(members, encoder):
    with pytest.raises(ValueError, match="different seeds"):
        combine([members[0], members[0]])
    other = _member(encoder, 2)
    other.cfg = replace(other.cfg, epochs=other.cfg.epochs + 1)
    with pytest.raises(ValueError, match="epochs"):
        combine([members[0], other])
    with pytest.raises(ValueError, match="at least two"):
        EnsembleModel(members[0].cfg, len(LEAVES), 1)


def test_a_directory_stores_each_members_fine_tuned_part_and_reloads_as_an_ensemble(ensemble_dir, members):
    stored = load_file(str(ensemble_dir / "model.safetensors"))
    assert all(k.startswith(("members.0.", "members.1.")) for k in stored)
    assert any(k.startswith("members.1.backbone.net._blocks.15.") for k in stored)
    assert not any(".backbone.net._blocks.3." in k for k in stored)  # frozen: from the package
    model, cfg, _ = load_model(ensemble_dir)
    assert isinstance(model, EnsembleModel) and cfg.ensemble_size == 2
    with torch.no_grad():
        a, _ = model.forward_image_only(_pixels())
        b, _ = combine(members).forward_image_only(_pixels())
    assert torch.allclose(a, b, atol=1e-5)


def test_the_engine_serves_the_members_mean_with_zero_and_few_shot_prototypes(ensemble_dir, members, encoder):
    snapshot = tiny_snapshot()
    labels = {"leaves": list(LEAVES)}
    engines = [InferenceEngine.load(ensemble_dir, device="cpu", quantized=False)] + [
        InferenceEngine(m, m.cfg, labels, {"review_threshold": 0.5}, snapshot, encoder) for m in members
    ]
    for eng in engines:
        eng.use_verification = False  # no knowledge-conflict second pass: compare one pass each
        eng.set_snapshot(_with_caps(snapshot))  # a category no member trained on (zero-shot)
    items = [ListingInput(r["bytes"], r["title"], key=r["id"]) for r in ROWS[:4]]

    def raw_logits(eng: InferenceEngine) -> torch.Tensor:
        _, raws = eng.predict_detailed(items, force_path="full")
        return torch.stack([r.logits for r in raws])

    ens, *single = engines
    assert CAPS in ens.leaves
    assert torch.allclose(raw_logits(ens), torch.stack([raw_logits(e) for e in single]).mean(0), atol=1e-3)
    few = [ListingInput(r["bytes"], "Nike Unisex Cap", key=f"cap-{r['id']}") for r in ROWS[4:6]]
    for eng in engines:
        eng.add_examples(CAPS, few)
    assert torch.allclose(raw_logits(ens), torch.stack([raw_logits(e) for e in single]).mean(0), atol=1e-3)
    served = ens.predict_batch(items)
    assert all(p.category_id in ens.leaves and 0.0 <= p.confidence <= 1.0 for p in served)


def test_the_compressed_build_of_an_ensemble_runs_the_shared_backbone_on_onnx_runtime(ensemble_dir, tmp_path):
    small = InferenceEngine.load(ensemble_dir, device="cpu", quantized=True, onnx_cache_dir=tmp_path)
    assert small.model_version.endswith("-int8-ort")
    assert isinstance(small.model.members[0].backbone, OnnxBackbone)
    full = InferenceEngine.load(ensemble_dir, device="cpu", quantized=False)
    items = [ListingInput(r["bytes"], r["title"], key=r["id"]) for r in ROWS[:4]]
    a = torch.stack([r.image_logits for r in small.predict_detailed(items, force_path="full")[1]])
    b = torch.stack([r.image_logits for r in full.predict_detailed(items, force_path="full")[1]])
    assert float((a - b).abs().max()) < 0.1 * float(b.abs().max())  # INT8 projection layers: close, not equal


def test_fine_tuning_an_ensemble_writes_an_ensemble(ensemble_dir, encoder, tmp_path):
    rows = [(r["bytes"], r["title"], r["leaf"], "") for r in ROWS]
    out = tmp_path / "tuned"
    metrics = finetune(
        base_model_dir=ensemble_dir,
        examples=rows[:4],
        replay=rows[4:],
        out_dir=out,
        epochs=1,
        encoder=encoder,
        device="cpu",
        holdout_fraction=0.0,
    )
    assert metrics["finetune"]["corrections"] == 4
    tuned, cfg, _ = load_model(out)
    base, _, _ = load_model(ensemble_dir)
    assert isinstance(tuned, EnsembleModel) and cfg.ensemble_size == 2
    for i in range(2):  # every member learned
        a = tuned.members[i].head.delta
        b = base.members[i].head.delta
        assert not torch.allclose(a, b)
