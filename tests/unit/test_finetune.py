"""classifier.fusion.finetune on a tiny, untrained model: growth of the head, training, artifacts, the gate."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classifier.fusion.evaluation import accuracy, ece
from classifier.fusion.finetune import FinetuneCancelled, FinetuneError, finetune
from classifier.fusion.gate import frozen_eval_set, gate_compare

COLOURS = {
    "Apparel > Topwear > Tshirts": (200, 30, 30),
    "Apparel > Topwear > Shirts": (30, 200, 30),
    "Footwear > Shoes > Casual Shoes": (30, 30, 200),
    "Accessories > Headwear > Caps": (220, 220, 30),  # not trained on: a category added later
}
TITLES = {
    "Apparel > Topwear > Tshirts": "Puma Men Red Tshirt",
    "Apparel > Topwear > Shirts": "Arrow Men Green Formal Shirt",
    "Footwear > Shoes > Casual Shoes": "Nike Men Blue Casual Shoes",
    "Accessories > Headwear > Caps": "Puma Unisex Yellow Cap",
}


def _jpeg(colour, seed: int) -> bytes:
    img = Image.new("RGB", (48, 64), colour)
    img.putpixel((seed % 48, seed % 64), (0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A catalogue of flat-colour images and an untrained tiny model directory built from it."""
    from classifier.fusion.artifacts import save_model
    from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
    from classifier.fusion.config import FusionConfig
    from classifier.fusion.encoder import TextEncoder
    from classifier.fusion.modeling import FusionModel
    from classifier.fusion.text import category_text

    root = tmp_path_factory.mktemp("cat")
    (root / "images").mkdir()
    rows = []
    for leaf, colour in COLOURS.items():
        m, s, a = leaf.split(" > ")
        for i in range(12):
            rid = f"{len(rows) + 1}"
            (root / "images" / f"{rid}.jpg").write_bytes(_jpeg(colour, i))
            split = "test" if i >= 9 else "train"
            rows.append(
                {
                    "id": rid,
                    "title": TITLES[leaf],
                    "master_category": m,
                    "sub_category": s,
                    "article_type": a,
                    "gender": "Men",
                    "split": split,
                    "image": f"images/{rid}.jpg",
                }
            )
    with open(root / "catalogue.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    snapshot = snapshot_from_catalogue(root / "catalogue.csv", splits=())
    cfg = FusionConfig(
        vision_backbone="resnet",  # a tiny ResNet keeps the unit test fast
        vision_pretrained=False,
        frozen_blocks=0,
        fused_stages=[2, 3, 4],
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 16],
        image_size=32,
        hires_image_size=40,
        dim=32,
        embed_dim=16,
        max_tokens=12,
    )
    leaves = [c for c in COLOURS if "Caps" not in c]
    model = FusionModel(cfg, len(leaves))
    encoder = TextEncoder(None, cfg.max_tokens)
    model.head.category_text.copy_(encoder.sentence_embeddings([category_text(snapshot, c) for c in leaves]))
    base = root / "base"
    save_model(
        base, model, cfg, {"leaves": leaves, "keywords": {}}, {"review_threshold": 0.5}, {"val": {}}, snapshot
    )
    return root, base, rows, snapshot, encoder


def _examples(root: Path, rows, leaf: str | None = None, split: str = "train"):
    out = []
    for r in rows:
        path = f"{r['master_category']} > {r['sub_category']} > {r['article_type']}"
        if r["split"] == split and (leaf is None or path == leaf):
            out.append((str(root / r["image"]), r["title"], path, ""))
    return out


def test_finetune_writes_a_loadable_model_with_the_new_category_and_a_lower_loss(tiny, tmp_path):
    from classifier.fusion.engine import InferenceEngine, ListingInput

    root, base, rows, snapshot, encoder = tiny
    corrections = _examples(root, rows, "Accessories > Headwear > Caps") * 2
    replay = _examples(root, rows)
    replay = [r for r in replay if "Caps" not in r[2]]
    events = []
    out = tmp_path / "ft1"
    metrics = finetune(
        base_model_dir=base,
        examples=corrections,
        replay=replay,
        out_dir=out,
        epochs=6,
        progress_callback=events.append,
        snapshot=snapshot,
        lr=3e-3,
        anchor_weight=0.0,
        encoder=encoder,
        device="cpu",
    )
    ft = metrics["finetune"]
    assert ft["new_leaves"] == ["Accessories > Headwear > Caps"]
    assert ft["corrections"] == len(corrections) and ft["replay"] == len(replay)
    assert ft["loss_history"][-1] < ft["loss_history"][0]
    assert all(torch.isfinite(torch.tensor(ft["loss_history"])))
    for name in (
        "config.json",
        "model.safetensors",
        "labels.json",
        "calibration.json",
        "metrics.json",
        "snapshot.json",
    ):
        assert (out / name).exists(), name
    assert not list(out.glob("*.pkl")) and not list(out.glob("*.pt"))
    labels = json.loads((out / "labels.json").read_text())
    assert labels["leaves"][-1] == "Accessories > Headwear > Caps"
    steps = [e for e in events if e.get("phase") == "training"]
    assert steps and steps[-1]["epoch"] == 6 and steps[-1]["step"] == steps[-1]["total_steps"]
    assert all(e["eta_s"] >= 0 for e in steps)
    engine = InferenceEngine.load(out, device="cpu")
    test = _examples(root, rows, "Accessories > Headwear > Caps", split="test")
    preds = engine.predict_batch([ListingInput(Path(p).read_bytes(), t) for p, t, _, _ in test])
    assert [p.category_id for p in preds] == [c for _, _, c, _ in test]


