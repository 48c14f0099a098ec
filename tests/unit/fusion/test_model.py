"""Model and engine behaviour on tiny configs (CPU, a few real catalogue images)."""

import json

import numpy as np
import pytest
import torch

from classifier.fusion.artifacts import load_model, save_model
from classifier.fusion.engine import FusionPrediction, InferenceEngine, InvalidImageError, ListingInput
from classifier.fusion.knowledge import CategoryNode
from classifier.fusion.modeling import FusionModel
from classifier.fusion.text import EntityExtractor
from classifier.fusion.training import compute_loss, level_matrices

from .factories import LEAVES, catalogue_rows, tiny_config, tiny_snapshot

ROWS = catalogue_rows(per_leaf=4)
WATCHES = "Accessories > Watches > Watches"
# the `data_dir` fixture fails with what to install when the catalogue is missing (never a silent skip)
pytestmark = pytest.mark.usefixtures("data_dir")


def _batch(encoder, cfg, rows):
    from classifier.fusion.data import image_to_array, load_image

    snap = tiny_snapshot()
    pix = torch.from_numpy(np.stack([image_to_array(load_image(r["bytes"]), cfg.image_size) for r in rows]))
    text = encoder.encode([r["title"] for r in rows], EntityExtractor(snap))
    y = torch.tensor([LEAVES.index(r["leaf"]) for r in rows])
    return pix, text, y


def _model(encoder, cfg):
    torch.manual_seed(0)
    m = FusionModel(cfg, len(LEAVES))
    m.head.category_text.copy_(encoder.sentence_embeddings([leaf.replace(" > ", " ") for leaf in LEAVES]))
    return m


def _engine(encoder, cfg, model=None):
    model = model or _model(encoder, cfg)
    return InferenceEngine(
        model.eval(), cfg, {"leaves": list(LEAVES)}, {"review_threshold": 0.5}, tiny_snapshot(), encoder
    )


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"use_stage_fusion": False},
        {"use_text_attention": False},
        {"use_text": False},
        {"use_image": False},
    ],
)
def test_forward_gives_finite_logits_of_the_right_shape(encoder, variant):
    cfg = tiny_config(**variant)
    pix, text, _ = _batch(encoder, cfg, ROWS)
    out = _model(encoder, cfg).eval()(pix, text)
    assert out.logits.shape == (len(ROWS), len(LEAVES))
    assert torch.isfinite(out.logits).all()


# the variants with an image, a title and text-guided attention: the ones with a spatial attention map
@pytest.mark.parametrize("variant", [{}, {"use_stage_fusion": False}])
def test_text_guided_attention_is_a_map_in_0_1_per_item(encoder, variant):
    cfg = tiny_config(**variant)
    assert cfg.use_image and cfg.use_text and cfg.use_text_attention
    pix, text, _ = _batch(encoder, cfg, ROWS)
    with torch.no_grad():
        att = _model(encoder, cfg).eval()(pix, text).features.attention
    assert att.dim() == 3 and att.shape[0] == len(ROWS)
    assert float(att.min()) >= 0 and float(att.max()) <= 1


