"""A seed ensemble served as one fusion model.

Members are fusion models trained by one recipe with different seeds. They share what is frozen (MiniLM,
and the packaged ImageNet blocks of the backbone up to stride 16: computed once per image) and differ in
what was trained (the later backbone blocks, the fusion and the heads). An ensemble embedding is the
members' unit-length embeddings side by side (scaled by 1/sqrt(members), so it is unit length too), and so
is a prototype, trained, zero-shot or few-shot alike; the ensemble's score for a category is the mean of
the members' scores (logit averaging). Everything that reads a :class:`~classifier.fusion.modeling.FusionModel`
(the engine, calibration, fine-tuning) reads an ensemble through the same methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from classifier.fusion.config import FusionConfig
from classifier.fusion.modeling import (
    FusionFeatures,
    FusionModel,
    FusionOutput,
    PrototypeHead,
    TextBatch,
    efficientnet_stage_ends,
    score_features,
)


def side_by_side(parts: list[torch.Tensor]) -> torch.Tensor:
    """Unit-length member vectors concatenated into one unit-length ensemble vector."""
    return torch.cat([F.normalize(p, dim=-1) for p in parts], -1) / math.sqrt(len(parts))


class EnsembleHead:
    """The members' prototype heads as one head over side-by-side embeddings and prototypes."""

    def __init__(self, heads: list[PrototypeHead]) -> None:
        self.heads = heads
        self.part = int(heads[0].delta.shape[1])  # one member's embedding size

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(x.split(self.part, dim=-1))

    def __call__(self, z: torch.Tensor, prototypes: torch.Tensor | None = None) -> torch.Tensor:
        protos = (
            [None] * len(self.heads)
            # a prototype blended or renormalised as a whole (few-shot, zero-shot) is made unit length
            # again per member: each member's head expects its own unit-length prototypes
            if prototypes is None
            else [F.normalize(p, dim=-1) for p in self._split(prototypes)]
        )
        scores = [h(zm, pm) for h, zm, pm in zip(self.heads, self._split(z), protos, strict=True)]
        return torch.stack(scores).mean(0)

    def text_prototypes(self, category_text: torch.Tensor) -> torch.Tensor:
        return side_by_side([h.text_prototypes(category_text) for h in self.heads])

    def prototypes(self) -> torch.Tensor:
        return side_by_side([h.prototypes() for h in self.heads])

    @property
    def delta(self) -> torch.Tensor:
        # scaled so the trainer's L2 term on it is the members' mean
        return torch.cat([h.delta for h in self.heads], -1) / math.sqrt(len(self.heads))


class EnsembleModel(nn.Module):  # type: ignore[misc]  # torch is not type-checked: nn.Module is Any
    """``size`` fusion models of one configuration, scored as the mean of their logits.

    Args:
        cfg: the members' configuration (their seeds differed in training; nothing else may).
        num_leaves: number of leaf categories the heads are trained on.
        size: number of members (at least 2).
    """

    def __init__(self, cfg: FusionConfig, num_leaves: int, size: int):
        super().__init__()
        if size < 2:
            raise ValueError("an ensemble needs at least two members")
        self.cfg = cfg
        self.members = nn.ModuleList(FusionModel(cfg, num_leaves) for _ in range(size))
        self.efficient = self.members[0].efficient
        # the packaged ImageNet blocks up to stride 16 are the same in every member: run them once
        self.shares_early_stages = bool(
            self.efficient
            and cfg.vision_pretrained
            and cfg.frozen_blocks > efficientnet_stage_ends(cfg.vision_backbone)[1]
        )

    @property
    def head(self) -> EnsembleHead:
        return EnsembleHead([m.head for m in self.members])

    # -- the members' stage maps, kept in one tuple: (shared early maps..., each member's own maps...) --
    def image_stages(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        first = self.members[0]
        if self.shares_early_stages:
            s8, s16, s32 = first.image_stages(pixels)
            return (s8, s16, s32, *(m.backbone.late(s16) for m in self.members[1:]))
        return tuple(h for m in self.members for h in m.image_stages(pixels))

    def member_stages(self, hs: tuple[torch.Tensor, ...], i: int) -> tuple[torch.Tensor, ...]:
        """Member ``i``'s own stage maps out of the ensemble's tuple (:meth:`image_stages`)."""
        if self.shares_early_stages:
            return (hs[0], hs[1], hs[2 + i])
        n = len(hs) // len(self.members)
        return hs[i * n : (i + 1) * n]

    def forward_image_only(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        hs = self.image_stages(pixels)
        embs = [m.image_proj(self.member_stages(hs, i)[-1].mean((2, 3))) for i, m in enumerate(self.members)]
        return side_by_side(embs), hs

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {
            f"members.{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.trainable_state().items()
        }

    def forward_features(
        self,
        pixels: torch.Tensor | None,
        text: TextBatch | None,
        *,
        hidden_states: tuple[torch.Tensor, ...] | None = None,
    ) -> FusionFeatures:
        hs = hidden_states
        if hs is None and pixels is not None and self.cfg.use_image:
            hs = self.image_stages(pixels)
        feats = [
            m.forward_features(None, text, hidden_states=None if hs is None else self.member_stages(hs, i))
            for i, m in enumerate(self.members)
        ]

        def joined(name: str) -> torch.Tensor | None:
            parts = [getattr(f, name) for f in feats]
            return None if parts[0] is None else side_by_side(parts)

        maps = [f.attention for f in feats]
        attention = None if maps[0] is None else torch.stack(maps).mean(0)
        return FusionFeatures(joined("fused"), joined("image_emb"), joined("text_emb"), attention)

    def forward_head(self, feats: FusionFeatures, prototypes: torch.Tensor | None = None) -> FusionOutput:
        return score_features(self.head, feats, prototypes)

    def forward(
        self, pixels: torch.Tensor | None, text: TextBatch | None, prototypes: torch.Tensor | None = None
    ) -> FusionOutput:
        return self.forward_head(self.forward_features(pixels, text), prototypes)


def build_model(cfg: FusionConfig, num_leaves: int) -> FusionModel | EnsembleModel:
    """The model a configuration describes: one fusion model, or an ensemble of ``cfg.ensemble_size``."""
    if cfg.ensemble_size > 1:
        return EnsembleModel(cfg, num_leaves, cfg.ensemble_size)
    return FusionModel(cfg, num_leaves)


def combine(models: Sequence[FusionModel]) -> EnsembleModel:
    """Trained fusion models of one recipe (seeds aside) as one ensemble, their weights copied in."""
    if len(models) < 2:
        raise ValueError("an ensemble needs at least two members")
    cfg = models[0].cfg
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in {"seed", "ensemble_size"}}
    for m in models[1:]:
        other = {k: v for k, v in m.cfg.to_dict().items() if k not in {"seed", "ensemble_size"}}
        diff = sorted(k for k in recipe if recipe[k] != other.get(k))
        if diff:
            raise ValueError(
                f"ensemble members must share one configuration but their seed; they differ in {diff}"
            )
    seeds = [m.cfg.seed for m in models]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"ensemble members must have different seeds (got {seeds})")
    num_leaves = int(models[0].head.delta.shape[0])
    if any(int(m.head.delta.shape[0]) != num_leaves for m in models):
        raise ValueError("ensemble members must score the same leaves")
    ensemble = EnsembleModel(replace(cfg, ensemble_size=len(models)), num_leaves, len(models))
    for member, model in zip(ensemble.members, models, strict=True):
        member.load_state_dict(model.state_dict())
    ensemble.eval()
    return ensemble
