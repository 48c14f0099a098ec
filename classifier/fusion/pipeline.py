"""Train -> calibrate on val -> save: the one routine behind ``train`` (and the benchmark's variants)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal, cast, overload

import numpy as np
import torch

from classifier.fusion.artifacts import save_model, write_json
from classifier.fusion.config import FusionConfig
from classifier.fusion.data import Row, read_catalogue, vague_titles
from classifier.fusion.engine import FusionPrediction, InferenceEngine, ListingInput
from classifier.fusion.engine_state import routes_item
from classifier.fusion.ensemble import EnsembleModel, combine
from classifier.fusion.evaluation import ece, summarize
from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.fusion.modeling import FusionModel
from classifier.fusion.outcome import RawPrediction, blend_heads, prediction_names_type
from classifier.fusion.prepared import Prepared
from classifier.fusion.routing import route, title_threshold
from classifier.fusion.training import (
    CalibrationScores,
    PathTemperatures,
    choose_threshold,
    fit_path_temperatures,
    fit_temperature,
    served,
    train_model,
)


def labels_dict(prep: Prepared) -> dict[str, object]:
    return {"leaves": prep.leaves, "keywords": prep.keywords.to_dict()}


def calibrate(
    engine: InferenceEngine, prep: Prepared, cfg: FusionConfig, log: Callable[[str], object] = print
) -> dict[str, float]:
    """Temperatures fitted on val (full path and image head), then the review threshold for the target precision."""
    return calibrate_rows(engine, prep.splits["val"].rows, prep.data_dir, cfg, log)


def reroute(
    preds: list[FusionPrediction], threshold: float, untyped_threshold: float | None = None
) -> list[FusionPrediction]:
    """The same predictions routed at another review threshold (the routing contract, nothing else); a
    title that names no product type at the stricter ``untyped_threshold`` too, as the engine routes it."""
    out = []
    for p in preds:
        thr = title_threshold(threshold, untyped_threshold, names_type=prediction_names_type(p))
        d = route(confidence=p.confidence, threshold=thr, findings=p.knowledge_findings)
        out.append(
            replace(
                p,
                needs_review=d.needs_review,
                review_reasons=[r.value for r in d.reasons],
                route_reason=d.primary,
            )
        )
    return out


def _run_items(
    engine: InferenceEngine,
    items: list[ListingInput],
    batch: int = 64,
    *,
    review_threshold: float | None = None,
    force_path: str | None = None,
) -> tuple[list[FusionPrediction], list[RawPrediction]]:
    preds: list[FusionPrediction] = []
    raws: list[RawPrediction] = []
    for i in range(0, len(items), batch):
        p, r = engine.predict_detailed(
            items[i : i + batch], review_threshold=review_threshold, force_path=force_path
        )
        preds += p
        raws += r
    return preds, raws


def calibrate_items(
    engine: InferenceEngine,
    items: list[ListingInput],
    truth: list[str],
    target_precision: float,
    *,
    choose_review_threshold: bool = True,
    vague_items: list[ListingInput] | None = None,
    per_path: bool = True,
    log: Callable[[str], object] = print,
) -> tuple[dict[str, float], list[FusionPrediction]]:
    """The one calibration of training, fine-tuning and the benchmarks (engine public API only).

    Chooses the decision-level head weights per title kind (:func:`_choose_head_weights`), then fits the
    image head's temperature (the gate reads it), then the temperatures of the served confidence on
    ``items`` (their true leaf ids in ``truth``) plus ``vague_items`` (the same items with vague titles, in
    the same order; used for the temperatures only): with ``per_path``, one for the light path, one for the
    full path on titles that name a product type and one on titles that do not (a vague seller), each fitted
    on the items it serves (``bench_fusion_v2_calibration.py``: lower held-out ECE on ``val``, full and
    vague titles, than one temperature); else one full-path temperature over every item. Then, if
    ``choose_review_threshold``, the review threshold and the light path's threshold (full titles: see
    :func:`_choose_thresholds`). Sets them on the engine; returns (calibration dict, the items' predictions
    routed at the chosen threshold).
    """
    pos = {c: i for i, c in enumerate(engine.leaves)}
    y = torch.tensor([pos.get(c, -1) for c in truth])
    engine.reserve_image_cache(len(items))  # the second pass reuses the backbone's outputs
    engine.calibration.update(
        temperature=1.0, image_temperature=1.0, light_temperature=1.0, untyped_temperature=1.0
    )
    head_weights = _choose_head_weights(
        engine, [*items, *(vague_items or [])], truth * (2 if vague_items else 1)
    )
    full_preds, raws = _run_items(engine, items, force_path="full")
    logits = torch.stack([r.logits for r in raws])
    t_img = 1.0
    if raws[0].image_logits is not None:
        t_img = fit_temperature(torch.stack([r.image_logits for r in raws]), y)
    engine.calibration.update(image_temperature=t_img)
    t_one = fit_temperature(logits, y)
    temps = PathTemperatures(t_one, t_one, 1.0)
    gated = per_path and engine.use_gate and engine.cfg.use_image and engine.cfg.use_text
    scores = None
    if gated:
        scores = calibration_scores(engine, items, y, full_preds, raws)
        if vague_items:
            scores = concat_scores(scores, calibration_scores(engine, vague_items, y))
    ece_before, ece_after = (ece_of_scores(logits, y, t) for t in (1.0, t_one))
    engine.calibration.update(temps.as_dict())
    thr = float(engine.review_threshold)
    light_thr = float(engine.calibration.get("light_threshold", 0.0))
    for _ in range(2 if scores is not None else 1):
        if choose_review_threshold:
            thr, light_thr = _choose_thresholds(engine, items, truth, target_precision)
        if scores is None:
            break
        # the light temperature moves items between the paths: refit on the items each path now serves
        temps = fit_path_temperatures(scores, max(thr, light_thr), per_path=True, per_title=True)
        engine.calibration.update(temps.as_dict())
    if scores is not None and choose_review_threshold:
        thr, light_thr = _choose_thresholds(engine, items, truth, target_precision)
    untyped = None
    if choose_review_threshold:
        untyped = _choose_untyped_threshold(
            engine, [*items, *(vague_items or [])], truth * (2 if vague_items else 1), target_precision, thr
        )
    preds, _ = _run_items(engine, items, review_threshold=thr)
    engine.review_threshold = thr
    engine.calibration["review_threshold"] = thr
    cal: dict[str, float] = {
        **temps.as_dict(),
        "image_temperature": t_img,
        "review_threshold": thr,
        "light_threshold": light_thr,
        **(
            {"untyped_threshold": untyped[0], "untyped_threshold_items": untyped[1]}
            if untyped is not None
            else {}
        ),
        **{key: weight for key, (weight, _) in head_weights.items()},
        **{f"{key}_items": n for key, (_, n) in head_weights.items()},
        "precision_bound_z": engine.cfg.precision_bound_z,
        "target_precision": target_precision,
        "calibration_items": len(items),
        "calibration_vague_items": len(vague_items or []) if scores is not None else 0,
        "val_ece_before": round(ece_before, 4),
        "val_ece_after": round(ece_after, 4),
    }
    if scores is not None:
        c, k, light = served(scores, temps, max(thr, light_thr))
        n = len(items)
        cal["val_ece_served"] = round(ece(c[:n], k[:n]), 4)
        cal["val_light_share"] = round(float(light[:n].mean()), 4)
        if len(c) > n:
            cal["val_ece_served_vague"] = round(ece(c[n:], k[n:]), 4)
    log(
        f"calibration: T={temps.full:.3f} T_untyped={temps.untyped:.3f} T_light={temps.light:.3f} "
        f"T_img={t_img:.3f} threshold={thr:.4f} light={light_thr:.4f} "
        f"untyped={engine.untyped_threshold(thr):.4f} "
        f"text weight (typed)={engine.calibration.get('typed_text_weight', 0.0):.2f} "
        f"image weight (untyped)={engine.calibration.get('untyped_image_weight', 0.0):.2f} full-path ECE {ece_before:.4f} -> {ece_after:.4f}"
        f" served ECE {cal.get('val_ece_served')} vague {cal.get('val_ece_served_vague')} ({len(items)} items)"
    )
    return cal, reroute(preds, thr, engine.untyped_threshold(thr))


# an untyped threshold chosen on fewer titles that name no type would swing with every error: below this
# the engine holds them to the review threshold
MIN_UNTYPED_ITEMS = 200


def _restore_calibration(engine: InferenceEngine, key: str, before: float | None) -> None:
    """Put back a calibration value a choice set aside (or remove it, if the model had none)."""
    if before is None:
        engine.calibration.pop(key, None)
    else:
        engine.calibration[key] = before


# a weight chosen on fewer titles of its kind would follow a handful of items: below this it is kept
MIN_HEAD_WEIGHT_TITLES = 200
# the weights tried for the head mixed into the fused logits (0: the fused logits alone)
HEAD_WEIGHTS = tuple(round(0.05 * k, 2) for k in range(21))
# calibration key -> (titles it applies to: do they name a product type?, the raw scores' field of the head)
HEAD_WEIGHT_KEYS = {
    "typed_text_weight": (True, "text_logits"),
    "untyped_image_weight": (False, "image_logits"),
}


def _most_right_weight(fused: torch.Tensor, other: torch.Tensor, y: torch.Tensor) -> float:
    """The weight of ``HEAD_WEIGHTS`` under which the blend is right most often (the smallest among equals)."""

    def right(w: float) -> int:
        return int((blend_heads(fused, other, w).argmax(-1) == y).sum())

    return max(HEAD_WEIGHTS, key=lambda w: (right(w), -w))


def _choose_head_weights(
    engine: InferenceEngine, items: list[ListingInput], truth: list[str]
) -> dict[str, tuple[float, int]]:
    """How much of the text head the full path mixes into a title that names a product type, and of the
    image head into one that names none (:func:`outcome.mix_heads`). Each is the weight in ``HEAD_WEIGHTS``
    under which most of such ``items`` are right (the smallest among equals), set on the engine; returns
    each chosen weight with the number of titles it was chosen on. With fewer than ``MIN_HEAD_WEIGHT_TITLES``
    titles of a kind, the engine's weight for it is left as it was (fine-tuning's small held-out sets).

    Chosen before the temperatures, which are then fitted on the mixed logits; the argmax does not depend on
    them. The entity boost (untrained leaves the title names; none in `val`) is added after the mix."""
    before = {key: engine.calibration.get(key) for key in HEAD_WEIGHT_KEYS}
    engine.calibration.update(dict.fromkeys(HEAD_WEIGHT_KEYS, 0.0))
    preds, raws = _run_items(engine, items, force_path="full")
    pos = {c: j for j, c in enumerate(engine.leaves)}
    chosen: dict[str, tuple[float, int]] = {}
    for key, (typed, field) in HEAD_WEIGHT_KEYS.items():
        pool = [
            i
            for i, (p, r) in enumerate(zip(preds, raws, strict=True))
            if prediction_names_type(p) == typed and getattr(r, field) is not None
        ]
        if len(pool) < MIN_HEAD_WEIGHT_TITLES:
            _restore_calibration(engine, key, before[key])
            continue
        weight = _most_right_weight(
            torch.stack([raws[i].logits for i in pool]),
            torch.stack([cast(torch.Tensor, getattr(raws[i], field)) for i in pool]),
            torch.tensor([pos.get(truth[i], -1) for i in pool]),
        )
        engine.calibration[key] = weight
        chosen[key] = (weight, len(pool))
    return chosen


def _choose_untyped_threshold(
    engine: InferenceEngine,
    items: list[ListingInput],
    truth: list[str],
    target_precision: float,
    review_threshold: float,
) -> tuple[float, int] | None:
    """The review threshold of titles that name no product type (a vague seller: "Puma Men Blue"), chosen
    on those of ``items`` by the rule of the review threshold, and set on the engine; returns it with the
    number of titles it was chosen on, or None (the engine's threshold left as it was) when fewer than
    ``MIN_UNTYPED_ITEMS`` such titles.

    One threshold for every title let vague titles through at 97.6% precision on `val` (full titles:
    99.3%): the image has to carry them, and their confidences sit closer to the threshold. The threshold
    decides which untyped items the gate sends light, so it is re-chosen on the gated predictions until it
    settles."""
    z = engine.cfg.precision_bound_z
    before = engine.calibration.get("untyped_threshold")
    engine.calibration["untyped_threshold"] = 0.0
    chosen = 0.0
    preds, _ = _run_items(engine, items, review_threshold=review_threshold)
    pool = [i for i, p in enumerate(preds) if not prediction_names_type(p)]
    if len(pool) < MIN_UNTYPED_ITEMS:
        _restore_calibration(engine, "untyped_threshold", before)
        return None
    for _ in range(3):
        new = _threshold_for([preds[i] for i in pool], [truth[i] for i in pool], target_precision, z)
        settled = abs(new - chosen) < 1e-6
        chosen = new
        engine.calibration["untyped_threshold"] = chosen
        if settled:
            break
        preds, _ = _run_items(engine, items, review_threshold=review_threshold)
    return chosen, len(pool)


def _choose_thresholds(
    engine: InferenceEngine, items: list[ListingInput], truth: list[str], target_precision: float
) -> tuple[float, float]:
    """The review threshold and the light path's own threshold, each the lowest whose auto-accepted items
    reach ``target_precision`` (by the lower bound of ``cfg.precision_bound_z``), set on the engine.

    The light path (image head + keywords) is less precise than the full path at the same confidence: on
    `val` its items at the common threshold were 98.5% right (the full path: 98.9% of the same items), so
    one threshold for both had to rise until the light items' errors were diluted, and sent full-path
    items that were right to review. Its own threshold keeps only the light items precise enough; the rest
    take the full path. The gate sends an item
    light only when it would be auto-accepted there, so the thresholds shape the predictions they are chosen
    on: start from the full path's choice, then re-choose on the gated predictions until they settle (the
    backbone's outputs are cached)."""
    z = engine.cfg.precision_bound_z
    engine.calibration["light_threshold"] = 0.0
    full_preds, _ = _run_items(engine, items, force_path="full", review_threshold=1.0)
    thr, light_thr = _threshold_for(full_preds, truth, target_precision, z), 0.0
    for _ in range(3):
        engine.calibration["light_threshold"] = 0.0
        preds, _ = _run_items(engine, items, review_threshold=thr)
        light = [i for i, p in enumerate(preds) if p.path == "light"]
        new_light = _threshold_for([preds[i] for i in light], [truth[i] for i in light], target_precision, z)
        engine.calibration["light_threshold"] = new_light
        preds, _ = _run_items(engine, items, review_threshold=thr)
        new = _threshold_for(preds, truth, target_precision, z)
        settled = abs(new - thr) < 1e-6 and abs(new_light - light_thr) < 1e-6
        thr, light_thr = new, new_light
        if settled:
            break
    engine.calibration["light_threshold"] = light_thr
    return thr, light_thr


def calibration_scores(
    engine: InferenceEngine,
    items: list[ListingInput],
    y: torch.Tensor,
    full_preds: list[FusionPrediction] | None = None,
    full_raws: list[RawPrediction] | None = None,
) -> CalibrationScores:
    """The items' full- and light-path scores at full-path and light temperature 1 (the engine's current
    image temperature kept: the gate reads it), and which items the gate could send light."""
    cfg = engine.cfg
    saved = {
        k: engine.calibration.get(k) for k in ("temperature", "light_temperature", "untyped_temperature")
    }
    engine.calibration.update(temperature=1.0, light_temperature=1.0, untyped_temperature=1.0)
    try:
        if full_preds is None or full_raws is None:
            full_preds, full_raws = _run_items(engine, items, force_path="full")
        _, light_raws = _run_items(engine, items, force_path="light")
    finally:
        engine.calibration.update({k: v for k, v in saved.items() if v is not None})
    t_img = float(engine.calibration["image_temperature"])
    light = torch.stack([r.logits for r in light_raws])
    p_img = torch.softmax(torch.stack([cast(torch.Tensor, r.image_logits) for r in light_raws]) / t_img, -1)
    cplx = torch.tensor([p.complexity for p in full_preds])
    eligible = (
        (cplx <= cfg.gate_complexity_max)
        & (p_img.max(-1).values >= cfg.gate_confidence)
        & (light.argmax(-1) == p_img.argmax(-1))
        & torch.tensor([not routes_item(r.findings) for r in light_raws])
    )
    return CalibrationScores(
        full=torch.stack([r.logits for r in full_raws]),
        light=light,
        labels=y,
        typed=torch.tensor([any(e["type"] == "product_type" for e in p.entities) for p in full_preds]),
        eligible=eligible,
    )


def concat_scores(a: CalibrationScores, b: CalibrationScores) -> CalibrationScores:
    return CalibrationScores(
        torch.cat([a.full, b.full]),
        torch.cat([a.light, b.light]),
        torch.cat([a.labels, b.labels]),
        torch.cat([a.typed, b.typed]),
        torch.cat([a.eligible, b.eligible]),
    )


def threshold_inputs(
    preds: list[FusionPrediction], truth: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a review threshold is chosen on: (confidence, right, held by the knowledge check) per item."""
    conf = np.array([p.confidence for p in preds])
    correct = np.array([p.category_id == c for p, c in zip(preds, truth, strict=True)], dtype=bool)
    flagged = np.array([_conflict(p) for p in preds], dtype=bool)
    return conf, correct, flagged


def _threshold_for(
    preds: list[FusionPrediction], truth: list[str], target_precision: float, z: float
) -> float:
    return choose_threshold(*threshold_inputs(preds, truth), target_precision, z=z)


def _conflict(p: FusionPrediction) -> bool:
    return any(r in ("knowledge_conflict", "unknown_category") for r in p.review_reasons)


def ece_of_scores(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> float:
    """ECE of the top-1 leaf of ``logits / temperature`` against leaf indices ``y`` (-1 = unknown, wrong)."""
    p = torch.softmax(logits.float() / temperature, -1)
    conf, j = p.max(-1)
    return ece(conf.numpy(), (j == y).numpy())


@overload
def calibrate_rows(
    engine: InferenceEngine,
    rows: list[Row],
    data_dir: str | Path,
    cfg: FusionConfig,
    log: Callable[[str], object] = ...,
    *,
    return_preds: Literal[False] = ...,
) -> dict[str, float]: ...


@overload
def calibrate_rows(
    engine: InferenceEngine,
    rows: list[Row],
    data_dir: str | Path,
    cfg: FusionConfig,
    log: Callable[[str], object] = ...,
    *,
    return_preds: Literal[True],
) -> tuple[dict[str, float], list[FusionPrediction]]: ...


def calibrate_rows(
    engine: InferenceEngine,
    rows: list[Row],
    data_dir: str | Path,
    cfg: FusionConfig,
    log: Callable[[str], object] = print,
    *,
    return_preds: bool = False,
) -> dict[str, float] | tuple[dict[str, float], list[FusionPrediction]]:
    """:func:`calibrate_items` on catalogue ``val`` rows (images relative to ``data_dir``)."""
    data_dir = Path(data_dir)
    images = [(data_dir / r.image).read_bytes() for r in rows]
    items = [ListingInput(b, r.title, key=r.id) for b, r in zip(images, rows, strict=True)]
    vague = vague_titles_of(rows, data_dir)
    vague_items = [ListingInput(b, vague[r.id], key=r.id) for b, r in zip(images, rows, strict=True)]
    cal, preds = calibrate_items(
        engine, items, [r.leaf_id for r in rows], cfg.target_precision, vague_items=vague_items, log=log
    )
    return (cal, preds) if return_preds else cal


def vague_titles_of(rows: list[Row], data_dir: Path) -> dict[str, str]:
    """The rows' vague titles (category words gone; the vocabulary of the catalogue in ``data_dir``, as
    training and the benchmarks build them)."""
    cat = data_dir / "catalogue.csv"
    return vague_titles(rows, read_catalogue(cat) if cat.exists() else rows)


def train_and_save(
    data_dir: str | Path,
    out_dir: str | Path | None,
    cfg: FusionConfig,
    *,
    cache: Path | None,
    prep: Prepared | None = None,
    log: Callable[[str], object] = print,
    max_minutes: float | None = None,
    on_epoch: Callable[[int, FusionModel], object] | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
) -> tuple[InferenceEngine, Prepared, dict[str, object]]:
    prep = prep or Prepared(data_dir, cfg, cache)
    t0 = time.time()
    model: FusionModel | EnsembleModel
    if cfg.ensemble_size > 1:
        if init_state is not None:
            raise ValueError("a warm restart (init_state) trains one model, not an ensemble")
        members = []
        for i in range(cfg.ensemble_size):
            member_cfg = replace(cfg, seed=cfg.seed + i, ensemble_size=1)
            log(f"ensemble member {i + 1}/{cfg.ensemble_size} (seed {member_cfg.seed})")
            # the augmented views are drawn per seed: each member gets its own (the plain maps are shared)
            member_prep = prep if i == 0 else Prepared(data_dir, member_cfg, cache, splits=tuple(prep.splits))
            members.append(
                train_model(member_prep, member_cfg, log=log, max_minutes=max_minutes, on_epoch=on_epoch)
            )
        model = combine(members)
    else:
        model = train_model(
            prep, cfg, log=log, max_minutes=max_minutes, on_epoch=on_epoch, init_state=init_state
        )
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
    metrics: dict[str, object] = {
        "val": summarize(preds, prep.splits["val"].rows, engine.review_threshold),
        "train_seconds": round(train_s, 1),
        "epochs": cfg.epochs,
        "vision_backbone": cfg.vision_backbone,
        "frozen_blocks": cfg.frozen_blocks,
        "ensemble_size": cfg.ensemble_size,
        "threads": torch.get_num_threads(),
    }
    log(f"val: {metrics['val']}")
    if out_dir is not None:
        save_model(out_dir, model, cfg, labels, cal, metrics, prep.snapshot)
        engine.model_version = f"{Path(out_dir).resolve().name}"
        write_json(out_dir, "metrics.json", metrics)
    return engine, prep, metrics


def ensemble_and_save(
    member_dirs: list[Path],
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    log: Callable[[str], object] = print,
) -> dict[str, object]:
    """Trained model directories of one recipe (seeds aside) as one ensemble directory, calibrated on
    ``val`` like a trained model (the members' own calibration is not used)."""
    from classifier.fusion.artifacts import load_model, read_json

    loaded = [load_model(d, "cpu") for d in member_dirs]
    labels = loaded[0][2]
    if any(lab["leaves"] != labels["leaves"] for _, _, lab in loaded):
        raise ValueError("ensemble members must be trained on the same leaves")
    models = [cast(FusionModel, m) for m, _, _ in loaded]
    if not all(isinstance(m, FusionModel) for m in models):
        raise ValueError("an ensemble's members are single models")
    model = combine(models)
    cfg = model.cfg
    snapshot = KnowledgeSnapshot.load(Path(member_dirs[0]) / "snapshot.json")
    engine = InferenceEngine(model, cfg, labels, {}, snapshot, None, "cpu", model_version=Path(out_dir).name)
    rows = [r for r in read_catalogue(Path(data_dir) / "catalogue.csv") if r.split == "val"]
    cal, preds = calibrate_rows(engine, rows, Path(data_dir), cfg, log, return_preds=True)
    member_metrics = [read_json(d, "metrics.json", {}) for d in member_dirs]
    metrics: dict[str, object] = {
        "val": summarize(preds, rows, engine.review_threshold),
        "train_seconds": round(
            sum(float(cast(float, m.get("train_seconds", 0.0))) for m in member_metrics), 1
        ),
        "epochs": cfg.epochs,
        "vision_backbone": cfg.vision_backbone,
        "frozen_blocks": cfg.frozen_blocks,
        "ensemble_size": cfg.ensemble_size,
        "members": [
            {"dir": Path(d).name, "seed": m.cfg.seed, "metrics": mm}
            for d, m, mm in zip(member_dirs, models, member_metrics, strict=True)
        ],
    }
    log(f"val: {metrics['val']}")
    save_model(out_dir, model, cfg, labels, cal, metrics, snapshot)
    return metrics
