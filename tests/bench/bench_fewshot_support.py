"""Few-shot settings chosen without `test`: folds of the `support` rows, and what the examples cost `val`.

The emerging types (Track Pants, Kurtis, Caps) have about 20 `support` rows each, the few examples a user
gives for a new category. Their `test` rows are the figure to report, so they cannot choose a setting.
This bench chooses on what a user has: the support rows split into folds (the examples of one fold are
added to the engine, the other fold's rows are predicted with full and vague titles), and `val` with
vague titles, every support row added as an example (how many items of the trained types the new types
take, and how many of those the engine auto-accepts: it must be none).

For each ``fewshot_prior`` (the pseudo-count of the category's zero-shot prototype blended with its
examples' embeddings, ``config.json``) it prints one row and writes the raw figures to ``--out``.

usage:
  .venv/bin/python tests/bench/bench_fewshot_support.py --data ../shared/data/fashion \
      --model fusionreview/demo/model [--priors 0,1,2,4,8] [--folds 2] \
      [--out tests/bench/bench_fewshot_support_results.json]

Prints figures, does not pass or fail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning threads thrash on a shared CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_fusion import EMERGING, emerging_snapshot

from classifier.fusion.data import Row, read_catalogue, vague_titles
from classifier.fusion.engine import InferenceEngine, ListingInput
from classifier.fusion.evaluation import run_rows


def support_folds(rows: list[Row], n_folds: int) -> list[list[Row]]:
    """Each emerging type's support rows dealt into ``n_folds`` folds by id (every fold holds every type)."""
    folds: list[list[Row]] = [[] for _ in range(n_folds)]
    for cid in EMERGING:
        own = sorted((r for r in rows if r.leaf_id == cid), key=lambda r: int(r.id))
        for k, r in enumerate(own):
            folds[k % n_folds].append(r)
    return folds


def add_examples(eng: InferenceEngine, rows: list[Row], data: Path) -> None:
    for cid in EMERGING:
        items = [
            ListingInput((data / r.image).read_bytes(), r.title, key=r.id) for r in rows if r.leaf_id == cid
        ]
        if items:
            eng.add_examples(cid, items)


def measure(
    eng: InferenceEngine, support: list[Row], val: list[Row], vague: dict[str, str], data: Path, n_folds: int
) -> dict:
    out: dict = {}
    folds = support_folds(support, n_folds)
    for kind in ("full_titles", "vague_titles"):
        right = []
        for k, held_out in enumerate(folds):
            eng.clear_examples()
            add_examples(eng, [r for j, f in enumerate(folds) if j != k for r in f], data)
            titles = None if kind == "full_titles" else [vague[r.id] for r in held_out]
            preds, _ = run_rows(eng, held_out, data, titles, desc=f"support fold {k} {kind}")
            right += [p.category_id == r.leaf_id for p, r in zip(preds, held_out, strict=True)]
        out[f"support_{kind}"] = round(float(np.mean(right)), 4)
    eng.clear_examples()
    add_examples(eng, support, data)
    preds, _ = run_rows(eng, val, data, [vague[r.id] for r in val], desc="val vague, examples in")
    taken = [p for p in preds if p.category_id in EMERGING]
    out["val_vague_accuracy"] = round(
        float(np.mean([p.category_id == r.leaf_id for p, r in zip(preds, val, strict=True)])), 4
    )
    out["val_vague_taken_by_new_types"] = round(len(taken) / len(val), 4)
    out["val_vague_taken_and_auto_accepted"] = sum(not p.needs_review for p in taken)
    eng.clear_examples()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="fusionreview/demo/model")
    ap.add_argument("--priors", default="0,1,2,4,8")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("tests/bench/bench_fewshot_support_results.json"))
    args = ap.parse_args()

    eng = InferenceEngine.load(args.model)
    rows = read_catalogue(args.data / "catalogue.csv")
    vague = vague_titles(rows, rows)
    val = [r for r in rows if r.split == "val" and r.leaf_id in set(eng.leaves)]
    support = [r for r in rows if r.split == "support"]
    base = eng.snapshot
    eng.set_snapshot(emerging_snapshot(base))
    preds, _ = run_rows(eng, val, args.data, [vague[r.id] for r in val], desc="val vague, no new types")
    no_new = round(float(np.mean([p.category_id == r.leaf_id for p, r in zip(preds, val, strict=True)])), 4)
    print(f"val vague titles, the new types in the snapshot, no examples: {no_new:.2%}")
    results: dict = {
        "command": " ".join(["bench_fewshot_support.py", *sys.argv[1:]]),
        "model": args.model,
        "model_fewshot_prior": eng.cfg.fewshot_prior,
        "folds": args.folds,
        "support_rows": {EMERGING[c][0]: sum(r.leaf_id == c for r in support) for c in EMERGING},
        "val_vague_accuracy_without_examples": no_new,
        "priors": {},
    }
    print("prior | support full | support vague | val vague | taken by new types | taken, auto-accepted")
    for prior in [float(x) for x in args.priors.split(",")]:
        eng.cfg = replace(eng.cfg, fewshot_prior=prior)
        r = measure(eng, support, val, vague, args.data, args.folds)
        results["priors"][str(prior)] = r
        print(
            f"{prior:5g} | {r['support_full_titles']:.2%} | {r['support_vague_titles']:.2%} | "
            f"{r['val_vague_accuracy']:.2%} | {r['val_vague_taken_by_new_types']:.2%} | "
            f"{r['val_vague_taken_and_auto_accepted']}",
            flush=True,
        )
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"raw figures: {args.out}")


if __name__ == "__main__":
    main()
