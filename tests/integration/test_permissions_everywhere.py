"""Every page and endpoint checks a permission: a logged-in user with no role is refused everywhere."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# Open on purpose: the landing redirect, health check, login/logout, Django admin (its own
# staff check), the token endpoint (it authenticates), the OpenAPI schema/docs/redoc (IsAuthenticated
# only: the API's shape is not a secret from a logged-in user), the favicon and served media/static files.
PUBLIC = re.compile(
    r"^(|healthz|favicon\.ico|accounts/.*|admin/.*|api/auth/token/|api/schema/|api/docs/|api/redoc/|media/.*|static/.*)$"
)


def _walk(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _concrete(route: str) -> str:
    route = route.lstrip("^").rstrip("$")
    route = re.sub(r"<int:[^>]+>", "1", route)
    route = re.sub(r"<(?:str|slug|path):[^>]+>|<[^>:]+>", "x", route)
    route = re.sub(r"\(\?P<[^>]+>[^)]*\)", "1", route)  # regex routes (DRF format suffixes)
    return "/" + route.replace("\\.", ".")


def _guarded_routes() -> list[str]:
    routes = []
    for route, _ in _walk(get_resolver().url_patterns):
        if PUBLIC.match(route.lstrip("^").rstrip("$")) or "format" in route:
            continue
        routes.append(_concrete(route))
    return sorted(set(routes))


def test_there_are_routes_to_check():
    assert len(_guarded_routes()) > 20


@pytest.mark.django_db
@pytest.mark.parametrize("url", _guarded_routes())
def test_user_without_a_role_is_refused(client, nobody, url):
    client.force_login(nobody)
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        assert response.status_code in (403, 405), f"{method.upper()} {url} -> {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("url", _guarded_routes())
def test_anonymous_is_sent_to_login_or_refused(client, url):
    response = client.get(url)
    assert response.status_code in (302, 401, 403, 405), f"GET {url} -> {response.status_code}"
    if response.status_code == 302:
        assert "/accounts/login/" in response["Location"]
