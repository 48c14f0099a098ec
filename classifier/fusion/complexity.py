"""Cheap image complexity estimate used by the compute-tier gate (well under 5 ms per image)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

_SIZE = 64  # the estimate works on a 64x64 thumbnail: enough for texture statistics, ~0.3 ms


@dataclass(frozen=True)
class Complexity:
    gradient_energy: float  # mean gradient magnitude, scaled to [0, 1]
    colour_entropy: float  # entropy of a 4x4x4 colour histogram / log(64), in [0, 1]
    edge_density: float  # share of pixels whose gradient exceeds a fixed threshold
    score: float  # the mean of the three, in [0, 1]


def estimate_complexity(img: Image.Image | np.ndarray) -> Complexity:
    """Complexity of an RGB image (PIL image or uint8 [h, w, 3] / [3, h, w] array)."""
    if isinstance(img, Image.Image):
        a = np.asarray(img.convert("RGB").resize((_SIZE, _SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    else:
        a = np.asarray(img, dtype=np.float32)
        if a.shape[0] == 3 and a.shape[-1] != 3:
            a = a.transpose(1, 2, 0)
        if a.shape[0] != _SIZE:
            step = max(1, a.shape[0] // _SIZE)
            a = a[::step, ::step]
    gray = a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gx = np.abs(np.diff(gray, axis=1))[:-1]
    gy = np.abs(np.diff(gray, axis=0))[:, :-1]
    mag = gx + gy
    energy = float(min(1.0, mag.mean() / 40.0))  # ~40 grey levels/pixel is a very busy picture
    edges = float((mag > 32.0).mean())
    q = (a // 64).astype(np.int32)  # 4 levels per channel
    hist = np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    entropy = float(-(p * np.log(p)).sum() / np.log(64))
    return Complexity(energy, entropy, edges, float((energy + entropy + edges) / 3))
