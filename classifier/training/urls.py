"""/models/: the version list (with its training jobs and drift alerts), training jobs, drift."""

from django.urls import path

from classifier.training import views as v

urlpatterns = [
    path("", v.model_list, name="model-list"),
    path("training/new/", v.training_new, name="training-new"),
    path("training/<int:pk>/", v.training_detail, name="training-detail"),
    path("training/<int:pk>/cancel/", v.training_cancel, name="training-cancel"),
    path("drift/<int:pk>/resolve/", v.drift_resolve, name="drift-resolve"),
]
