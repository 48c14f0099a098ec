"""FusionReview fusion model: a plain PyTorch + transformers package (no Django imports).

Public entry points:
- :mod:`classifier.fusion.knowledge` — the knowledge snapshot the model consults;
- :mod:`classifier.fusion.engine` — ``InferenceEngine`` / ``ListingInput`` / ``FusionPrediction``;
- ``python -m classifier.fusion {snapshot,train,predict,evaluate}`` — the command line.
"""

from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
from classifier.fusion.knowledge import AttributeRule, BrandEntry, CategoryNode, EntityTerm, KnowledgeSnapshot

__all__ = [
    "AttributeRule",
    "BrandEntry",
    "CategoryNode",
    "EntityTerm",
    "KnowledgeSnapshot",
    "snapshot_from_catalogue",
]
