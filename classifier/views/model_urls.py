from django.urls import path

from classifier.views import models_registry

urlpatterns = [
    path("", models_registry.model_list, name="model-list"),
]