def test_finetune_stops_when_the_callback_cancels_and_leaves_no_directory(tiny, tmp_path):
    root, base, rows, snapshot, encoder = tiny
    seen = []

    def cancel_at_step_two(ev):
        seen.append(ev)
        return not (ev.get("phase") == "training" and ev["step"] >= 2)

    with pytest.raises(FinetuneCancelled):
        finetune(
            base_model_dir=base,
            examples=_examples(root, rows),
            replay=[],
            out_dir=tmp_path / "x",
            epochs=5,
            progress_callback=cancel_at_step_two,
            snapshot=snapshot,
            encoder=encoder,
            batch_size=8,
            device="cpu",
        )
    assert not (tmp_path / "x").exists()
    assert max(e.get("step", 0) for e in seen) == 2


def test_finetune_refuses_no_corrections_and_unknown_categories(tiny, tmp_path):
    root, base, rows, snapshot, encoder = tiny
    with pytest.raises(FinetuneError, match="no corrections"):
        finetune(
            base_model_dir=base,
            examples=[],
            replay=_examples(root, rows),
            out_dir=tmp_path / "a",
            snapshot=snapshot,
            encoder=encoder,
        )
    bad = [(str(root / rows[0]["image"]), "x", "Nowhere > Nothing > None", "")]
    with pytest.raises(FinetuneError, match="none of the 1 corrections"):
        finetune(
            base_model_dir=base,
            examples=bad,
            replay=[],
            out_dir=tmp_path / "b",
            snapshot=snapshot,
            encoder=encoder,
        )


def test_frozen_eval_set_is_the_same_slice_every_time(tiny):
    root, *_ = tiny
    name1, items1 = frozen_eval_set(root / "catalogue.csv", split="test", size=5, seed=0)
    name2, items2 = frozen_eval_set(root / "catalogue.csv", split="test", size=5, seed=0)
    assert name1 == name2 and [i.key for i in items1] == [i.key for i in items2]
    assert len(items1) == 5 and "test" in name1 and "n=5" in name1
    name3, _ = frozen_eval_set(root / "catalogue.csv", split="test", size=5, seed=1)
    assert name3 != name1


def _metrics(acc, n=300, per_category=None):
    return {
        "n": n,
        "accuracy": {"master": acc, "sub": acc, "article": acc},
        "per_category": per_category or {},
    }


def test_gate_refuses_a_drop_beyond_the_margin_and_says_why():
    base = {"frozen": _metrics(0.80), "recent": _metrics(0.70, n=50)}
    ok, reasons, _ = gate_compare(
        {"frozen": _metrics(0.797), "recent": _metrics(0.75, n=50)}, base, margin_points=0.5
    )
    assert ok and reasons == []
    ok, reasons, _ = gate_compare(
        {"frozen": _metrics(0.79), "recent": _metrics(0.75, n=50)}, base, margin_points=0.5
    )
    assert not ok and "frozen evaluation set" in reasons[0] and "-1.0 points" in reasons[0]
    ok, reasons, _ = gate_compare(
        {"frozen": _metrics(0.80), "recent": _metrics(0.60, n=50)}, base, margin_points=0.5
    )
    assert not ok and "recently reviewed" in reasons[0]


def test_gate_refuses_a_large_category_regression_but_skips_small_ones_and_thin_recent_sets():
    base = {"frozen": _metrics(0.8, per_category={"A": [40, 36], "B": [5, 5]}), "recent": _metrics(0.9, n=5)}
    cand = {"frozen": _metrics(0.8, per_category={"A": [40, 30], "B": [5, 0]}), "recent": _metrics(0.1, n=5)}
    ok, reasons, notes = gate_compare(
        cand, base, category_margin_points=5.0, large_category_min=30, recent_min_items=20
    )
    assert not ok and len(reasons) == 1 and reasons[0].startswith("category A")
    assert any("check skipped" in n for n in notes)


def test_gate_passes_when_nothing_is_in_production():
    ok, reasons, notes = gate_compare({"frozen": _metrics(0.1)}, None)
    assert ok and not reasons and notes


def test_ece_is_zero_when_confidence_matches_accuracy():
    assert ece(np.array([1.0, 1.0]), np.array([True, True])) == pytest.approx(0.0)
    assert ece(np.array([0.9] * 10), np.array([True] * 5 + [False] * 5)) == pytest.approx(0.4)
    assert ece(np.array([]), np.array([], dtype=bool)) == 0.0


def test_accuracy_is_the_share_of_correct_answers_and_zero_for_none():
    assert accuracy([True, False, True, True]) == 0.75
    assert accuracy(np.array([True, False])) == 0.5
    assert accuracy([]) == 0.0
