"""/api/models/: model versions (list, evaluate, promote, roll back)."""

from django.urls import path

from classifier.registry import api

urlpatterns = [
    path("versions/", api.ModelVersionCollection.as_view(), name="api-model-versions"),
    path("versions/<int:pk>/", api.ModelVersionItem.as_view(), name="api-model-version"),
    path("versions/<int:pk>/evaluate/", api.ModelVersionEvaluate.as_view(), name="api-model-evaluate"),
    path("versions/<int:pk>/promote/", api.ModelVersionPromote.as_view(), name="api-model-promote"),
    path("rollback/", api.ModelVersionRollback.as_view(), name="api-model-rollback"),
]
