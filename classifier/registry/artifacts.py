"""Model artifact files: checksum, device, the threshold and metrics stored with a model."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:  # pragma: no cover
    pass
import json


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def device_choose() -> str:
    """settings.FUSION_DEVICE, or CUDA when one is present, else CPU."""
    if settings.FUSION_DEVICE:
        return settings.FUSION_DEVICE
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _read_json(path: Path) -> dict[str, Any]:

    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def artifact_calibration_value(artifact_dir: str | Path, key: str) -> float | None:
    """One number of the model's calibration.json (chosen on `val`), or None when it is not there."""
    number = _read_json(Path(artifact_dir) / "calibration.json").get(key)
    try:
        return None if number is None else float(number)
    except (TypeError, ValueError):
        return None


def artifact_review_threshold(artifact_dir: str | Path) -> float | None:
    """The review threshold chosen on `val` and stored with the model (calibration.json), if any."""
    return artifact_calibration_value(artifact_dir, "review_threshold")


class EngineUnavailable(RuntimeError):
    """No model can be loaded (no promoted version and no bundled model directory)."""
