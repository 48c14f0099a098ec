"""Uploaded files (listing photos, attention maps) behind a permission check, in every mode.

Production has no other server for /media/: gunicorn serves it through this view, to people
and scripts allowed to see listings (session login or an API token), with the browser told
not to sniff types or share the file with other users' caches.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_safe
from django.views.static import serve

from fusionreview.roles import Perm


def _user(request: HttpRequest):
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user
    if request.META.get("HTTP_AUTHORIZATION", "").startswith("Token "):
        from rest_framework.authentication import TokenAuthentication
        from rest_framework.exceptions import AuthenticationFailed
        from rest_framework.request import Request

        try:
            found = TokenAuthentication().authenticate(Request(request))
        except AuthenticationFailed:
            return None
        return found[0] if found else None
    return None


@require_safe
def media_serve(request: HttpRequest, path: str) -> HttpResponse:
    user = _user(request)
    if user is None:
        return redirect_to_login(request.get_full_path())
    if not user.has_perm(Perm.VIEW_LISTINGS):
        return HttpResponseForbidden("You do not have permission to see listing files.")
    # django.views.static.serve refuses paths that leave MEDIA_ROOT and answers 404 for missing files.
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
