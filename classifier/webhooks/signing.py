"""HMAC-SHA256 signatures of webhook deliveries (pure functions: no Django).

Every delivery carries

    X-FusionReview-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver recomputes the HMAC over the timestamp, a dot and the raw request body with the
endpoint's secret, compares it in constant time, and refuses timestamps older than a few minutes
(replays). `signature_verify` is the reference implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-FusionReview-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for `body` signed with `secret` at `timestamp` (now by default)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def signature_verify(
    *,
    secret: str,
    body: bytes,
    header: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when `header` signs `body` with `secret` and its timestamp is within the tolerance."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_seconds:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
