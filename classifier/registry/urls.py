"""/models/: one version, its plots, comparison, evaluation, promotion and rollback."""

from django.urls import path

from classifier.registry import views as v

urlpatterns = [
    path("<int:pk>/", v.model_detail, name="model-detail"),
    path("<int:pk>/promote/", v.model_promote, name="model-promote"),
    path("<int:pk>/plot/<slug:kind>.png", v.model_plot, name="model-plot"),
    path("<int:pk>/evaluate/", v.model_evaluate, name="model-evaluate"),
    path("rollback/", v.model_rollback, name="model-rollback"),
    path("compare/", v.model_compare, name="model-compare"),
]
