from django.urls import path

from classifier.views import review

urlpatterns = [
    path("", review.queues, name="review-queues"),
]
