"""Which review-threshold rule keeps its precision on items it was not chosen on? (`val` only, never `test`.)

Takes the full path's confidence of every `val` item once (full titles), then, for each rule, chooses the
threshold on a random half of `val` and measures the other half's auto-accepted precision and share (300
random halves). The rules: the lowest threshold whose accepted items reach the target precision as
observed (z = 0, the rule before), or by the Wilson lower bound z standard errors below it
(`FusionConfig.precision_bound_z`). Also reports how precise the light path is at the model's review
threshold when it has no threshold of its own (why it has one now).

usage:
  .venv/bin/python tests/bench/bench_fusion_v2_threshold.py --data ../shared/data/fashion \
      --model fusionreview/demo/model [--out tests/bench/bench_fusion_v2_results_threshold.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from classifier.fusion.data import read_catalogue
from classifier.fusion.engine import InferenceEngine
from classifier.fusion.evaluation import run_rows
from classifier.fusion.pipeline import threshold_inputs
from classifier.fusion.training import choose_threshold

RULES_Z = (0.0, 0.5, 1.0, 1.28, 1.645)


def held_out(conf, correct, flagged, target: float, z: float, splits: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n = len(conf)
    precisions, shares = [], []
    for _ in range(splits):
        order = rng.permutation(n)
        a, b = order[: n // 2], order[n // 2 :]
        t = choose_threshold(conf[a], correct[a], flagged[a], target, z=z)
        accepted = (conf[b] >= t) & ~flagged[b]
        precisions.append(float(correct[b][accepted].mean()) if accepted.any() else 1.0)
        shares.append(float(accepted.mean()))
    p = np.array(precisions)
    t_all = choose_threshold(conf, correct, flagged, target, z=z)
    accepted = (conf >= t_all) & ~flagged
    return {
        "z": z,
        "held_out_precision_mean": round(float(p.mean()), 4),
        "held_out_precision_p10": round(float(np.percentile(p, 10)), 4),
        "held_out_reaches_target": round(float((p >= target).mean()), 3),
        "held_out_share_mean": round(float(np.mean(shares)), 4),
        "whole_val_threshold": round(t_all, 4),
        "whole_val_share": round(float(accepted.mean()), 4),
        "whole_val_precision": round(float(correct[accepted].mean()), 4) if accepted.any() else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="fusionreview/demo/model")
    ap.add_argument("--splits", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="tests/bench/bench_fusion_v2_results_threshold.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    rows = read_catalogue(data / "catalogue.csv", ("val",))
    truth = [r.leaf_id for r in rows]
    eng = InferenceEngine.load(a.model, device="cpu")
    target = float(eng.calibration.get("target_precision", eng.cfg.target_precision))

    full, _ = run_rows(eng, rows, data, force_path="full", review_threshold=1.0, desc="val, full path")
    conf, correct, flagged = threshold_inputs(full, truth)
    rules = [held_out(conf, correct, flagged, target, z, a.splits) for z in RULES_Z]

    # the light path at the review threshold without a threshold of its own
    light_threshold = eng.calibration.get("light_threshold", 0.0)
    eng.calibration["light_threshold"] = 0.0
    eng.clear_caches()
    served, _ = run_rows(eng, rows, data, desc="val, gated")
    eng.calibration["light_threshold"] = light_threshold
    light = np.array([p.path == "light" for p in served])
    light_correct = threshold_inputs(served, truth)[1][light]

    out = {
        "command": " ".join(["bench_fusion_v2_threshold.py", *(argv or sys.argv[1:])]),
        "model": a.model,
        "val_items": len(rows),
        "target_precision": target,
        "rules": rules,
        "light_path_without_its_threshold": {
            "review_threshold": round(float(eng.review_threshold), 4),
            "share": round(float(light.mean()), 4),
            "precision": round(float(light_correct.mean()), 4) if light.any() else None,
            "full_path_precision_on_the_same_items": round(float(correct[light].mean()), 4)
            if light.any()
            else None,
        },
    }
    print(
        f"target {target:.2%}, {len(rows)} val items, {a.splits} random halves (chosen on one, measured on the other)"
    )
    print(
        f"{'z':>6} {'held-out precision':>19} {'p10':>7} {'reaches':>8} {'share':>7} | whole val: threshold, share @ precision"
    )
    for r in rules:
        print(
            f"{r['z']:>6} {r['held_out_precision_mean']:>19.2%} {r['held_out_precision_p10']:>7.2%} "
            f"{r['held_out_reaches_target']:>8.0%} {r['held_out_share_mean']:>7.1%} | "
            f"{r['whole_val_threshold']:.4f}, {r['whole_val_share']:.1%} @ {r['whole_val_precision']:.2%}"
        )
    lp = out["light_path_without_its_threshold"]
    print(
        f"light path at the review threshold {lp['review_threshold']} with no threshold of its own: "
        f"{lp['share']:.1%} of items, {lp['precision']:.2%} right (the full path on them: "
        f"{lp['full_path_precision_on_the_same_items']:.2%})"
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
