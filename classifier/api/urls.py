"""The API under /api/: listings, and a token for scripts."""

from django.urls import include, path
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.authtoken.views import ObtainAuthToken

from classifier.api import views


@extend_schema_view(post=extend_schema(operation_id="auth_token_create", tags=["auth"]))
class TokenObtain(ObtainAuthToken):
    """POST username + password, get the user's API token (created on first use)."""


urlpatterns = [
    path("auth/token/", TokenObtain.as_view(), name="api-token"),
    path("listings/", views.ListingCollection.as_view(), name="api-listing-list"),
    path("listings/<int:pk>/", views.ListingItem.as_view(), name="api-listing-detail"),
    path("review/", include("classifier.api.review_urls")),
    path("models/", include("classifier.api.models_urls")),
]
