"""Fusion v2 benchmark on `test` (never tuned on): trained models side by side, full and vague titles.

For each model directory: article-type accuracy of the image head alone, the text head alone, the fused
model (always the full path) and the gated engine as served; auto-accepted share and precision at the
model's own `val` threshold; ECE; the emerging types (Track Pants, Kurtis, Caps) zero-shot and with the
`support` rows as prototypes, and what those examples cost the other types on vague titles (accuracy,
share taken by the new types, how many of those were auto-accepted); items/s for the image-only path,
the gated engine, the full path and the INT8 serving build (`InferenceEngine.load(..., quantized=True)`),
with the share of items on each path; for that build, also the share of full-path decisions equal to full
precision.
`--peer` also runs `shared/tools/pretrained_peer.py` (frozen EfficientNet-Lite0 + LR, naive late fusion
with MiniLM: slow, it embeds all of `train`).

usage:
  .venv/bin/python tests/bench/bench_fusion_v2.py --data ../shared/data/fashion \
      --models v1=var/models/fusion-v1,v2=fusionreview/demo/model [--quantized v2] [--peer] \
      [--limit N] [--out tests/bench/bench_fusion_v2_results.json] [--merge]
  the backbone-from-scratch ablation (issue 10), added to the same results:
  .venv/bin/python tests/bench/bench_fusion_v2.py --data ../shared/data/fashion \
      --models v2-scratch=var/models/fusion-v2-scratch --merge

Prints figures, does not pass or fail; raw figures go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning threads thrash on a shared CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_fusion import EMERGING, emerging_snapshot

from classifier.fusion.data import read_catalogue, vague_titles
from classifier.fusion.engine import InferenceEngine, ListingInput
from classifier.fusion.evaluation import head_accuracy, run_rows, summarize


def accuracy_report(
    eng: InferenceEngine,
    rows,
    data: Path,
    vague: dict[str, str],
    tag: str,
    log,
    decisions: dict[str, list[int]],
    reference: dict[str, list[int]] | None = None,
) -> dict:
    """Accuracy per title kind. The full path's decisions go into ``decisions``; with the full-precision
    model's (``reference``), the share of equal decisions is reported too (less noisy than an accuracy gap)."""
    out: dict = {}
    for kind, titles in (("full_titles", None), ("vague_titles", [vague[r.id] for r in rows])):
        _, raws = run_rows(eng, rows, data, titles, force_path="full", desc=f"{tag} {kind} full path")
        fp = list(raws)
        gated, _ = run_rows(eng, rows, data, titles, desc=f"{tag} {kind} gated")
        s = summarize(gated, rows, eng.review_threshold)
        names = [c.rsplit(" > ", 1)[-1] for c in eng.leaves]
        decisions[kind] = [int(r.logits.argmax()) for r in fp]
        full_acc = float(
            np.mean([names[j] == x.article_type for j, x in zip(decisions[kind], rows, strict=True)])
        )
        out[kind] = {
            "image_only": head_accuracy(raws, rows, eng.leaves, "image_logits"),
            "text_only": head_accuracy(raws, rows, eng.leaves, "text_logits"),
            "fused_full_path": round(full_acc, 4),
            "served_gated": s,
        }
        if reference is not None:
            same = np.mean([a == b for a, b in zip(decisions[kind], reference[kind], strict=True)])
            out[kind]["same_decision_as_full_precision"] = round(float(same), 4)
        g = s
        log(
            f"[{tag}] {kind}: image-only {out[kind]['image_only']} text-only {out[kind]['text_only']} "
            f"fused(full path) {out[kind]['fused_full_path']} served {g['accuracy']['article']} | "
            f"auto {g['auto_accepted_share']} @ {g['auto_accepted_precision']} | ECE {g['ece']} | "
            f"paths {g['paths']}" + ("" if reference is None else f" | same decision {same:.4f}")
        )
    return out


