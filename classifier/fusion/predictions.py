"""What the engine takes and gives: one listing in, one prediction out (no torch, no Django)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image


@dataclass
class ListingInput:
    """One listing to classify: the photo (bytes or PIL image) and its title."""

    image: bytes | PIL.Image.Image
    title: str
    description: str = ""
    key: str = ""


@dataclass
class FusionPrediction:
    """The model's answer for one listing (names of the three levels, calibrated confidences, routing)."""

    master_category: str
    sub_category: str
    article_type: str
    category_id: str
    level_confidences: tuple[float, float, float]
    confidence: float
    top_k: dict[str, list[tuple[str, float]]]
    brand: str | None
    brand_confidence: float
    needs_review: bool
    review_reasons: list[str]
    knowledge_findings: list[dict[str, str]]  # routing.Finding.to_dict
    entities: list[dict[str, str | int | float]]  # text.Entity.to_dict
    path: str
    latency_ms: float
    complexity: float
    attention_map: np.ndarray | None = None
    key: str = ""
    model_version: str = ""
    snapshot_version: int = 0
    route_reason: str = "auto_accepted"  # routing.RouteDecision.primary: the first reason, or auto_accepted

    def to_dict(self) -> dict[str, object]:
        """JSON-safe dict (without the attention array)."""
        return {
            "key": self.key,
            "master_category": self.master_category,
            "sub_category": self.sub_category,
            "article_type": self.article_type,
            "category_id": self.category_id,
            "level_confidences": [float(x) for x in self.level_confidences],
            "confidence": float(self.confidence),
            "top_k": {k: [[n, float(p)] for n, p in v] for k, v in self.top_k.items()},
            "brand": self.brand,
            "brand_confidence": float(self.brand_confidence),
            "needs_review": bool(self.needs_review),
            "review_reasons": list(self.review_reasons),
            "route_reason": self.route_reason,
            "knowledge_findings": list(self.knowledge_findings),
            "entities": list(self.entities),
            "path": self.path,
            "latency_ms": float(self.latency_ms),
            "complexity": float(self.complexity),
            "model_version": self.model_version,
            "snapshot_version": self.snapshot_version,
        }
