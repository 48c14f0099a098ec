"""The frozen-stage cache computed on ONNX Runtime equals the PyTorch one (real catalogue images)."""

import numpy as np
import pytest

from classifier.fusion.data import read_catalogue
from classifier.fusion.prepared import cache_early_features

from .factories import data_dir, tiny_config

DATA = data_dir()
# the `data_dir` fixture fails with what to install when the catalogue is missing (never a silent skip)
pytestmark = pytest.mark.usefixtures("data_dir")


def test_frozen_stage_cache_on_onnx_runtime_matches_pytorch(tmp_path):
    assert DATA is not None
    rows = [r for r in read_catalogue(DATA / "catalogue.csv") if r.split == "train"][:10]
    cfg = tiny_config(
        vision_backbone="efficientnet-lite0",
        vision_pretrained=True,
        frozen_blocks=11,
        fused_stages=[0, 1, 2],
        image_size=96,
    )
    ref = cache_early_features(cfg, rows, DATA, None, "pytorch", batch_size=4, onnx=False)
    got = cache_early_features(cfg, rows, DATA, tmp_path, "onnx", batch_size=4, onnx=True)
    assert list((tmp_path / "onnx").glob("early-*.onnx"))  # it did run on ONNX Runtime
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float16
        diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
        # fp32 maps agree to ~1e-4; fp16 storage can round such a difference one step either way
        tol = 1e-3 + np.abs(b.astype(np.float32)) * 2**-10
        assert (diff <= tol).all(), float(diff.max())
