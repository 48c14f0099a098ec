"""Review pages: the queue, the item and its actions, bulk approval, audit trail, stats."""

from django.urls import path

from classifier.review import views as review
from classifier.review import views_reports as review_views_reports

urlpatterns = [
    path("", review.queues, name="review-queues"),
    path("next/", review.next_item, name="review-next"),
    path("undo/", review.undo, name="review-undo"),
    path("task/<int:task_id>/", review.task_page, name="review-task"),
    path("task/<int:task_id>/claim/", review.claim_task, name="review-claim"),
    path("task/<int:task_id>/decide/", review.decide, name="review-decide"),
    path("task/<int:task_id>/release/", review.release, name="review-release"),
    path("task/<int:task_id>/brand/", review.brand_add, name="review-brand-add"),
    path("search/categories/", review.category_search, name="review-category-search"),
    path("search/brands/", review.brand_search, name="review-brand-search"),
    path("bulk/", review_views_reports.bulk, name="review-bulk"),
    path("audit/", review_views_reports.audit, name="review-audit"),
    path("stats/", review_views_reports.stats, name="review-stats"),
]
