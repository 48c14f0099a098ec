"""Fusion model benchmark: modality baselines and coupling ablations (full and vague titles), calibration,
auto-accept at the val-chosen threshold, emerging categories zero-/few-shot, throughput and path shares.

usage:
  .venv/bin/python tests/bench/bench_fusion.py --data ../shared/data/fashion \
      [--model var/models/fusion-v1] [--variants image,text,no_fusion,no_attention,full] [--epochs 4] \
      [--out var/bench/fusion.json]

Prints figures, does not pass or fail. ``--model`` evaluates a trained model directory (the demo model);
each variant is trained from scratch with the same short schedule on ``train``, calibrated on ``val``,
reported on ``test``. Rows of the three emerging article types (never in ``train``) are reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning threads thrash on a shared CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from classifier.fusion.complexity import estimate_complexity
from classifier.fusion.config import FusionConfig
from classifier.fusion.data import load_image
from classifier.fusion.engine import InferenceEngine, ListingInput
from classifier.fusion.evaluation import ece_of_logits, run_rows, summarize
from classifier.fusion.knowledge import CategoryNode
from classifier.fusion.pipeline import train_and_save
from classifier.fusion.prepared import Prepared

VARIANTS = {
    "image": dict(use_text=False),
    "text": dict(use_image=False),
    "no_fusion": dict(use_stage_fusion=False),  # late fusion of one vector, attention over the deep map
    "no_attention": dict(use_text_attention=False),  # per-stage fusion with plain pooling
    "full": {},
}

# what ops would type in the knowledge editor for the three emerging types (name, aliases, description)
EMERGING = {
    "Apparel > Bottomwear > Track Pants": (
        "Track Pants",
        ("track pant", "trackpants", "joggers", "jogger pants"),
        "sporty full-length pants with an elastic waistband, worn for training",
    ),
    "Apparel > Topwear > Kurtis": (
        "Kurtis",
        ("kurti", "short kurta"),
        "a short ethnic tunic top for women, shorter than a kurta",
    ),
    "Accessories > Headwear > Caps": (
        "Caps",
        ("cap", "baseball cap", "peak cap"),
        "a soft hat with a visor, worn on the head",
    ),
}


def emerging_snapshot(snap):
    ids = {c.id for c in snap.categories}
    cats = list(snap.categories)
    for cid, (name, aliases, desc) in EMERGING.items():
        parts = cid.split(" > ")
        for d in range(2):
            pid = " > ".join(parts[: d + 1])
            if pid not in ids:
                cats.append(CategoryNode(pid, parts[d], " > ".join(parts[:d]) or None))
                ids.add(pid)
        cats.append(CategoryNode(cid, name, " > ".join(parts[:2]), aliases, desc))
    return snap.with_changes(categories=tuple(cats))


def test_report(engine: InferenceEngine, prep: Prepared, tag: str, log) -> dict:
    te = prep.splits["test"]
    known = {c.id for c in engine.snapshot.leaves()}
    keep = [i for i, r in enumerate(te.rows) if r.leaf_id in known]
    rows = [te.rows[i] for i in keep]
    out = {"n_test_known": len(rows)}
    t = time.perf_counter()
    preds, _ = run_rows(engine, rows, prep.data_dir, desc=f"{tag} test")
    out["seconds_full_titles"] = round(time.perf_counter() - t, 1)
    out["full_titles"] = summarize(preds, rows, engine.review_threshold)
    vt = [te.vague_titles[i] for i in keep]
    vpreds, _ = run_rows(engine, rows, prep.data_dir, vt, desc=f"{tag} vague")
    out["vague_titles"] = summarize(vpreds, rows, engine.review_threshold)
    fp_preds, raws = run_rows(engine, rows, prep.data_dir, force_path="full", desc=f"{tag} full-path")
    out["always_full_path"] = summarize(fp_preds, rows, engine.review_threshold)
    leaves, snap = engine.leaves, engine.snapshot
    out["ece_full_path_before"] = round(ece_of_logits(raws, rows, leaves, 1.0, snap), 4)
    out["ece_full_path_after"] = round(
        ece_of_logits(raws, rows, leaves, engine.calibration["temperature"], snap), 4
    )
    if engine.cfg.use_verification and engine.cfg.use_image and engine.cfg.use_text:
        engine.use_verification = False
        nv, _ = run_rows(engine, rows, prep.data_dir, desc=f"{tag} no-verification")
        nvv, _ = run_rows(engine, rows, prep.data_dir, vt, desc=f"{tag} no-verification vague")
        engine.use_verification = True
        out["without_verification"] = {
            "full_titles": summarize(nv, rows, engine.review_threshold),
            "vague_titles": summarize(nvv, rows, engine.review_threshold),
        }
    log(
        f"[{tag}] full titles {out['full_titles']['accuracy']} F1 {out['full_titles']['article_macro_f1']} | "
        f"vague {out['vague_titles']['accuracy']} F1 {out['vague_titles']['article_macro_f1']} | "
        f"ECE {out['ece_full_path_before']} -> {out['ece_full_path_after']} (gated {out['full_titles']['ece']}) | "
        f"auto {out['full_titles']['auto_accepted_share']} @ {out['full_titles']['auto_accepted_precision']}"
    )
    return out


def emerging_report(engine: InferenceEngine, prep: Prepared, log) -> dict:
    base = engine.snapshot
    engine.set_snapshot(emerging_snapshot(base))
    te = prep.splits["test"]
    rows = [r for r in te.rows if r.leaf_id in EMERGING]
    vt = {r.id: t for r, t in zip(te.rows, te.vague_titles, strict=True)}
    out = {}

    def acc(tag):
        res = {}
        for kind, titles in (("full_titles", None), ("vague_titles", [vt[r.id] for r in rows])):
            preds, _ = run_rows(engine, rows, prep.data_dir, titles, desc=f"emerging {tag}")
            per = {}
            for cid in EMERGING:
                m = [p.category_id == r.leaf_id for p, r in zip(preds, rows, strict=True) if r.leaf_id == cid]
                per[EMERGING[cid][0]] = {"n": len(m), "accuracy": round(float(np.mean(m)), 4)}
            per["all"] = round(
                float(np.mean([p.category_id == r.leaf_id for p, r in zip(preds, rows, strict=True)])), 4
            )
            res[kind] = per
        # whole test set with the new categories known (emerging rows included)
        preds, _ = run_rows(engine, te.rows, prep.data_dir, desc=f"all test {tag}")
        res["whole_test_full_titles"] = summarize(preds, te.rows, engine.review_threshold)
        return res

    out["zero_shot"] = acc("zero-shot")
    sup = prep.splits["support"].rows
    for cid in EMERGING:
        items = [
            ListingInput((prep.data_dir / r.image).read_bytes(), r.title, key=r.id)
            for r in sup
            if r.leaf_id == cid
        ]
        engine.add_examples(cid, items)
    out["support_examples"] = {EMERGING[c][0]: sum(r.leaf_id == c for r in sup) for c in EMERGING}
    out["few_shot"] = acc("few-shot")
    log(f"emerging zero-shot {out['zero_shot']['full_titles']} vague {out['zero_shot']['vague_titles']}")
    log(f"emerging few-shot  {out['few_shot']['full_titles']} vague {out['few_shot']['vague_titles']}")
    log(
        f"whole test (with new categories): zero-shot {out['zero_shot']['whole_test_full_titles']['accuracy']} "
        f"few-shot {out['few_shot']['whole_test_full_titles']['accuracy']}"
    )
    engine.clear_examples()
    engine.set_snapshot(base)
    return out


def throughput_report(engine: InferenceEngine, prep: Prepared, log, n: int = 512) -> dict:
    rows = prep.splits["test"].rows[:n]
    blobs = [(prep.data_dir / r.image).read_bytes() for r in rows]
    items = [ListingInput(b, r.title, key=r.id) for b, r in zip(blobs, rows, strict=True)]
    res = {}
    for tag, force in (("image_only_path", "light"), ("gated_fusion", None), ("always_full_path", "full")):
        engine.predict_detailed(items[:32], force_path=force)  # warm-up
        t = time.perf_counter()
        preds = []
        for i in range(0, len(items), 32):
            preds += engine.predict_detailed(items[i : i + 32], force_path=force)[0]
        dt = time.perf_counter() - t
        paths = {}
        for p in preds:
            paths[p.path] = paths.get(p.path, 0) + 1
        res[tag] = {
            "items_per_s": round(len(items) / dt, 1),
            "paths": {k: round(v / len(preds), 4) for k, v in paths.items()},
            "mean_latency_ms": round(float(np.mean([p.latency_ms for p in preds])), 2),
        }
    imgs = [load_image(b) for b in blobs[:200]]
    t = time.perf_counter()
    for im in imgs:
        estimate_complexity(im)
    res["complexity_ms_per_image"] = round((time.perf_counter() - t) * 1000 / len(imgs), 3)
    log(f"throughput: {res}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", help="evaluate this trained model directory too")
    ap.add_argument("--variants", default="image,text,no_fusion,no_attention,full")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--cache", default="var/cache/fusion")
    ap.add_argument("--variant-dir", default="var/models/bench", help="where the variant models are saved")
    ap.add_argument("--out", default="var/bench/fusion.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="debug: only the first N rows of val/test/support")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    report: dict = {"machine": {"threads": a.threads, "torch": torch.__version__}, "variants": {}}
    logf = Path(a.out).with_suffix(".log")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)
        with open(logf, "a") as f:
            f.write(msg + "\n")

    def save():
        Path(a.out).write_text(json.dumps(report, indent=1))

    prep = Prepared(a.data, FusionConfig(), Path(a.cache))
    if a.limit:
        for sp in ("val", "test"):
            d = prep.splits[sp]
            keep = (
                list(range(min(a.limit, len(d.rows))))
                + [i for i, r in enumerate(d.rows) if r.leaf_id in EMERGING][:30]
            )
            d.rows = [d.rows[i] for i in keep]
            d.vague_titles = [d.vague_titles[i] for i in keep]
    if a.model:
        eng = InferenceEngine.load(a.model, device="cpu")
        eng.encoder = prep.encoder
        rep = {"model_version": eng.model_version, "calibration": eng.calibration}
        rep["test"] = test_report(eng, prep, "model", log)
        rep["emerging"] = emerging_report(eng, prep, log)
        rep["throughput"] = throughput_report(eng, prep, log)
        report["model"] = rep
        save()
    for name in [v for v in a.variants.split(",") if v]:
        cfg = FusionConfig(epochs=a.epochs, **VARIANTS[name])
        log(f"== variant {name}: {a.epochs} epochs ==")
        t = time.time()
        eng, _, metrics = train_and_save(
            a.data, Path(a.variant_dir) / name, cfg, cache=Path(a.cache), prep=prep, log=log
        )
        rep = {
            "train_seconds": round(time.time() - t, 1),
            "val": metrics["val"],
            "calibration": eng.calibration,
        }
        rep["test"] = test_report(eng, prep, name, log)
        if name == "full":
            rep["emerging"] = emerging_report(eng, prep, log)
        report["variants"][name] = rep
        save()
    log(f"written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