def emerging_report(eng: InferenceEngine, data: Path, all_rows, vague, log) -> dict:
    base = eng.snapshot
    known = set(eng.leaves)  # the rows the accuracy report counts (their leaf is in the model's snapshot)
    eng.set_snapshot(emerging_snapshot(base))
    rows = [r for r in all_rows if r.split == "test" and r.leaf_id in EMERGING]
    out = {"n": len(rows)}

    def acc(tag: str) -> dict:
        res = {}
        for kind, titles in (("full_titles", None), ("vague_titles", [vague[r.id] for r in rows])):
            preds, _ = run_rows(eng, rows, data, titles, desc=f"emerging {tag} {kind}")
            per = {
                EMERGING[c][0]: round(
                    float(
                        np.mean(
                            [p.category_id == c for p, r in zip(preds, rows, strict=True) if r.leaf_id == c]
                        )
                    ),
                    4,
                )
                for c in EMERGING
            }
            per["all"] = round(
                float(np.mean([p.category_id == r.leaf_id for p, r in zip(preds, rows, strict=True)])), 4
            )
            res[kind] = per
        return res

    out["zero_shot"] = acc("zero-shot")
    sup = [r for r in all_rows if r.split == "support"]
    for cid in EMERGING:
        items = [
            ListingInput((data / r.image).read_bytes(), r.title, key=r.id) for r in sup if r.leaf_id == cid
        ]
        eng.add_examples(cid, items)
    out["support_rows"] = {EMERGING[c][0]: sum(r.leaf_id == c for r in sup) for c in EMERGING}
    out["few_shot"] = acc("few-shot")
    # What the new types cost the others: vague titles of every other type, with the examples in.
    others = [r for r in all_rows if r.split == "test" and r.leaf_id in known]
    preds, _ = run_rows(eng, others, data, [vague[r.id] for r in others], desc="emerging few-shot, others")
    taken = [p for p in preds if p.category_id in EMERGING]
    out["few_shot_other_types_vague"] = {
        "n": len(others),
        "accuracy": round(
            float(np.mean([p.category_id == r.leaf_id for p, r in zip(preds, others, strict=True)])), 4
        ),
        "taken_by_new_types": round(len(taken) / max(1, len(others)), 4),
        "taken_and_auto_accepted": sum(not p.needs_review for p in taken),
    }
    log(f"emerging zero-shot {out['zero_shot']} | few-shot {out['few_shot']}")
    log(f"other types, vague titles, with the new types' examples in: {out['few_shot_other_types_vague']}")
    eng.clear_examples()
    eng.set_snapshot(base)
    return out


def throughput(eng: InferenceEngine, items: list[ListingInput], force: str | None, batch: int = 32) -> dict:
    eng.clear_caches()
    eng.predict_detailed(items[:batch], force_path=force)  # warm-up
    eng.clear_caches()
    t = time.perf_counter()
    preds = []
    for i in range(0, len(items), batch):
        preds += eng.predict_detailed(items[i : i + batch], force_path=force)[0]
    dt = time.perf_counter() - t
    paths: dict[str, int] = {}
    for p in preds:
        paths[p.path] = paths.get(p.path, 0) + 1
    return {
        "items_per_s": round(len(items) / dt, 2),
        "paths": {k: round(v / len(preds), 4) for k, v in paths.items()},
    }


