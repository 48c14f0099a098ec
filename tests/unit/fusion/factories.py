"""Factories for the fusion tests: tiny configs, a small snapshot, catalogue rows and images."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.fusion.config import FusionConfig
from classifier.fusion.knowledge import BrandEntry, CategoryNode, KnowledgeSnapshot

LEAVES = ("Apparel > Topwear > Tshirts", "Footwear > Shoes > Casual Shoes", "Accessories > Watches > Watches")


def data_dir() -> Path | None:
    """The fashion data: $FUSION_DATA_DIR or ../shared/data/fashion beside the repository."""
    env = os.environ.get("FUSION_DATA_DIR")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[3] / "../shared/data/fashion")
    for c in cands:
        if (c / "catalogue.csv").exists():
            return c.resolve()
    return None


def tiny_config(**kw) -> FusionConfig:
    base = dict(
        vision_backbone="resnet",  # tiny ResNet from scratch: fast unit tests (EfficientNet: test_model)
        vision_pretrained=False,
        frozen_blocks=0,
        fused_stages=[2, 3, 4],
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32],
        depths=[1, 1, 1, 1],
        image_size=32,
        hires_image_size=48,
        dim=32,
        embed_dim=16,
        max_tokens=16,
        dropout=0.0,
        gate_complexity_max=1.0,
    )
    base.update(kw)
    return FusionConfig(**base)


def v2_config(**kw) -> FusionConfig:
    """:func:`tiny_config` on the pretrained EfficientNet-Lite0 (64 px; blocks 0-14 frozen unless told)."""
    base: dict[str, object] = dict(
        vision_backbone="efficientnet-lite0",
        vision_pretrained=True,
        frozen_blocks=15,
        fused_stages=[0, 1, 2],
        image_size=64,
        hires_image_size=96,
    )
    base.update(kw)
    return tiny_config(**base)


def tiny_snapshot(version: int = 1) -> KnowledgeSnapshot:
    cats = []
    for leaf in LEAVES:
        parts = leaf.split(" > ")
        for d in range(3):
            cid = " > ".join(parts[: d + 1])
            if cid not in {c.id for c in cats}:
                cats.append(CategoryNode(cid, parts[d], " > ".join(parts[:d]) or None))
    brands = (
        # with support (approved listings per relation): a well-supported brand's record is evidence
        BrandEntry("titan", "Titan", (), ("Accessories > Watches > Watches",), (40,)),
        BrandEntry(
            "puma",
            "Puma",
            ("PUMA",),
            ("Apparel > Topwear > Tshirts", "Footwear > Shoes > Casual Shoes"),
            (25, 25),
        ),
    )
    return KnowledgeSnapshot(
        version, tuple(cats), brands, noise_terms=("hot sale", "limited offer", "爆款", "限时抢购")
    )


def catalogue_rows(per_leaf: int = 3) -> list[dict]:
    """A few train rows of each tiny leaf from the real catalogue (empty when the data is absent)."""
    d = data_dir()
    if d is None:
        return []
    out, seen = [], {leaf: 0 for leaf in LEAVES}
    with open(d / "catalogue.csv", newline="") as f:
        for r in csv.DictReader(f):
            leaf = f"{r['master_category']} > {r['sub_category']} > {r['article_type']}"
            if r["split"] == "train" and seen.get(leaf, per_leaf) < per_leaf:
                seen[leaf] += 1
                r["leaf"] = leaf
                r["bytes"] = (d / r["image"]).read_bytes()
                out.append(r)
    return out


def synthetic_image(kind: str = "flat", size: int = 96, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if kind == "flat":
        a = np.full((size, size, 3), 200, dtype=np.uint8)
    else:
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(a)


def jpeg_bytes(img: Image.Image) -> bytes:
    b = io.BytesIO()
    img.save(b, format="JPEG")
    return b.getvalue()
