"""Running an engine over a catalogue split and computing the figures (accuracy per level, macro-F1, ECE,
auto-accept share and precision, latency) and the plots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from classifier.fusion.data import Row
from classifier.fusion.engine import FusionPrediction, InferenceEngine, ListingInput
from classifier.fusion.knowledge import KnowledgeSnapshot


class RawScores(Protocol):
    """What :func:`ece_of_logits` reads of the engine's per-item raw scores (``predict_detailed``)."""

    logits: torch.Tensor  # [k] uncalibrated logits of the path taken


def run_rows(
    engine: InferenceEngine,
    rows: list[Row],
    base: Path,
    titles: list[str] | None = None,
    *,
    batch_size: int = 64,
    force_path: str | None = None,
    review_threshold: float | None = None,
    desc: str = "predict",
) -> tuple[list[FusionPrediction], list[RawScores]]:
    preds: list[FusionPrediction] = []
    raws: list[RawScores] = []
    engine.reserve_image_cache(len(rows))  # a second pass over the split (vague titles) reuses the backbone
    for i in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False):
        chunk = rows[i : i + batch_size]
        items = [
            ListingInput(
                (base / r.image).read_bytes(), titles[i + k] if titles is not None else r.title, key=r.id
            )
            for k, r in enumerate(chunk)
        ]
        p, r = engine.predict_detailed(items, force_path=force_path, review_threshold=review_threshold)
        preds += p
        raws += r
    return preds, raws


def head_accuracy(
    raws: Sequence[RawScores], rows: Sequence[Row], leaves: list[str], field: str
) -> float | None:
    """Accuracy of one head's raw scores (``image_logits`` / ``text_logits``) over the engine's leaves;
    None when a path skipped that head for some item."""
    vals = [getattr(r, field, None) for r in raws]
    if any(v is None for v in vals):
        return None
    names = [c.rsplit(" > ", 1)[-1] for c in leaves]
    pred = torch.stack(vals).argmax(-1).tolist()
    return round(float(np.mean([names[j] == r.article_type for j, r in zip(pred, rows, strict=True)])), 4)


def macro_f1(truth: list[str], pred: list[str]) -> float:
    labels = sorted(set(truth))
    f1s = []
    for c in labels:
        tp = sum(t == c and p == c for t, p in zip(truth, pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(truth, pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(truth, pred, strict=True))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def accuracy(correct: Sequence[bool] | np.ndarray) -> float:
    """Share of correct answers (0.0 when there are none): the accuracy of every report and the gate."""
    flags = np.asarray(correct, dtype=bool)
    return float(flags.mean()) if flags.size else 0.0


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over ``bins`` equal-width confidence bins (0 = perfectly calibrated;
    0.0 for no items): the one ECE of training, evaluation, fine-tuning and the gate."""
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(e)


def summarize(
    preds: Sequence[FusionPrediction], rows: list[Row], threshold: float | None = None
) -> dict[str, object]:
    n = len(rows)
    acc = {
        "master": accuracy(
            [p.master_category == r.master_category for p, r in zip(preds, rows, strict=True)]
        ),
        "sub": accuracy([p.sub_category == r.sub_category for p, r in zip(preds, rows, strict=True)]),
        "article": accuracy([p.article_type == r.article_type for p, r in zip(preds, rows, strict=True)]),
    }
    correct = np.array([p.article_type == r.article_type for p, r in zip(preds, rows, strict=True)])
    conf = np.array([p.confidence for p in preds])
    accepted = np.array([not p.needs_review for p in preds])
    paths = Counter(p.path for p in preds)
    out = {
        "n": n,
        "accuracy": {k: round(float(v), 4) for k, v in acc.items()},
        "article_macro_f1": round(
            macro_f1([r.article_type for r in rows], [p.article_type for p in preds]), 4
        ),
        "ece": round(ece(conf, correct), 4),
        "auto_accepted_share": round(float(accepted.mean()), 4),
        "auto_accepted_precision": round(accuracy(correct[accepted]), 4) if accepted.any() else None,
        "conflict_share": round(float(np.mean(["knowledge_conflict" in p.review_reasons for p in preds])), 4),
        "paths": {k: round(v / n, 4) for k, v in paths.items()},
        "mean_latency_ms": round(float(np.mean([p.latency_ms for p in preds])), 3),
    }
    if threshold is not None:
        out["review_threshold"] = round(float(threshold), 4)
    return out


def ece_of_logits(
    raws: Sequence[RawScores],
    rows: list[Row],
    leaves: list[str],
    temperature: float,
    snapshot: KnowledgeSnapshot,
) -> float:
    names = [snapshot.category(c).name for c in leaves]
    conf, correct = [], []
    for r, row in zip(raws, rows, strict=True):
        p = torch.softmax(r.logits / temperature, -1)
        j = int(p.argmax())
        conf.append(float(p[j]))
        correct.append(names[j] == row.article_type)
    return ece(np.array(conf), np.array(correct))


def plots(
    preds: Sequence[FusionPrediction], rows: list[Row], out_dir: str | Path, tag: str = "test"
) -> list[str]:
    """Confusion matrix (article types), risk-coverage curve and reliability diagram as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = [r.article_type for r in rows]
    pred = [p.article_type for p in preds]
    labels = [c for c, _ in Counter(truth).most_common(30)]
    idx = {c: i for i, c in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)))
    for t, p in zip(truth, pred, strict=True):
        if t in idx and p in idx:
            m[idx[t], idx[p]] += 1
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    files = []
    fig, ax = plt.subplots(figsize=(10, 9))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion (30 most frequent article types, {tag}, row-normalised)")
    fig.tight_layout()
    files.append(str(out / f"confusion_{tag}.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    conf = np.array([p.confidence for p in preds])
    correct = np.array([t == p for t, p in zip(truth, pred, strict=True)], dtype=float)
    order = np.argsort(-conf)
    cov = np.arange(1, len(conf) + 1) / len(conf)
    risk = 1 - np.cumsum(correct[order]) / np.arange(1, len(conf) + 1)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(cov, risk)
    ax.set_xlabel("coverage (share auto-accepted)")
    ax.set_ylabel("risk (error rate)")
    ax.set_title(f"Risk-coverage ({tag})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    files.append(str(out / f"risk_coverage_{tag}.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    edges = np.linspace(0, 1, 11)
    xs, ys, ns = [], [], []
    for lo, hi in pairwise(edges):
        mk = (conf > lo) & (conf <= hi)
        if mk.any():
            xs.append(conf[mk].mean())
            ys.append(correct[mk].mean())
            ns.append(mk.sum())
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot(xs, ys, "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability ({tag}, ECE {ece(conf, correct.astype(bool)):.3f})")
    fig.tight_layout()
    files.append(str(out / f"reliability_{tag}.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files
