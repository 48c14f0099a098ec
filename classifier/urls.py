from django.urls import include, path

urlpatterns = [
    path("", include("classifier.listings.urls")),
    path("review/", include("classifier.review.urls")),
    # The Models area: versions (registry) and, beside them, the list with its training jobs (training).
    path("models/", include("classifier.registry.urls")),
    path("models/", include("classifier.training.urls")),
]