def test_training_loss_goes_down_on_a_small_batch(encoder):
    cfg = tiny_config()
    pix, text, y = _batch(encoder, cfg, ROWS)
    model = _model(encoder, cfg).train()
    _, mats = level_matrices(list(LEAVES), tiny_snapshot())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    choice = torch.zeros(len(ROWS), dtype=torch.long)
    losses = []
    for _ in range(25):
        loss = compute_loss(model, model(pix.float() / 255, text), y, choice, mats, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_save_and_load_give_identical_outputs(encoder, tmp_path):
    cfg = tiny_config()
    model = _model(encoder, cfg).eval()
    pix, text, _ = _batch(encoder, cfg, ROWS)
    save_model(tmp_path, model, cfg, {"leaves": list(LEAVES)}, {"temperature": 1.3}, {}, tiny_snapshot())
    assert {p.name for p in tmp_path.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "labels.json",
        "calibration.json",
        "metrics.json",
        "snapshot.json",
    }
    again, cfg2, _ = load_model(tmp_path)
    with torch.no_grad():
        assert torch.equal(model(pix, text).logits, again(pix, text).logits)
    assert cfg2 == cfg
    eng = InferenceEngine.load(tmp_path, device="cpu")
    items = [ListingInput(r["bytes"], r["title"], key=r["id"]) for r in ROWS[:3]]
    a, b = eng.predict_batch(items), InferenceEngine.load(tmp_path, device="cpu").predict_batch(items)
    assert [p.confidence for p in a] == [p.confidence for p in b]
    assert eng.model_version.startswith(tmp_path.name)


def test_engine_predictions_are_complete_and_json_safe(encoder):
    eng = _engine(encoder, tiny_config())
    items = [ListingInput(r["bytes"], r["title"], key=r["id"]) for r in ROWS]
    preds = eng.predict_batch(items)
    assert len(preds) == len(items) and all(isinstance(p, FusionPrediction) for p in preds)
    for p, r in zip(preds, ROWS, strict=True):
        json.dumps(p.to_dict())
        assert p.key == r["id"] and p.path in {"light", "full", "full+hires"} and p.latency_ms > 0
        assert p.category_id in LEAVES and p.article_type == p.category_id.split(" > ")[-1]
        assert (
            0 <= p.confidence <= 1 and p.level_confidences[0] >= p.level_confidences[1] >= p.confidence - 1e-6
        )
        assert set(p.top_k) == {"master", "sub", "article"}
    # a title that starts with a known brand names it
    titan = eng.predict_batch([ListingInput(ROWS[0]["bytes"], "Titan Men Black Dial Analog Watch", key="t")])[
        0
    ]
    assert titan.brand == "Titan"


def test_full_path_predictions_carry_a_spatial_attention_map(encoder):
    eng = _engine(encoder, tiny_config())
    items = [ListingInput(r["bytes"], r["title"], key=r["id"]) for r in ROWS]
    preds, _ = eng.predict_detailed(items, force_path="full")  # no item takes the light path
    assert len(preds) == len(items)
    for p in preds:
        assert p.path in {"full", "full+hires"}
        assert p.attention_map.ndim == 2 and p.attention_map.dtype == np.float32
        assert p.attention_map.min() >= 0 and p.attention_map.max() <= 1


def test_the_light_path_has_its_own_threshold(encoder):
    # keywords and the entity bonus off: the light path agrees with the image head, every item is eligible
    eng = _engine(encoder, tiny_config(gate_confidence=0.0, gate_complexity_max=1.0, keyword_weight=0.0))
    eng.cfg.entity_boost = 0.0
    items = [ListingInput(r["bytes"], r["title"], key=r["id"]) for r in ROWS]
    preds, _ = eng.predict_detailed(items, review_threshold=0.0)
    assert any(p.path == "light" for p in preds)
    eng.calibration["light_threshold"] = (
        1.01  # the light path never reaches it: every item takes the full path
    )
    eng.clear_caches()
    preds, _ = eng.predict_detailed(items, review_threshold=0.0)
    assert all(p.path in {"full", "full+hires"} for p in preds)


def test_a_title_that_names_no_type_is_held_to_the_untyped_threshold(encoder):
    """calibration.json's untyped_threshold applies to vague titles only, never below the review threshold
    passed in, on both paths; a model calibrated without one routes every title at the review threshold."""
    eng = _engine(encoder, tiny_config(gate_confidence=0.0, gate_complexity_max=1.0))
    shirt = next(r for r in ROWS if r["leaf"] == LEAVES[0])
    typed = ListingInput(shirt["bytes"], "Puma Men Blue Tshirt", key="typed")
    vague = ListingInput(shirt["bytes"], "Puma Men Blue", key="vague")
    before = eng.predict_batch([typed, vague], review_threshold=0.0)
    assert not any(p.needs_review for p in before)
    assert eng.untyped_threshold(0.3) == 0.3
    eng.calibration["untyped_threshold"] = 1.000001  # no vague title reached the target on val
    eng.clear_caches()
    after = eng.predict_batch([typed, vague], review_threshold=0.0)
    assert not after[0].needs_review  # the title names a type: the review threshold
    assert after[1].needs_review and after[1].route_reason == "low_confidence"
    # the auditor is told why: a hint that the photo carried the decision, which routes nothing itself
    held = [f for f in after[1].knowledge_findings if f["code"] == "title_names_no_type"]
    assert len(held) == 1 and held[0]["severity"] == "hint" and "names no product type" in held[0]["message"]
    assert not any(f["code"] == "title_names_no_type" for f in after[0].knowledge_findings)
    assert after[1].confidence == pytest.approx(before[1].confidence)  # routing moves, confidence does not
    eng.calibration["untyped_threshold"] = 0.2
    assert eng.untyped_threshold(0.6) == 0.6 and eng.untyped_threshold(0.1) == 0.2


def test_reroute_holds_vague_titles_to_the_untyped_threshold(encoder):
    from classifier.fusion.pipeline import reroute

    eng = _engine(encoder, tiny_config())
    shirt = next(r for r in ROWS if r["leaf"] == LEAVES[0])
    preds = eng.predict_batch(
        [ListingInput(shirt["bytes"], "Puma Men Blue Tshirt"), ListingInput(shirt["bytes"], "Puma Men Blue")],
        review_threshold=0.0,
    )
    typed, vague = reroute(preds, 0.0, untyped_threshold=1.000001)
    assert not typed.needs_review and vague.needs_review
    assert not any(p.needs_review for p in reroute(preds, 0.0))


def _quiet(*_: object) -> None:
    pass


def _calibration_sets():
    """The tiny catalogue's items with full titles, the same with vague ones (brand + gender), their leaves."""
    items = [ListingInput(r["bytes"], r["title"], key=r["id"]) for r in ROWS]
    vague = [ListingInput(r["bytes"], " ".join(r["title"].split()[:2]), key=r["id"]) for r in ROWS]
    return items, vague, [r["leaf"] for r in ROWS]


def test_calibration_chooses_the_untyped_threshold_on_vague_titles_only_with_enough_of_them(
    encoder, monkeypatch
):
    from classifier.fusion import pipeline

    items, vague, truth = _calibration_sets()

    eng = _engine(encoder, tiny_config())
    cal, _ = pipeline.calibrate_items(eng, items, truth, 0.9, vague_items=vague, log=_quiet)
    assert "untyped_threshold" not in cal and "untyped_threshold" not in eng.calibration  # too few

    monkeypatch.setattr(pipeline, "MIN_UNTYPED_ITEMS", 10)
    eng = _engine(encoder, tiny_config())
    cal, _ = pipeline.calibrate_items(eng, items, truth, 0.9, vague_items=vague, log=_quiet)
    assert cal["untyped_threshold_items"] >= len(vague)  # every vague title (and any full one naming no type)
    assert eng.calibration["untyped_threshold"] == cal["untyped_threshold"]
    served = eng.predict_batch(vague)
    floor = eng.untyped_threshold()
    assert all(p.needs_review for p in served if p.confidence < floor)


def test_mix_heads_blends_the_text_head_into_typed_titles_and_the_image_head_into_untyped_ones():
    from classifier.fusion.outcome import blend_heads, mix_heads

    fused, text, image = (
        torch.tensor([3.0, 1.0, 0.0]),
        torch.tensor([0.0, 4.0, 0.0]),
        torch.tensor([0.0, 1.0, 4.0]),
    )
    assert torch.equal(blend_heads(fused, image, 0.0), fused)
    assert torch.allclose(blend_heads(fused, image, 1.0), image)
    assert torch.allclose(blend_heads(fused, image, 0.25), torch.tensor([2.25, 1.0, 1.0]))
    weights = {"text_weight": 0.5, "image_weight": 0.25}
    batch = [x.repeat(2, 1) for x in (fused, text, image)]
    typed = torch.tensor([True, False])
    mixed = mix_heads(*batch, title_names_type=typed, **weights)
    assert torch.allclose(mixed[0], torch.tensor([1.5, 2.5, 0.0]))  # names a type: the text head
    assert torch.allclose(mixed[1], torch.tensor([2.25, 1.0, 1.0]))  # names none: the image head
    no_heads = mix_heads(batch[0], None, None, title_names_type=typed, **weights)
    assert torch.equal(no_heads, batch[0])


def test_each_title_kind_mixes_in_its_own_head(encoder):
    """calibration.json's weights change the full path's logits: the text head's for a title that names a
    type (typed_text_weight), the image head's for one that names none (untyped_image_weight); a model
    calibrated without them serves the fused logits."""
    eng = _engine(encoder, tiny_config())
    shirt = next(r for r in ROWS if r["leaf"] == LEAVES[0])
    items = [
        ListingInput(shirt["bytes"], "Puma Men Blue Tshirt", key="typed"),
        ListingInput(shirt["bytes"], "Puma Men Blue", key="vague"),
    ]
    _, before = eng.predict_detailed(items, force_path="full", review_threshold=0.0)
    assert not torch.allclose(before[1].logits, before[1].image_logits)
    eng.calibration["untyped_image_weight"] = 1.0  # all image: the photo decides
    eng.clear_caches()
    _, after = eng.predict_detailed(items, force_path="full", review_threshold=0.0)
    assert torch.allclose(after[0].logits, before[0].logits)  # the title names a type: untouched
    assert torch.allclose(after[1].logits, before[1].image_logits)
    eng.calibration["typed_text_weight"] = 1.0  # all text
    eng.clear_caches()
    _, after = eng.predict_detailed(items, force_path="full", review_threshold=0.0)
    assert torch.allclose(after[0].logits, before[0].text_logits)
    assert torch.allclose(after[1].logits, before[1].image_logits)


def test_calibration_chooses_the_head_weights_with_enough_titles_of_each_kind(encoder, monkeypatch):
    from classifier.fusion import pipeline
    from classifier.fusion.outcome import prediction_names_type

    items, vague, truth = _calibration_sets()
    eng = _engine(encoder, tiny_config())
    eng.calibration.update(untyped_image_weight=0.3, typed_text_weight=0.2)  # a previous calibration's
    cal, _ = pipeline.calibrate_items(eng, items, truth, 0.9, vague_items=vague, log=_quiet)
    for key, before in (("untyped_image_weight", 0.3), ("typed_text_weight", 0.2)):  # too few titles: kept
        assert key not in cal and eng.calibration[key] == before

    monkeypatch.setattr(pipeline, "MIN_HEAD_WEIGHT_TITLES", 10)
    eng = _engine(encoder, tiny_config())
    cal, _ = pipeline.calibrate_items(eng, items, truth, 0.9, vague_items=vague, log=_quiet)
    for key in pipeline.HEAD_WEIGHT_KEYS:
        assert cal[key] in pipeline.HEAD_WEIGHTS and eng.calibration[key] == cal[key]
    # every vague title (and any full one naming no type)
    assert cal["untyped_image_weight_items"] >= len(vague)
    assert cal["typed_text_weight_items"] + cal["untyped_image_weight_items"] == 2 * len(items)
    # the chosen weights are right on at least as many titles of their kind as the fused logits alone
    chosen = {key: cal[key] for key in pipeline.HEAD_WEIGHT_KEYS}

    def right(weights, typed):
        eng.calibration.update(weights)
        eng.clear_caches()
        preds, _ = eng.predict_detailed([*items, *vague], force_path="full", review_threshold=0.0)
        return sum(
            p.category_id == t
            for p, t in zip(preds, truth * 2, strict=True)
            if prediction_names_type(p) == typed
        )

    for typed in (True, False):
        assert right(chosen, typed) >= right(dict.fromkeys(chosen, 0.0), typed)


def test_undecodable_image_raises_a_clear_error(encoder):
    eng = _engine(encoder, tiny_config())
    with pytest.raises(InvalidImageError, match="bad-1"):
        eng.predict_batch(
            [ListingInput(ROWS[0]["bytes"], "ok"), ListingInput(b"not an image", "x", key="bad-1")]
        )
    assert issubclass(InvalidImageError, ValueError)


def test_brand_conflict_is_reported_in_words_and_routed_to_review(encoder):
    cfg = tiny_config()
    model = _model(encoder, cfg)
    with torch.no_grad():
        # Watches gets the T-shirts prototype: the two scores always tie and a tie goes to the first leaf
        # (T-shirts), so the model never answers Watches, the only category Titan sells
        model.head.category_text[LEAVES.index(WATCHES)] = model.head.category_text[0]
    eng = _engine(encoder, cfg, model)
    eng.calibration["review_threshold"] = 0.0
    shirt = next(r for r in ROWS if r["leaf"] == LEAVES[0])
    p = eng.predict_batch([ListingInput(shirt["bytes"], "Titan Men Blue Tshirt")], review_threshold=0.0)[0]
    assert p.category_id != WATCHES
    assert "knowledge_conflict" in p.review_reasons and p.needs_review
    assert any(f["message"].startswith("brand Titan sells Watches, not") for f in p.knowledge_findings)
    assert p.path == "full+hires"


CAPS = "Accessories > Headwear > Caps"


def _add_caps(eng: InferenceEngine) -> None:
    """Ops add Caps to the graph after the model was trained (a leaf it has never seen)."""
    snap = eng.snapshot
    eng.set_snapshot(
        snap.with_changes(
            categories=(
                *snap.categories,
                CategoryNode("Accessories > Headwear", "Headwear", "Accessories"),
                CategoryNode(
                    CAPS, "Caps", "Accessories > Headwear", ("cap", "baseball cap"), "a cap with a visor"
                ),
            )
        )
    )
    assert eng.snapshot_version == snap.version + 1


def test_category_added_to_snapshot_is_predictable_without_retraining(encoder):
    cfg = tiny_config(fewshot_prior=0.5)
    eng = _engine(encoder, cfg)
    new_id = CAPS
    _add_caps(eng)
    items = [ListingInput(r["bytes"], r["title"]) for r in ROWS]
    before = eng.predict_batch(items)
    assert all(any(n == "Caps" for n, _ in p.top_k["article"]) for p in before)  # zero-shot candidate
    examples = [ListingInput(r["bytes"], r["title"]) for r in ROWS if r["leaf"] == LEAVES[1]]
    eng.add_examples(new_id, examples)
    after = eng.predict_batch(examples)
    assert all(p.category_id == new_id for p in after)
    with pytest.raises(ValueError):
        eng.add_examples("Nope > Nothing", examples)


def test_a_new_category_read_from_the_photo_alone_goes_to_a_person(encoder):
    """The val threshold says nothing about a leaf the model never trained on: predicted without the
    title naming it, it routes (new_category, with the finding in words); named by the title, it does not."""
    eng = _engine(encoder, tiny_config(fewshot_prior=0.5))
    _add_caps(eng)
    examples = [ListingInput(r["bytes"], r["title"]) for r in ROWS if r["leaf"] == LEAVES[1]]
    eng.add_examples(CAPS, examples)
    from_photo = eng.predict_batch(examples, review_threshold=0.0)
    assert all(p.category_id == CAPS for p in from_photo)
    assert all(p.needs_review and "new_category" in p.review_reasons for p in from_photo)
    assert from_photo[0].route_reason == "new_category"
    finding = next(f for f in from_photo[0].knowledge_findings if f["code"] == "new_category_unconfirmed")
    assert finding["message"].startswith("“Caps” was added after this model was trained")
    named = eng.predict_batch(
        [ListingInput(examples[0].image, "Puma Men Blue Baseball Cap")], review_threshold=0.0
    )
    assert named[0].category_id == CAPS
    assert "new_category" not in named[0].review_reasons
