"""Which calibration routes best? Held-out-within-`val` ECE of the served confidence (never `test`).

Takes each `val` item's scores once (full path and light path, full and vague titles, every temperature at 1
but the image head's, which the gate reads), then for each method fits on half of `val` and measures the ECE
of what the engine would serve on the other half (2-fold, rows kept whole, 5 random splits, pooled per
split): one full-path temperature (the current calibration), per-path temperatures (light / full path), a
per-title temperature (full path: titles naming a product type / the others), both; fitted on full titles
only (as now) or on full + vague titles. The review threshold stays at the model's own.

usage:
  .venv/bin/python tests/bench/bench_fusion_v2_calibration.py --data ../shared/data/fashion \
      --model fusionreview/demo/model [--out tests/bench/bench_fusion_v2_results_calibration.json]
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

from classifier.fusion.data import read_catalogue, vague_titles
from classifier.fusion.engine import InferenceEngine, ListingInput
from classifier.fusion.evaluation import ece
from classifier.fusion.pipeline import calibration_scores
from classifier.fusion.training import (
    CalibrationScores,
    PathTemperatures,
    cross_validated_ece,
    fit_path_temperatures,
    served,
)


def take_scores(eng: InferenceEngine, rows, data: Path, titles: list[str] | None) -> CalibrationScores:
    """The items' scores with the full-path and light temperatures at 1 (the image temperature kept)."""
    pos = {c: i for i, c in enumerate(eng.leaves)}
    items = [
        ListingInput((data / r.image).read_bytes(), titles[k] if titles else r.title, key=r.id)
        for k, r in enumerate(rows)
    ]
    return calibration_scores(eng, items, torch.tensor([pos.get(r.leaf_id, -1) for r in rows]))


def cat(a: CalibrationScores, b: CalibrationScores) -> CalibrationScores:
    return CalibrationScores(*(torch.cat([getattr(a, f), getattr(b, f)]) for f in a.__dataclass_fields__))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scores", help="cache of the val scores (.pt); taken again when absent")
    ap.add_argument("--out", default="tests/bench/bench_fusion_v2_results_calibration.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    all_rows = read_catalogue(data / "catalogue.csv")
    vague = vague_titles(all_rows, all_rows)
    eng = InferenceEngine.load(a.model, device="cpu")
    known = set(eng.leaves)
    rows = [r for r in all_rows if r.split == "val" and r.leaf_id in known]
    cal0 = dict(eng.calibration)
    thr = float(eng.review_threshold)
    if a.scores and Path(a.scores).exists():
        d = torch.load(a.scores)
        full, vag = CalibrationScores(**d["full"]), CalibrationScores(**d["vague"])
    else:
        eng.reserve_image_cache(len(rows))
        full = take_scores(eng, rows, data, None)
        vag = take_scores(eng, rows, data, [vague[r.id] for r in rows])
        if a.scores:
            torch.save({"full": full.__dict__, "vague": vag.__dict__}, a.scores)
    both = cat(full, vag)
    n = len(rows)
    groups = np.concatenate([np.arange(n), np.arange(n)])
    masks = {"full_titles": np.arange(2 * n) < n, "vague_titles": np.arange(2 * n) >= n}
    current = PathTemperatures(float(cal0["temperature"]), float(cal0["temperature"]), 1.0)
    report: dict = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "model": a.model,
        "n_val_rows": n,
        "review_threshold": thr,
        "calibration_now": cal0,
    }
    c, k, light = served(full, current, thr)
    report["in_sample_now"] = {
        "full_titles_ece": round(ece(c, k), 4),
        "light_share": round(float(light.mean()), 4),
        "vague_titles_ece": round(ece(*served(vag, current, thr)[:2]), 4),
    }
    print("in-sample, current calibration:", report["in_sample_now"], flush=True)
    methods = {
        "single": {"per_path": False, "per_title": False},
        "per_path": {"per_path": True, "per_title": False},
        "per_title": {"per_path": False, "per_title": True},
        "per_path+per_title": {"per_path": True, "per_title": True},
    }
    cv: dict = {}
    for fit_on in ("full", "full+vague"):
        for name, kw in methods.items():

            def fit(s: CalibrationScores, kw=kw, fit_on=fit_on) -> PathTemperatures:
                if fit_on == "full":  # the held-out vague titles of the fitting rows are not used
                    s = CalibrationScores(
                        *(getattr(s, f)[: len(s.labels) // 2] for f in s.__dataclass_fields__)
                    )
                return fit_path_temperatures(s, thr, **kw)

            # rows stay whole in each fold and a boolean subset keeps the order, so a fit set is
            # [its rows' full titles; the same rows' vague titles]
            r = cross_validated_ece(both, groups, fit, thr, masks=masks)
            t_all = fit(both)
            cv[f"{name} (fit on {fit_on} titles)"] = {"cv_ece": r, "fitted_on_all_val": t_all.as_dict()}
            print(f"{name:>20} fit on {fit_on:>10}: held-out ECE {r} | on all val {t_all}", flush=True)
    report["cross_validated"] = cv
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
