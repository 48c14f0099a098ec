"""The API under /api/: listings, and a token for scripts."""

from django.urls import include, path
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view

from classifier.listings import api as views
from classifier.listings.serializers import ErrorOutput, TokenOutput
from fusionreview.auth import LockoutObtainAuthToken


@extend_schema_view(
    post=extend_schema(
        operation_id="auth_token_create",
        tags=["auth"],
        responses={
            200: TokenOutput,
            400: ErrorOutput,
            429: OpenApiResponse(ErrorOutput, description="Locked out or throttled; see Retry-After"),
        },
    )
)
class TokenObtain(LockoutObtainAuthToken):
    """POST username + password, get the user's API token (created on first use).

    Failed attempts are counted: past LOGIN_FAILURE_LIMIT the username is locked out (HTTP 429
    with Retry-After and a sentence saying for how long).
    """


urlpatterns = [
    path("auth/token/", TokenObtain.as_view(), name="api-token"),
    path("listings/", views.ListingCollection.as_view(), name="api-listing-list"),
    path("listings/<int:pk>/", views.ListingItem.as_view(), name="api-listing-detail"),
    path("review/", include("classifier.review.api_urls")),
    path("models/", include("classifier.registry.api_urls")),
    path("models/", include("classifier.training.api_urls")),
]
