"""Which audit-trail entries are webhook events, and the JSON each one sends (reads only).

The audit trail is written in the same transaction as the change it records, so reading events
from it (an outbox) loses none and needs no hook in the services that make the changes.
"""

from __future__ import annotations

from typing import Any

from classifier.audit import AuditEvent
from classifier.listings.models import Prediction
from classifier.registry.models import ModelVersion
from classifier.review.models import ReviewDecision
from classifier.webhooks.models import EventType

VERB_EVENTS: dict[str, str] = {
    "listing.auto_accept": EventType.LISTING_CLASSIFIED,
    "listing.route_review": EventType.LISTING_CLASSIFIED,
    "review.approve": EventType.REVIEW_DECIDED,
    "review.correct": EventType.REVIEW_DECIDED,
    "review.skip": EventType.REVIEW_DECIDED,
    "review.escalate": EventType.REVIEW_DECIDED,
    "review.undo": EventType.REVIEW_DECIDED,
    "model.promote": EventType.MODEL_PROMOTED,
    "model.rollback": EventType.MODEL_PROMOTED,
}


def _listing_classified(event: AuditEvent) -> dict[str, Any]:
    prediction = (
        Prediction.objects.select_related("listing", "model_version")
        .filter(pk=event.data.get("prediction"))
        .first()
    )
    data: dict[str, Any] = {
        "listing_id": int(event.object_id),
        "outcome": "accepted" if event.verb == "listing.auto_accept" else "in_review",
        "review_task_id": event.data.get("task"),
        "review_reason": event.data.get("reason"),
        "confidence": event.data.get("confidence"),
    }
    if prediction is not None:
        data.update(
            source=prediction.listing.source,
            external_id=prediction.listing.external_id,
            prediction_id=prediction.pk,
            category_id=prediction.category_id,
            category=prediction.category_label,
            brand=prediction.brand_label or None,
            model_version=prediction.model_version.name,
            knowledge_version=prediction.knowledge_version,
        )
    return data


def _review_decided(event: AuditEvent) -> dict[str, Any]:
    decision = (
        ReviewDecision.objects.select_related("auditor", "category", "brand")
        .filter(pk=event.data.get("decision_id"))
        .first()
    )
    data: dict[str, Any] = {"task_id": int(event.object_id), "action": event.verb.split(".", 1)[1]}
    if decision is not None:
        data.update(
            decision_id=decision.pk,
            listing_id=decision.listing_id,
            auditor=decision.auditor.get_username(),
            category_id=decision.category_id,
            category=decision.category.path_label if decision.category else None,
            brand=decision.brand.name if decision.brand else None,
            cause=decision.cause or None,
            comment=decision.comment or None,
            undoes_decision_id=decision.undoes_id,
        )
    return data


def _model_promoted(event: AuditEvent) -> dict[str, Any]:
    version = ModelVersion.objects.filter(pk=event.object_id).first()
    return {
        "model_version_id": int(event.object_id),
        "name": version.name if version else None,
        "checksum": event.data.get("checksum"),
        "rollback": event.verb == "model.rollback",
        "previous": event.data.get("previous"),
        "review_threshold": version.review_threshold if version else None,
    }


_BUILDERS = {
    EventType.LISTING_CLASSIFIED: _listing_classified,
    EventType.REVIEW_DECIDED: _review_decided,
    EventType.MODEL_PROMOTED: _model_promoted,
}


def event_payload(event: AuditEvent) -> dict[str, Any]:
    """The envelope every endpoint receives: id, type, when, and the event's data."""
    event_type = VERB_EVENTS[event.verb]
    return {
        "id": f"evt_{event.pk}",
        "type": str(event_type),
        "created_at": event.created_at.isoformat(),
        "data": _BUILDERS[event_type](event),
    }
