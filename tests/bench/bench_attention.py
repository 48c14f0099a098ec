"""Attention concentration benchmark: how much of the attention map's mass falls on the product.

usage:
  .venv/bin/python tests/bench/bench_attention.py [--data ../shared/data/fashion] \
      [--model fusionreview/demo/model] [--split test] [--n 200] [--seed 0] [--out var/bench/attention.json]

For a random sample of catalogue photos (plain white backgrounds) the product's bounding box is estimated
from the non-white pixels; the model's attention map (`FusionPrediction.attention_map`, in the frame of the
image the CNN saw) is mapped back onto the photo and the share of its mass inside the box is measured.
Printed beside it: the share a uniform map would get (the box's area: what "no concentration" scores), the
share of items whose hottest cell is inside the box, and the mass in a one-cell border (where padding or
edge artefacts would show). Target: >= 70 % of the mass inside the box. Prints figures; never fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning threads thrash on a shared CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WHITE = 235  # a pixel whose three channels are all above this is background (JPEG noise stays below 20)


def product_box(img: Image.Image, *, min_share: float = 0.02) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the non-white pixels, ignoring rows/columns with under `min_share`
    of them (JPEG speckle, a thin frame). None for a photo with no clear background."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    fg = (rgb < WHITE).any(axis=2)  # [h, w]
    if fg.mean() > 0.97 or fg.mean() < 0.005:
        return None
    cols = np.flatnonzero(fg.mean(axis=0) > min_share)
    rows = np.flatnonzero(fg.mean(axis=1) > min_share)
    if not len(cols) or not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def map_to_photo(att: np.ndarray, size: tuple[int, int], *, padded_square: bool) -> np.ndarray:
    """The attention map [h, w] resampled onto the photo's pixels [H, W] (mass-preserving up to
    interpolation). A padded-square frame is cropped back to the photo first."""
    w, h = size
    m = Image.fromarray(att.astype(np.float32), mode="F")
    if padded_square and w != h:
        s = max(w, h)
        frame = m.resize((s, s), Image.Resampling.BILINEAR)
        left, top = (s - w) // 2, (s - h) // 2
        return np.asarray(frame.crop((left, top, left + w, top + h)), dtype=np.float64)
    return np.asarray(m.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64)


def concentration(att_px: np.ndarray, box: tuple[int, int, int, int]) -> dict[str, float]:
    total = float(att_px.sum()) or 1.0
    left, top, right, bottom = box
    inside = float(att_px[top:bottom, left:right].sum()) / total
    area = (right - left) * (bottom - top) / att_px.size
    peak_y, peak_x = np.unravel_index(int(att_px.argmax()), att_px.shape)
    peak_inside = left <= peak_x < right and top <= peak_y < bottom
    return {"inside": inside, "area": area, "peak_inside": float(peak_inside)}


def probe(model_dir: str, rows, data: Path, padded: bool) -> None:
    """Inside-box share of three maps per item: the shipped attention (mean of the stages' sigmoid gates),
    the gated features' magnitude (what the attention-weighted pooling actually draws on), and the raw
    stage features' magnitude (what the CNN responds to before any text guidance)."""
    import torch
    import torch.nn.functional as F

    from classifier.fusion.engine import InferenceEngine, ListingInput
    from classifier.fusion.modeling import TextGuidedAttention

    engine = InferenceEngine.load(model_dir, device="cpu")  # fresh: no cached answers, every item runs
    captured: list[tuple] = []

    def hook(module, inputs, output) -> None:
        gated, gate, _text = output
        captured.append((inputs[0].detach(), gated.detach(), gate.detach()))

    handles = [
        m.register_forward_hook(hook) for m in engine.model.modules() if isinstance(m, TextGuidedAttention)
    ]
    stages = len(handles)
    shares: dict[str, list[float]] = {"attention (shipped)": [], "gated features": [], "stage features": []}
    try:
        for row in rows:
            captured.clear()
            pred = engine.predict_batch(
                [ListingInput(image=(data / row.image).read_bytes(), title=row.title)]
            )[0]
            photo = Image.open(data / row.image).convert("RGB")
            box = product_box(photo)
            if pred.attention_map is None or box is None or len(captured) < stages:
                continue
            first = captured[:stages]  # the full path's pass (a high-resolution second pass comes after)
            size = first[0][2].shape[-2:]

            def up(t: torch.Tensor, size=size) -> np.ndarray:
                m = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
                return m / (m.max() + 1e-9)

            maps = {
                "attention (shipped)": np.mean([up(g) for _, _, g in first], 0),
                "gated features": np.mean([up(x.abs().mean(1, keepdim=True)) for _, x, _ in first], 0),
                "stage features": np.mean([up(f.abs().mean(1, keepdim=True)) for f, _, _ in first], 0),
            }
            for name, m in maps.items():
                shares[name].append(
                    concentration(map_to_photo(m, photo.size, padded_square=padded), box)["inside"]
                )
    finally:
        for h in handles:
            h.remove()
    print(f"probe ({len(shares['stage features'])} items with a map): mass inside the product box")
    for name, values in shares.items():
        if values:
            print(f"  {name:<20} mean {100 * np.mean(values):.1f}% · median {100 * np.median(values):.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion"))
    ap.add_argument("--model", default=str(ROOT / "fusionreview" / "demo" / "model"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="40 items")
    ap.add_argument("--out", default="")
    ap.add_argument(
        "--probe",
        action="store_true",
        help="also measure, per item, what the stages' feature maps and the gated features put on the product "
        "(forward hooks on the text-guided attention modules; one item at a time): where a fix should go",
    )
    a = ap.parse_args()
    if a.quick:
        a.n = min(a.n, 40)

    import torch

    from classifier.fusion.data import read_catalogue
    from classifier.fusion.engine import InferenceEngine, ListingInput

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    data = Path(a.data)
    rows = read_catalogue(data / "catalogue.csv", splits=(a.split,))
    rows = random.Random(a.seed).sample(rows, min(a.n, len(rows)))
    engine = InferenceEngine.load(a.model, device="cpu")
    padded = bool(getattr(engine.cfg, "pad_square", False))
    print(f"model {engine.model_version} · {len(rows)} {a.split} photos · frame: "
          f"{'white-padded square' if padded else 'squashed to square'} · background: all channels > {WHITE}")  # fmt: skip

    results, no_box, no_map = [], 0, 0
    t0 = time.perf_counter()
    for start in range(0, len(rows), a.batch):
        chunk = rows[start : start + a.batch]
        photos = [Image.open(data / r.image).convert("RGB") for r in chunk]
        preds = engine.predict_batch(
            [ListingInput(image=(data / r.image).read_bytes(), title=r.title, key=r.id) for r in chunk]
        )
        for row, photo, pred in zip(chunk, photos, preds, strict=True):
            box = product_box(photo)
            if box is None:
                no_box += 1
                continue
            if pred.attention_map is None:
                no_map += 1
                continue
            att = np.clip(np.nan_to_num(np.asarray(pred.attention_map, dtype=np.float64)), 0, None)
            # the engine already crops a padded square's margins: the shipped map covers the photo only
            figures = concentration(map_to_photo(att, photo.size, padded_square=False), box)
            figures.update(id=row.id, article=row.article_type, map_shape=list(att.shape))
            results.append(figures)
    seconds = time.perf_counter() - t0
    if not results:
        print("no item had both a product box and an attention map")
        return

    inside = np.array([r["inside"] for r in results])
    area = np.array([r["area"] for r in results])
    peak = np.array([r["peak_inside"] for r in results])
    lift = inside / np.maximum(area, 1e-6)
    print(f"items measured: {len(results)} (no clear background: {no_box}, no attention map: {no_map}); "
          f"map {results[0]['map_shape'][0]}x{results[0]['map_shape'][1]} cells; {seconds:.1f} s")  # fmt: skip
    print(f"attention mass inside the product box: mean {100 * inside.mean():.1f}% · median "
          f"{100 * np.median(inside):.1f}% · p10 {100 * np.percentile(inside, 10):.1f}%   (target >= 70%)")  # fmt: skip
    print(f"  items with >= 70% inside: {100 * (inside >= 0.7).mean():.1f}%")
    print(f"  a uniform map would put {100 * area.mean():.1f}% inside (the box's share of the photo); "
          f"lift over uniform: x{lift.mean():.2f}")  # fmt: skip
    print(f"  hottest cell inside the box: {100 * peak.mean():.1f}% of items")
    by_type: dict[str, list[float]] = {}
    for r in results:
        by_type.setdefault(r["article"], []).append(r["inside"])
    worst = sorted(((np.mean(v), k, len(v)) for k, v in by_type.items() if len(v) >= 3))[:5]
    if worst:
        print("  lowest article types: " + ", ".join(f"{k} {100 * m:.0f}% (n={n})" for m, k, n in worst))
    if a.probe:
        probe(a.model, rows, data, padded)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "model": engine.model_version,
            "n": len(results),
            "inside_mean": float(inside.mean()),
            "inside_median": float(np.median(inside)),
            "uniform_mean": float(area.mean()),
            "peak_inside": float(peak.mean()),
            "items": results,
        }
        out.write_text(json.dumps(summary, indent=1), encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
