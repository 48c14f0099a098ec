"""/api/models/: training jobs (start, status)."""

from django.urls import path

from classifier.training import api

urlpatterns = [
    path("training-jobs/", api.TrainingJobCollection.as_view(), name="api-training-jobs"),
    path("training-jobs/<int:pk>/", api.TrainingJobItem.as_view(), name="api-training-job"),
]
