"""Sign-in throttling and lockout for the login page and the API token endpoint.

After LOGIN_FAILURE_LIMIT failed attempts for one username within LOGIN_LOCKOUT_SECONDS, that
username is locked out for LOGIN_LOCKOUT_SECONDS -- even with the right password -- and the
answer says so and for how long. One client address gets LOGIN_IP_FAILURE_LIMIT failures over
all usernames (password spraying). Counters live in the cache (Redis), so every web process
sees them. When the cache is down the lockout fails open (logged): sign-in keeps working.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

log = logging.getLogger(__name__)


def _key(kind: str, value: str) -> str:
    # Hashed: usernames and addresses are not written into Redis key names as they are.
    return f"auth:{kind}:{hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]}"


def client_ip(request: HttpRequest) -> str:
    if settings.SECURE_PROXY_SSL_HEADER:  # behind the proxy: it appends the client address
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def login_lockout_remaining(*, username: str, ip: str) -> int:
    """Seconds until this username (or address) may try again; 0 when not locked."""
    try:
        until = cache.get_many([_key("lock-user", username), _key("lock-ip", ip)])
    except Exception:
        log.warning("cache unavailable: sign-in lockout not enforced", exc_info=True)
        return 0
    now = time.time()
    return max([0, *(math.ceil(float(t) - now) for t in until.values())])


def login_failure_record(*, username: str, ip: str) -> int:
    """Count a failed attempt; returns the lockout seconds it started (0 if none)."""
    window = settings.LOGIN_LOCKOUT_SECONDS
    locked = 0
    try:
        for kind, value, limit in (
            ("user", username, settings.LOGIN_FAILURE_LIMIT),
            ("ip", ip, settings.LOGIN_IP_FAILURE_LIMIT),
        ):
            if not value:
                continue
            key = _key(f"fail-{kind}", value)
            cache.add(key, 0, timeout=window)
            count = cache.incr(key)
            if count >= limit:
                cache.set(_key(f"lock-{kind}", value), time.time() + window, timeout=window)
                cache.delete(key)
                locked = window
                log.warning("sign-in locked out for %s s after %s failures (%s)", window, count, kind)
    except Exception:
        log.warning("cache unavailable: failed sign-in not counted", exc_info=True)
    return locked


def login_success_record(*, username: str) -> None:
    try:
        cache.delete(_key("fail-user", username))
    except Exception:
        log.warning("cache unavailable", exc_info=True)


def lockout_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return (
        f"Too many failed sign-in attempts. This account is locked for {minutes} {unit}; "
        "try again later or ask an administrator to reset your password."
    )


class LockoutAuthenticationForm(AuthenticationForm):
    """The login form, refusing while locked out and counting failures."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password didn't match. Please try again.",
        "locked_out": "%(message)s",
    }

    def clean(self) -> dict[str, Any]:
        username = self.data.get("username", "") or ""
        ip = client_ip(self.request) if self.request else ""
        remaining = login_lockout_remaining(username=username, ip=ip)
        if remaining:
            self.locked_out = remaining
            raise ValidationError(
                self.error_messages["locked_out"],
                code="locked_out",
                params={"message": lockout_message(remaining)},
            )
        try:
            cleaned = super().clean()
        except ValidationError as exc:
            if exc.code == "invalid_login":
                started = login_failure_record(username=username, ip=ip)
                if started:
                    self.locked_out = started
                    raise ValidationError(
                        self.error_messages["locked_out"],
                        code="locked_out",
                        params={"message": lockout_message(started)},
                    ) from None
            raise
        login_success_record(username=username)
        return cleaned


class LoginView(auth_views.LoginView):
    """Django's login view with the lockout form; a locked-out answer is HTTP 429."""

    form_class = LockoutAuthenticationForm

    def form_invalid(self, form: LockoutAuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        locked = getattr(form, "locked_out", 0)
        if locked:
            response.status_code = 429
            response["Retry-After"] = str(locked)
        return response


class FailOpenScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, letting requests through (logged) when the cache is down."""

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            log.warning("cache unavailable: throttle %s not enforced", self.scope, exc_info=True)
            return True


class LockoutObtainAuthToken(ObtainAuthToken):
    """POST username + password, get the user's API token; locked out like the login page."""

    throttle_classes = [FailOpenScopedRateThrottle]
    throttle_scope = "auth"

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = request.data if isinstance(request.data, dict) else {}  # a JSON list or string is just invalid
        username = str(data.get("username", "") or "")
        ip = client_ip(request)
        remaining = login_lockout_remaining(username=username, ip=ip)
        if remaining:
            return _locked_response(remaining)
        serializer = self.get_serializer(data=data)
        if not serializer.is_valid():
            started = login_failure_record(username=username, ip=ip) if username else 0
            if started:
                return _locked_response(started)
            errors = serializer.errors
            field, messages = next(iter(errors.items()))
            message = messages[0] if isinstance(messages, list) and messages else "invalid"
            detail = str(message) if field == "non_field_errors" else f"{field}: {message}"
            return Response(
                {"detail": detail, "code": "invalid", "errors": errors}, status=status.HTTP_400_BAD_REQUEST
            )
        user = serializer.validated_data["user"]
        login_success_record(username=username)
        from rest_framework.authtoken.models import Token

        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


def _locked_response(seconds: int) -> Response:
    return Response(
        {"detail": lockout_message(seconds), "code": "locked_out", "errors": {}, "retry_after": seconds},
        status=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(seconds)},
    )
