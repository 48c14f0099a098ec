"""Model directory: config.json, model.safetensors, labels.json, calibration.json, metrics.json, snapshot.json.

Never pickle: weights go through safetensors, everything else is JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import NotRequired, TypedDict, cast

import torch
from safetensors.torch import load_file, save_file

from classifier.fusion.config import FusionConfig
from classifier.fusion.ensemble import EnsembleModel, build_model
from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.fusion.modeling import FusionModel


class Labels(TypedDict):
    """labels.json: the leaves the head scores (in order) and the keyword model's dict."""

    leaves: list[str]
    keywords: NotRequired[dict[str, object]]


DEFAULT_CALIBRATION: dict[str, float] = {
    "temperature": 1.0,
    "image_temperature": 1.0,
    "review_threshold": 0.9,
    "target_precision": 0.99,
}


def save_model(
    model_dir: str | Path,
    model: FusionModel | EnsembleModel,
    cfg: FusionConfig,
    labels: Mapping[str, object],
    calibration: Mapping[str, object],
    metrics: Mapping[str, object],
    snapshot: KnowledgeSnapshot,
) -> Path:
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    cfg.save(d / "config.json")
    # frozen pretrained backbone blocks are not stored: they load from the package's weights (config.json
    # names the backbone and how many blocks are frozen)
    save_file(model.trainable_state(), str(d / "model.safetensors"), metadata={"format": "pt"})
    for name, obj in (("labels.json", labels), ("calibration.json", calibration), ("metrics.json", metrics)):
        (d / name).write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    snapshot.save(d / "snapshot.json")
    return d


def write_json(model_dir: str | Path, name: str, obj: Mapping[str, object]) -> None:
    (Path(model_dir) / name).write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")


def read_json(
    model_dir: str | Path, name: str, default: Mapping[str, object] | None = None
) -> dict[str, object]:
    p = Path(model_dir) / name
    if not p.exists():
        if default is not None:
            return dict(default)
        raise FileNotFoundError(f"{p} missing: not a fusion model directory")
    return cast("dict[str, object]", json.loads(p.read_text(encoding="utf-8")))


def load_model(
    model_dir: str | Path, device: str = "cpu"
) -> tuple[FusionModel | EnsembleModel, FusionConfig, Labels]:
    d = Path(model_dir)
    cfg = FusionConfig.load(d / "config.json")
    labels = cast(Labels, read_json(d, "labels.json"))
    model = build_model(cfg, len(labels["leaves"]))
    state = load_file(str(d / "model.safetensors"))
    expected = set(model.trainable_state())
    missing, unexpected = expected - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(
            f"{d}: weights do not match config.json (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    model.load_state_dict(state, strict=False)  # the rest: frozen blocks, loaded from the package
    return model.to(device).eval(), cfg, labels


def weights_checksum(model_dir: str | Path) -> str:
    h = hashlib.sha256()
    with open(Path(model_dir) / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:8]


def model_size_mb(model: torch.nn.Module) -> float:
    return float(sum(p.numel() * p.element_size() for p in model.state_dict().values()) / 2**20)
