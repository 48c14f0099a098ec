"""Train -> calibrate on val -> save: the one routine behind ``train`` (and the benchmark's variants)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from classifier.fusion.artifacts import save_model, write_json
from classifier.fusion.config import FusionConfig
from classifier.fusion.engine import InferenceEngine
from classifier.fusion.evaluation import ece_of_logits, run_rows, summarize
from classifier.fusion.routing import route
from classifier.fusion.training import Prepared, choose_threshold, fit_temperature, train_model


def labels_dict(prep: Prepared) -> dict:
    return {"leaves": prep.leaves, "keywords": prep.keywords.to_dict()}


def calibrate(engine: InferenceEngine, prep: Prepared, cfg: FusionConfig, log=print) -> dict:
    """Temperatures fitted on val (full path and image head), then the review threshold for the target precision."""
    return calibrate_rows(engine, prep.splits["val"].rows, prep.data_dir, cfg, log)


def reroute(preds: list, threshold: float) -> list:
    """The same predictions routed at another review threshold (the routing contract, nothing else)."""
    out = []
    for p in preds:
        d = route(confidence=p.confidence, threshold=threshold, findings=p.knowledge_findings)
        out.append(
            replace(
                p,
                needs_review=d.needs_review,
                review_reasons=[r.value for r in d.reasons],
                route_reason=d.primary,
            )
        )
    return out


def calibrate_rows(
    engine: InferenceEngine, rows, data_dir, cfg: FusionConfig, log=print, *, return_preds: bool = False
):
    """:func:`calibrate` on explicit ``val`` rows (images relative to ``data_dir``).

    With ``return_preds`` also returns the val predictions at the chosen threshold (no third pass needed).
    """
    st = engine._state
    pos = {c: i for i, c in enumerate(st.leaves)}
    y = torch.tensor([pos.get(r.leaf_id, -1) for r in rows])
    engine.calibration.update(temperature=1.0, image_temperature=1.0)
    _, raws = run_rows(engine, rows, data_dir, force_path="full", desc="calibrate val")
    logits = torch.stack([r.logits for r in raws])
    t_full = fit_temperature(logits, y)
    t_img = 1.0
    if raws[0].image_logits is not None:
        t_img = fit_temperature(torch.stack([r.image_logits for r in raws]), y)
    ece_before = ece_of_logits(raws, rows, st.leaves, 1.0, st.snapshot)
    ece_after = ece_of_logits(raws, rows, st.leaves, t_full, st.snapshot)
    engine.calibration.update(temperature=t_full, image_temperature=t_img)
    preds, _ = run_rows(engine, rows, data_dir, review_threshold=0.0, desc="threshold val")
    conf = np.array([p.confidence for p in preds])
    correct = np.array([p.article_type == r.article_type for p, r in zip(preds, rows, strict=True)])
    flagged = np.array(["knowledge_conflict" in p.review_reasons for p in preds])
    thr = choose_threshold(conf, correct, flagged, cfg.target_precision)
    engine.review_threshold = thr
    engine.calibration["review_threshold"] = thr
    cal = {
        "temperature": t_full,
        "image_temperature": t_img,
        "review_threshold": thr,
        "target_precision": cfg.target_precision,
        "val_ece_before": round(ece_before, 4),
        "val_ece_after": round(ece_after, 4),
    }
    log(
        f"calibration: T={t_full:.3f} T_img={t_img:.3f} threshold={thr:.4f} "
        f"val ECE {ece_before:.4f} -> {ece_after:.4f}"
    )
    if return_preds:
        return cal, reroute(preds, thr)
    return cal


def train_and_save(
    data_dir: str | Path,
    out_dir: str | Path | None,
    cfg: FusionConfig,
    *,
    cache: Path | None,
    prep: Prepared | None = None,
    log=print,
    max_minutes: float | None = None,
) -> tuple[InferenceEngine, Prepared, dict]:
    prep = prep or Prepared(data_dir, cfg, cache)
    t0 = time.time()
    model = train_model(prep, cfg, log=log, max_minutes=max_minutes)
    train_s = time.time() - t0
    labels = labels_dict(prep)
    engine = InferenceEngine(
        model,
        cfg,
        labels,
        {},
        prep.snapshot,
        prep.encoder,
        "cpu",
        model_version=Path(out_dir).name if out_dir else "bench",
    )
    cal, preds = calibrate_rows(engine, prep.splits["val"].rows, prep.data_dir, cfg, log, return_preds=True)
    metrics = {
        "val": summarize(preds, prep.splits["val"].rows, engine.review_threshold),
        "train_seconds": round(train_s, 1),
        "epochs": cfg.epochs,
        "vision_backbone": cfg.vision_backbone,
        "frozen_blocks": cfg.frozen_blocks,
        "threads": torch.get_num_threads(),
    }
    log(f"val: {metrics['val']}")
    if out_dir is not None:
        save_model(out_dir, model, cfg, labels, cal, metrics, prep.snapshot)
        engine.model_version = f"{Path(out_dir).resolve().name}"
        write_json(out_dir, "metrics.json", metrics)
    return engine, prep, metrics
