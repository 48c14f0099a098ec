"""The frozen-stage cache computed on ONNX Runtime equals the PyTorch one (real catalogue images)."""

import numpy as np
import pytest

from classifier.fusion.data import WHITE_LEVEL, image_to_array, load_image, read_catalogue
from classifier.fusion.prepared import cache_view

from .factories import data_dir, v2_config

DATA = data_dir()
# the `data_dir` fixture fails with what to install when the catalogue is missing (never a silent skip)
pytestmark = pytest.mark.usefixtures("data_dir")


def _cached_config():
    """The v2 split: blocks 0-10 frozen, so the stride-8/16 maps are cached (96 px)."""
    return v2_config(frozen_blocks=11, image_size=96)


def test_frozen_stage_cache_on_onnx_runtime_matches_pytorch(tmp_path):
    assert DATA is not None
    rows = [r for r in read_catalogue(DATA / "catalogue.csv") if r.split == "train"][:10]
    cfg = _cached_config()
    ref = cache_view(cfg, rows, DATA, None, 0, batch_size=4, onnx=False)
    got = cache_view(cfg, rows, DATA, tmp_path, 0, batch_size=4, onnx=True)
    assert list((tmp_path / "onnx").glob("early-*.onnx"))  # it did run on ONNX Runtime
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float16
        diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
        # fp32 maps agree to ~1e-4; fp16 storage can round such a difference one step either way
        tol = 1e-3 + np.abs(b.astype(np.float32)) * 2**-10
        assert (diff <= tol).all(), float(diff.max())


def test_augmented_views_are_other_crops_of_the_same_images_cached_once(tmp_path):
    """View 0 is the plain images' maps with their non-white share per stride-8 cell; a view is the maps of
    a randomly scaled/shifted/recoloured copy of each image, with the share that moved with it; the same view
    is read back, another differs."""
    assert DATA is not None
    rows = [r for r in read_catalogue(DATA / "catalogue.csv") if r.split == "train"][:6]
    cfg = _cached_config()
    plain8, plain16, plain_fg = cache_view(cfg, rows, DATA, None, 0, batch_size=4, onnx=False)
    pixels = np.stack([image_to_array(load_image(DATA / r.image), 96, True) for r in rows])
    non_white = (pixels < WHITE_LEVEL).any(1).astype(np.float32)  # [n, 96, 96]
    expected = non_white.reshape(len(rows), 12, 8, 12, 8).mean(axis=(2, 4))
    assert np.allclose(plain_fg.astype(np.float32), expected, atol=1e-3)
    v1 = cache_view(cfg, rows, DATA, tmp_path, 1, batch_size=4)
    assert [a.shape for a in v1] == [plain8.shape, plain16.shape, plain_fg.shape]
    assert all(a.dtype == np.float16 for a in v1)
    fg = v1[2].astype(np.float32)
    assert fg.min() >= 0 and fg.max() <= 1
    # scaled by 0.8-1.05 and shifted by up to 10%: the product's share of the frame stays close
    assert abs(fg.mean() - plain_fg.astype(np.float32).mean()) < 0.15
    assert not np.array_equal(v1[1], plain16)
    again = cache_view(cfg, rows, DATA, tmp_path, 1, batch_size=4)  # from the cache files
    assert all(np.array_equal(a, b) for a, b in zip(again, v1, strict=True))
    v2 = cache_view(cfg, rows, DATA, tmp_path, 2, batch_size=4)
    assert not np.array_equal(v2[1], v1[1])
