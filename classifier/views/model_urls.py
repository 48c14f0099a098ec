from django.urls import path

from classifier.views import models_registry as v

urlpatterns = [
    path("", v.model_list, name="model-list"),
    path("<int:pk>/", v.model_detail, name="model-detail"),
    path("<int:pk>/promote/", v.model_promote, name="model-promote"),
    path("<int:pk>/plot/<slug:kind>.png", v.model_plot, name="model-plot"),
    path("<int:pk>/evaluate/", v.model_evaluate, name="model-evaluate"),
    path("rollback/", v.model_rollback, name="model-rollback"),
    path("compare/", v.model_compare, name="model-compare"),
    path("training/new/", v.training_new, name="training-new"),
    path("training/<int:pk>/", v.training_detail, name="training-detail"),
    path("training/<int:pk>/cancel/", v.training_cancel, name="training-cancel"),
    path("drift/<int:pk>/resolve/", v.drift_resolve, name="drift-resolve"),
]