def run_peer(data: Path, log) -> dict:
    tool = (data / "../../tools/pretrained_peer.py").resolve()
    t = time.time()
    out = subprocess.run(
        [sys.executable, str(tool), str(data)], capture_output=True, text=True, check=True
    ).stdout
    log(out.strip())
    res = {"seconds": round(time.time() - t, 1), "raw": out.strip()}
    m = re.search(r"image-only ([\d.]+)%", out)
    res["image_only"] = float(m.group(1)) / 100 if m else None
    for kind in ("full", "vague"):
        m = re.search(rf"{kind}: text ([\d.]+)% late-fusion ([\d.]+)%", out)
        if m:
            res[kind] = {"text_only": float(m.group(1)) / 100, "late_fusion": float(m.group(2)) / 100}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", required=True, help="name=dir,name=dir")
    ap.add_argument(
        "--quantized", default="", help="names of models also measured as the compressed build (INT8 + ORT)"
    )
    ap.add_argument("--peer", action="store_true")
    ap.add_argument("--limit", type=int, help="only the first N test rows (a quick look, not the figures)")
    ap.add_argument("--throughput-items", type=int, default=256)
    ap.add_argument("--no-emerging", action="store_true")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="tests/bench/bench_fusion_v2_results.json")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the other models (and the peer) already in --out; each model records its own command",
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    all_rows = read_catalogue(data / "catalogue.csv")
    vague = vague_titles(all_rows, all_rows)
    test = [r for r in all_rows if r.split == "test"]
    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    report: dict = {
        "command": command,
        "machine": {"threads": a.threads, "torch": torch.__version__, "cpus": os.cpu_count()},
        "limit": a.limit,
        "models": {},
    }
    if a.merge and Path(a.out).exists():
        report = json.loads(Path(a.out).read_text())
        for rep in report["models"].values():  # models from an earlier run keep that run's command
            rep.setdefault("command", report.get("command"))

    def log(msg: str) -> None:
        print(msg, flush=True)

    def save() -> None:
        Path(a.out).write_text(json.dumps(report, indent=1))

    if a.peer:
        report["peer"] = run_peer(data, log)
        save()
    quant = {q for q in a.quantized.split(",") if q}
    for spec in a.models.split(","):
        name, d = spec.split("=", 1)
        # the full-precision run's full-path decisions: what the compressed build is compared with
        full_precision: dict[str, list[int]] = {}
        for q in (False, True) if name in quant else (False,):
            tag = name + ("-int8" if q else "")
            eng = InferenceEngine.load(d, device="cpu", quantized=q)
            known = set(eng.leaves)
            rows = [r for r in test if r.leaf_id in known][: a.limit or None]
            rep = {
                "command": command,
                "model_version": eng.model_version,
                "calibration": eng.calibration,
                "n_test": len(rows),
            }
            decisions: dict[str, list[int]] = {}
            rep["test"] = accuracy_report(
                eng, rows, data, vague, tag, log, decisions, full_precision if q else None
            )
            if not q:
                full_precision = decisions
            if not q and not a.no_emerging:
                rep["emerging"] = emerging_report(eng, data, all_rows, vague, log)
            items = [
                ListingInput((data / r.image).read_bytes(), r.title, key=r.id)
                for r in test[: a.throughput_items]
            ]
            if not a.no_throughput:
                rep["throughput"] = {
                    "image_only_path": throughput(eng, items, "light"),
                    "gated": throughput(eng, items, None),
                    "full_path": throughput(eng, items, "full"),
                }
                log(f"[{tag}] throughput {rep['throughput']}")
            m = (
                json.loads((Path(d) / "metrics.json").read_text())
                if (Path(d) / "metrics.json").exists()
                else {}
            )
            rep["train_seconds"] = m.get("train_seconds")
            c = eng.cfg
            rep["recipe"] = {
                "vision_backbone": c.vision_backbone,
                "vision_pretrained": c.vision_pretrained,
                "frozen_blocks": c.frozen_blocks if c.vision_pretrained else 0,
                "image_size": c.image_size,
                "epochs_planned": c.epochs,
                "epochs_run": m.get("epochs"),
                "augmented_views": c.augmented_views,
            }
            old = report["models"].get(tag, {})
            kept = [k for k in ("emerging", "throughput") if k in old and k not in rep]
            if kept:  # a merge that skipped these keeps the earlier run's figures, marked as such
                rep.update({k: old[k] for k in kept})
                rep["kept_from_earlier_run"] = {"keys": kept, "command": old.get("command")}
            report["models"][tag] = rep
            save()
    log(f"written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
