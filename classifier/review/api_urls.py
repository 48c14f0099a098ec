"""/api/review/: review tasks for integrators (list, claim next, decide, undo)."""

from django.urls import path

from classifier.review import api as review

urlpatterns = [
    path("tasks/", review.ReviewTaskCollection.as_view(), name="api-review-tasks"),
    path("tasks/claim-next/", review.ReviewClaimNext.as_view(), name="api-review-claim-next"),
    path("tasks/<int:pk>/", review.ReviewTaskItem.as_view(), name="api-review-task"),
    path("tasks/<int:pk>/decide/", review.ReviewDecide.as_view(), name="api-review-decide"),
    path("undo/", review.ReviewUndo.as_view(), name="api-review-undo"),
]
