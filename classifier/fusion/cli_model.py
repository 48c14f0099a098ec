"""``train`` / ``predict`` / ``evaluate`` subcommands (imported lazily by :mod:`classifier.fusion.cli`)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from classifier.fusion.engine import InferenceEngine
    from classifier.fusion.predictions import ListingInput


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _cmd_train(a: argparse.Namespace) -> int:
    _threads(a.threads)
    from classifier.fusion.config import FusionConfig
    from classifier.fusion.pipeline import train_and_save

    cfg = FusionConfig.load(a.config) if a.config else FusionConfig()
    if a.epochs:
        cfg.epochs = a.epochs
    if a.image_size:
        cfg.image_size = a.image_size
    cache = Path(a.cache) if a.cache else Path("var/cache/fusion")
    prep = None
    if a.max_train_rows or a.no_test:
        from classifier.fusion.prepared import Prepared

        splits = ("train", "val") if a.no_test else ("train", "val", "test", "support")
        prep = Prepared(a.data, cfg, cache, splits=splits, max_train_rows=a.max_train_rows)
    train_and_save(a.data, a.out, cfg, cache=cache, prep=prep, max_minutes=a.max_minutes)
    print(f"model written to {a.out}")
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    _threads(a.threads)
    from tqdm import tqdm

    from classifier.fusion.data import read_catalogue
    from classifier.fusion.engine import InferenceEngine, InvalidImageError, ListingInput

    eng = InferenceEngine.load(a.model, quantized=a.quantized)
    if a.snapshot:
        from classifier.fusion.knowledge import KnowledgeSnapshot

        try:
            eng.set_snapshot(KnowledgeSnapshot.load(a.snapshot))
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"--snapshot {a.snapshot}: not a knowledge snapshot ({e})") from e
    if a.examples:
        used = add_examples_from_csv(eng, Path(a.examples))
        print(f"prototypes from {a.examples}: {used}")
    rows = read_catalogue(a.catalogue, tuple(a.split.split(",")) if a.split else None)
    base = Path(a.catalogue).parent
    with open(a.out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id",
                "master_category",
                "sub_category",
                "article_type",
                "brand",
                "confidence",
                "needs_review",
                "route_reason",
                "path",
                "latency_ms",
            ]
        )
        for i in tqdm(range(0, len(rows), a.batch_size), desc="predict"):
            chunk = rows[i : i + a.batch_size]
            items = []
            for r in chunk:
                try:
                    items.append(ListingInput((base / r.image).read_bytes(), r.title, key=r.id))
                except OSError as e:
                    print(f"skipping {r.id}: {e}")
            try:
                preds = eng.predict_batch(items)
            except InvalidImageError:
                preds = []
                for it in items:  # one bad picture must not lose the others
                    try:
                        preds += eng.predict_batch([it])
                    except InvalidImageError as e:
                        print(f"skipping {it.key}: {e}")
            for p in preds:
                w.writerow(
                    [
                        p.key,
                        p.master_category,
                        p.sub_category,
                        p.article_type,
                        p.brand or "",
                        f"{p.confidence:.4f}",
                        int(p.needs_review),
                        p.route_reason,
                        p.path,
                        f"{p.latency_ms:.2f}",
                    ]
                )
    print(f"{len(rows)} rows -> {a.out}")
    return 0


def add_examples_from_csv(engine: InferenceEngine, csv_path: Path) -> dict[str, int]:
    """Labelled catalogue rows as few-shot prototypes: category id -> rows used.

    Images are relative to the CSV's folder or absolute. A row whose category is not a leaf of the engine's
    snapshot or whose image cannot be read is refused with a clear message; nothing is added then.
    """
    from classifier.fusion.data import InvalidImageError, load_image, read_catalogue
    from classifier.fusion.engine import ListingInput

    if not csv_path.exists():
        raise SystemExit(f"--examples {csv_path}: no such file")
    leaves = set(engine.leaves)
    groups: dict[str, list[ListingInput]] = {}
    problems = []
    for r in read_catalogue(csv_path):
        img = Path(r.image)
        img = img if img.is_absolute() else csv_path.parent / img
        if r.leaf_id not in leaves:
            problems.append(f"row {r.id}: category {r.leaf_id!r} is not in the knowledge snapshot")
            continue
        try:
            groups.setdefault(r.leaf_id, []).append(ListingInput(load_image(img), r.title, key=r.id))
        except (OSError, InvalidImageError) as e:
            problems.append(f"row {r.id}: image {img}: {e}")
    if problems:
        raise SystemExit("--examples refused:\n  " + "\n  ".join(problems[:20]))
    for cat, items in groups.items():
        engine.add_examples(cat, items)
    return {c: len(v) for c, v in groups.items()}


def _cmd_evaluate(a: argparse.Namespace) -> int:
    _threads(a.threads)
    from classifier.fusion.data import read_catalogue, vague_titles
    from classifier.fusion.engine import InferenceEngine
    from classifier.fusion.evaluation import plots, run_rows, summarize

    eng = InferenceEngine.load(a.model)
    data = Path(a.data)
    all_rows = read_catalogue(data / "catalogue.csv")
    rows = [r for r in all_rows if r.split == a.split]
    known = {c.id for c in eng.snapshot.leaves()}
    if not a.include_unknown:
        rows = [r for r in rows if r.leaf_id in known]
    report = {"model": eng.model_version, "split": a.split, "snapshot_version": eng.snapshot_version}
    preds, _ = run_rows(eng, rows, data, desc=f"{a.split} full titles")
    report["full_titles"] = summarize(preds, rows, eng.review_threshold)
    vt = vague_titles(rows, all_rows)
    vpreds, _ = run_rows(eng, rows, data, [vt[r.id] for r in rows], desc=f"{a.split} vague titles")
    report["vague_titles"] = summarize(vpreds, rows, eng.review_threshold)
    if a.plots:
        report["plots"] = plots(preds, rows, a.plots, a.split) + plots(
            vpreds, rows, a.plots, f"{a.split}_vague"
        )
    print(json.dumps(report, indent=1))
    if a.write_metrics:
        from classifier.fusion.artifacts import read_json, write_json

        m = read_json(a.model, "metrics.json", {})
        m[a.split] = report
        write_json(a.model, "metrics.json", m)
    return 0


def _cmd_calibrate(a: argparse.Namespace) -> int:
    _threads(a.threads)
    from classifier.fusion.artifacts import read_json, write_json
    from classifier.fusion.data import read_catalogue
    from classifier.fusion.engine import InferenceEngine
    from classifier.fusion.evaluation import run_rows, summarize
    from classifier.fusion.pipeline import calibrate_rows

    eng = InferenceEngine.load(a.model, device="cpu")
    data = Path(a.data)
    rows = [r for r in read_catalogue(data / "catalogue.csv") if r.split == "val"]
    cal = calibrate_rows(eng, rows, data, eng.cfg)
    write_json(a.model, "calibration.json", cal)
    preds, _ = run_rows(eng, rows, data, desc="val")
    m = read_json(a.model, "metrics.json", {})
    m["val"] = summarize(preds, rows, eng.review_threshold)
    write_json(a.model, "metrics.json", m)
    print(json.dumps({"calibration": cal, "val": m["val"]}, indent=1))
    return 0


def _cmd_ensemble(a: argparse.Namespace) -> int:
    _threads(a.threads)
    from classifier.fusion.pipeline import ensemble_and_save

    members = [Path(m) for m in a.members.split(",") if m.strip()]
    out = Path(a.out)
    if out.exists():
        raise SystemExit(f"--out {out} already exists")
    try:
        ensemble_and_save(members, a.data, out)
    except (OSError, ValueError) as e:
        raise SystemExit(f"ensemble: {e}") from e
    print(f"ensemble of {len(members)} written to {out}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("calibrate", help="refit temperatures and the review threshold on val (no retraining)")
    c.add_argument("--model", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--threads", type=int, default=2)
    c.set_defaults(func=_cmd_calibrate)
    t = sub.add_parser("train", help="train on train, calibrate on val, write a model directory")
    t.add_argument("--data", required=True, help="folder with catalogue.csv and images/")
    t.add_argument("--out", required=True)
    t.add_argument("--config", help="JSON FusionConfig")
    t.add_argument("--epochs", type=int)
    t.add_argument("--image-size", type=int)
    t.add_argument("--cache", help="cache folder (default var/cache/fusion)")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument(
        "--max-train-rows", type=int, help="train on a class-stratified subset of train (a cheaper run)"
    )
    t.add_argument("--no-test", action="store_true", help="prepare train and val only (evaluate later)")
    t.add_argument(
        "--max-minutes",
        type=float,
        help="stop after the epoch that would take training past this budget (the schedule stays as planned)",
    )
    t.set_defaults(func=_cmd_train)
    en = sub.add_parser(
        "ensemble", help="trained models of one recipe (different seeds) as one ensemble, calibrated on val"
    )
    en.add_argument("--members", required=True, help="model directories, comma-separated")
    en.add_argument("--data", required=True, help="folder with catalogue.csv and images/ (val calibrates)")
    en.add_argument("--out", required=True)
    en.add_argument("--threads", type=int, default=2)
    en.set_defaults(func=_cmd_ensemble)
    p = sub.add_parser("predict", help="classify a catalogue CSV (images relative to it)")
    p.add_argument("--model", required=True)
    p.add_argument("--catalogue", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", help="only these splits (comma-separated)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--snapshot", help="knowledge snapshot JSON (from `snapshot` or the knowledge export)")
    p.add_argument(
        "--examples",
        help="labelled catalogue CSV used as prototypes (images relative to the CSV or absolute)",
    )
    p.add_argument(
        "--quantized",
        action="store_true",
        help="compressed serving build (INT8 Linear layers, the backbone on ONNX Runtime)",
    )
    p.set_defaults(func=_cmd_predict)
    e = sub.add_parser("evaluate", help="figures on a split (full and vague titles) + plots")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--plots")
    e.add_argument(
        "--include-unknown",
        action="store_true",
        help="keep rows whose category is not in the model's snapshot (they count as errors)",
    )
    e.add_argument(
        "--write-metrics", action="store_true", help="merge the figures into the model's metrics.json"
    )
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(func=_cmd_evaluate)
