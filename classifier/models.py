"""The classifier app's models, one module per feature; imported here so Django registers them
(app label `classifier`, tables and migrations unchanged)."""

from classifier.audit import AuditEvent
from classifier.listings.models import Listing, Prediction, RouteReasonChoice
from classifier.registry.models import ModelEvaluation, ModelVersion
from classifier.review.models import ReviewDecision, ReviewTask
from classifier.training.models import DriftAlert, TrainingJob

__all__ = [
    "AuditEvent",
    "DriftAlert",
    "Listing",
    "ModelEvaluation",
    "ModelVersion",
    "Prediction",
    "ReviewDecision",
    "ReviewTask",
    "RouteReasonChoice",
    "TrainingJob",
]
