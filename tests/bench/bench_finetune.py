"""Benchmark: fine-tune on 500 corrections of one category; does the frozen set hold and the category improve?

Run as a script (not collected by pytest):

    .venv/bin/python tests/bench/bench_finetune.py [--category "Footwear > Flip Flops > Flip Flops"] [--epochs 3]

Corrections are simulated from the catalogue's `train` rows of one category, lowest base confidence first
(the rows an auditor would have corrected), repeated if the category has fewer than 500. A replay sample of
2x as many `train` rows of other categories is mixed in, as the training job does. Figures: leaf accuracy on
the frozen evaluation set (300 `test` rows, seed 0, the same definition as the promotion gate) and on every
`test` row of the corrected category, before and after; seconds per job on this machine.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "fusionreview" / "demo" / "model"))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fashion"))
    p.add_argument("--category", default="Footwear > Flip Flops > Flip Flops")
    p.add_argument("--corrections", type=int, default=500)
    p.add_argument("--replay-ratio", type=float, default=2.0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--device", default=None)
    a = p.parse_args()

    import torch

    from classifier.fusion.data import read_catalogue
    from classifier.fusion.engine import InferenceEngine, ListingInput
    from classifier.fusion.finetune import finetune
    from classifier.fusion.gate import LabelledItem, evaluate, frozen_eval_set

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = Path(a.data)
    rows = read_catalogue(data / "catalogue.csv")
    print(f"device {device}, torch threads {torch.get_num_threads()}, base model {a.model}")
    base = InferenceEngine.load(a.model, device=device)
    if a.category not in base.train_leaves:
        print(f"{a.category!r} is not a leaf of the base model")
        return 2
    set_name, frozen = frozen_eval_set(
        data / "catalogue.csv", split="test", size=300, seed=0, leaves=set(base.train_leaves)
    )
    cat_test = [
        LabelledItem(str(data / r.image), r.title, r.leaf_id, key=r.id)
        for r in rows
        if r.split == "test" and r.leaf_id == a.category
    ]
    cat_train = [r for r in rows if r.split == "train" and r.leaf_id == a.category]

    # the corrections: the category's train rows the base model is least sure of
    t0 = time.perf_counter()
    confs = []
    for s in range(0, len(cat_train), 64):
        chunk = cat_train[s : s + 64]
        preds = base.predict_batch([ListingInput((data / r.image).read_bytes(), r.title) for r in chunk])
        confs += [(p.confidence if p.category_id == a.category else 0.0) for p in preds]
    ranked = [r for _, r in sorted(zip(confs, cat_train, strict=True), key=lambda x: x[0])]
    wrong = sum(1 for c in confs if c == 0.0)
    corr_rows = (ranked * (a.corrections // max(1, len(ranked)) + 1))[: a.corrections]
    examples = [(str(data / r.image), r.title, r.leaf_id, "") for r in corr_rows]
    others = [r for r in rows if r.split == "train" and r.leaf_id != a.category]
    replay_rows = random.Random(0).sample(others, int(a.corrections * a.replay_ratio))
    replay = [(str(data / r.image), r.title, r.leaf_id, "") for r in replay_rows]
    print(
        f"{a.category}: {len(cat_train)} train rows ({wrong} misclassified by the base), "
        f"{len(examples)} corrections, {len(replay)} replay rows; ranking took {time.perf_counter() - t0:.0f}s"
    )

    before_frozen = evaluate(base, frozen)
    before_cat = evaluate(base, cat_test)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ft"
        t1 = time.perf_counter()
        metrics = finetune(
            base_model_dir=a.model,
            examples=examples,
            replay=replay,
            out_dir=out,
            epochs=a.epochs,
            lr=a.lr,
            device=device,
            encoder=base.encoder,
        )
        job_s = time.perf_counter() - t1
        tuned = InferenceEngine.load(out, device=device)
        t2 = time.perf_counter()
        after_frozen = evaluate(tuned, frozen)
        after_cat = evaluate(tuned, cat_test)
        eval_s = time.perf_counter() - t2

    def pct(m):
        return 100 * m["accuracy"]["article"]

    d_frozen = pct(after_frozen) - pct(before_frozen)
    d_cat = pct(after_cat) - pct(before_cat)
    print(f"frozen set {set_name}")
    print(
        f"  leaf accuracy   {pct(before_frozen):6.2f}% -> {pct(after_frozen):6.2f}%  ({d_frozen:+.2f} points; "
        f"{'within' if d_frozen >= -0.5 else 'OUTSIDE'} the 0.5-point margin)"
    )
    print(f"  ECE             {before_frozen['ece']:.4f} -> {after_frozen['ece']:.4f}")
    moved = {
        leaf: (before_frozen["per_category"][leaf][1], after_frozen["per_category"].get(leaf, [0, 0])[1], n)
        for leaf, (n, _) in before_frozen["per_category"].items()
        if after_frozen["per_category"].get(leaf, [0, 0])[1] != before_frozen["per_category"][leaf][1]
    }
    for leaf, (b, a_, n) in sorted(moved.items()):
        print(f"    {leaf}: {b}/{n} -> {a_}/{n} correct")
    print(
        f"  review rate     {100 * before_frozen['review_rate']:.1f}% -> {100 * after_frozen['review_rate']:.1f}%"
    )
    print(f"corrected category, all {len(cat_test)} test rows")
    print(f"  leaf accuracy   {pct(before_cat):6.2f}% -> {pct(after_cat):6.2f}%  ({d_cat:+.2f} points)")
    ft = metrics["finetune"]
    print(
        f"job: {ft['epochs']} epochs, losses {ft['loss_history']}, held-out acc {ft['holdout'].get('accuracy')}"
    )
    print(
        f"time per job: {job_s:.1f}s fine-tuning ({ft['train_seconds']}s in the training loop) "
        f"+ {eval_s:.1f}s evaluating the candidate on {len(frozen) + len(cat_test)} items, on {device}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
