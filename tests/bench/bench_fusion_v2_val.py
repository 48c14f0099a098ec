"""The figures a model is chosen on: served on `val` (never `test`), full and vague titles, per model.

Each model directory is served as it is (its own `val` calibration and thresholds): article-type accuracy,
macro-F1, ECE and the auto-accepted share and precision at its threshold, on full titles and on the vague
copy of `val` (every category word gone). The choice rule of `classifier/fusion/README.md`: a candidate
replaces the bundled model when it is better on full titles AND vague titles AND the auto-accepted share.

usage:
  .venv/bin/python tests/bench/bench_fusion_v2_val.py --data ../shared/data/fashion \
      --models v2=fusionreview/demo/model,v2-seed1=var/models/fusion-v2-seed1,v2-ensemble=var/models/fusion-v2-ens \
      [--out tests/bench/bench_fusion_v2_results_val.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from classifier.fusion.data import read_catalogue
from classifier.fusion.engine import InferenceEngine
from classifier.fusion.evaluation import head_accuracy, run_rows, summarize
from classifier.fusion.outcome import prediction_names_type
from classifier.fusion.pipeline import vague_titles_of

KEEP = ("accuracy", "article_macro_f1", "ece", "auto_accepted_share", "auto_accepted_precision", "paths")


def evaluate(model_dir: str, data: Path) -> dict[str, object]:
    eng = InferenceEngine.load(model_dir, device="cpu")
    rows = [r for r in read_catalogue(data / "catalogue.csv") if r.split == "val"]
    vague = vague_titles_of(rows, data)
    out: dict[str, object] = {
        "review_threshold": round(eng.review_threshold, 4),
        "untyped_threshold": round(eng.untyped_threshold(), 6),
        "n": len(rows),
    }
    for kind, titles in (("full", None), ("vague", [vague[r.id] for r in rows])):
        preds, raws = run_rows(eng, rows, data, titles, desc=f"{Path(model_dir).name} {kind}")
        summary = summarize(preds, rows, eng.review_threshold)
        out[kind] = {k: summary[k] for k in KEEP}
        out[kind]["image_only"] = head_accuracy(raws, rows, eng.leaves, "image_logits")
        untyped = [(p, r) for p, r in zip(preds, rows, strict=True) if not prediction_names_type(p)]
        accepted = [p.category_id == r.leaf_id for p, r in untyped if not p.needs_review]
        out[kind]["titles_naming_no_type"] = {  # held to the untyped threshold
            "n": len(untyped),
            "auto_accepted_share": round(len(accepted) / max(len(untyped), 1), 4),
            "auto_accepted_precision": round(sum(accepted) / len(accepted), 4) if accepted else None,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", default="v2=fusionreview/demo/model", help="name=dir,name=dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="tests/bench/bench_fusion_v2_results_val.json")
    ap.add_argument("--merge", action="store_true", help="keep the other models already in --out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    command = " ".join(["bench_fusion_v2_val.py", *sys.argv[1:]])
    results: dict[str, object] = {"command": command, "models": {}}
    if a.merge and Path(a.out).exists():  # each model keeps the command that measured it
        results = json.loads(Path(a.out).read_text(encoding="utf-8"))
        for rep in results["models"].values():  # type: ignore[union-attr]
            rep.setdefault("command", results["command"])
        results["command"] = command
    models = parse_models(a.models)
    print(
        f"{'model':<14} {'image':>7} {'full':>7} {'vague':>7} {'auto (full) @ precision':>24} "
        f"{'ECE full/vague':>15}"
    )
    for name, model_dir in models:
        r = evaluate(model_dir, data)
        results["models"][name] = {"dir": model_dir, "command": command, **r}  # type: ignore[index]
        full, vague = r["full"], r["vague"]
        assert isinstance(full, dict) and isinstance(vague, dict)
        print(
            f"{name:<14} {full['image_only'] or 0:>7.2%} {full['accuracy']['article']:>7.2%} "
            f"{vague['accuracy']['article']:>7.2%} "
            f"{full['auto_accepted_share']:>14.1%} @ {full['auto_accepted_precision']:.2%} "
            f"{full['ece']:>7.2%}/{vague['ece']:.2%}"
        )
    Path(a.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"written to {a.out}")
    return 0


def parse_models(spec: str) -> list[tuple[str, str]]:
    out = []
    for part in spec.split(","):
        name, _, d = part.partition("=")
        if not d:
            raise SystemExit(f"--models: {part!r} is not name=dir")
        out.append((name.strip(), d.strip()))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
