from django.urls import include, path

urlpatterns = [
    path("", include("classifier.views.listing_urls")),
    path("review/", include("classifier.views.review_urls")),
    path("models/", include("classifier.views.model_urls")),
]
