"""The serving build's vision backbone on ONNX Runtime.

PyTorch's eager CPU kernels spend most of an EfficientNet forward pass allocating and filling large
activation buffers; ONNX Runtime plans its memory once and fuses the batch norms, so the same weights
give the same stage maps (max abs difference ~1e-4) several times faster. The graph is exported once per
model version and kept in a cache folder (the model directory may be read-only); frozen blocks come from
the packaged ImageNet weights either way.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch
from torch import nn

DEFAULT_CACHE = Path(os.environ.get("FUSION_ONNX_CACHE", "var/cache/fusion/onnx"))


class _Stages(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Export wrapper: pixels (normalised) -> the backbone's three stage maps as a tuple."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x))


def backbone_digest(backbone: nn.Module) -> str:
    """Identity of the backbone's weights (the export is reused only for exactly these weights)."""
    h = hashlib.sha1()
    for name, t in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def export_backbone(backbone: nn.Module, path: Path, image_size: int) -> Path:
    """Write the backbone as ONNX (dynamic batch and spatial size: the high-resolution pass reuses it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    example = torch.zeros(2, 3, image_size, image_size)
    was_training = backbone.training
    wrapper = _Stages(backbone).eval()  # the exporter restores the wrapper's mode afterwards: make it eval
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            input_names=["pixels"],
            output_names=["stride8", "stride16", "stride32"],
            dynamic_axes={"pixels": {0: "batch", 2: "height", 3: "width"}},
            opset_version=17,
            dynamo=False,
        )
    backbone.train(was_training)
    os.replace(tmp, path)  # atomic: two workers exporting at once never read half a file
    return path


class OnnxBackbone(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Drop-in for the EfficientNet backbone at inference: same input, same three stage maps."""

    def __init__(
        self, backbone: nn.Module, image_size: int, *, cache_dir: Path | None = None, threads: int = 0
    ):
        super().__init__()
        import onnxruntime as ort

        self.channels = list(backbone.channels)
        cache_dir = cache_dir or DEFAULT_CACHE
        path = cache_dir / f"backbone-{backbone_digest(backbone)}.onnx"
        if not path.exists():
            export_backbone(backbone, path, image_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s8, s16, s32 = self.session.run(None, {"pixels": x.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(s8), torch.from_numpy(s16), torch.from_numpy(s32)


class _Early(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Export wrapper: normalised pixels -> the frozen early part's (stride-8, stride-16) maps."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s8, s16 = self.backbone.early(x)
        return s8, s16


class OnnxEarlyStages:
    """The frozen stem + blocks 0..10 on ONNX Runtime: what training caches once (``prepared.py``).

    Same weights as :meth:`EfficientLiteBackbone.early` (the packaged ImageNet weights), several times
    faster than PyTorch eager on CPU. The export is kept per weights digest under ``cache_dir``.
    """

    def __init__(
        self, backbone: nn.Module, image_size: int, *, cache_dir: Path | None = None, threads: int = 0
    ):
        import onnxruntime as ort

        cache_dir = cache_dir or DEFAULT_CACHE
        path = cache_dir / f"early-{backbone_digest(backbone)}.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            was_training = backbone.training
            wrapper = _Early(backbone).eval()
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper,
                    (torch.zeros(2, 3, image_size, image_size),),
                    str(tmp),
                    input_names=["pixels"],
                    output_names=["stride8", "stride16"],
                    dynamic_axes={"pixels": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )
            backbone.train(was_training)
            os.replace(tmp, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s8, s16 = self.session.run(None, {"pixels": x.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(s8), torch.from_numpy(s16)
