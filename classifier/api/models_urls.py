"""/api/models/: model versions (list, evaluate, promote, roll back) and training jobs (start, status)."""

from django.urls import path

from classifier.api import models_registry as registry
from classifier.api import training

urlpatterns = [
    path("versions/", registry.ModelVersionCollection.as_view(), name="api-model-versions"),
    path("versions/<int:pk>/", registry.ModelVersionItem.as_view(), name="api-model-version"),
    path("versions/<int:pk>/evaluate/", registry.ModelVersionEvaluate.as_view(), name="api-model-evaluate"),
    path("versions/<int:pk>/promote/", registry.ModelVersionPromote.as_view(), name="api-model-promote"),
    path("rollback/", registry.ModelVersionRollback.as_view(), name="api-model-rollback"),
    path("training-jobs/", training.TrainingJobCollection.as_view(), name="api-training-jobs"),
    path("training-jobs/<int:pk>/", training.TrainingJobItem.as_view(), name="api-training-job"),
]
