"""Sessions read from the cache (Redis) and written through to the database, as Django's cached_db
backend does, except that Redis being away never fails a request.

Django's cached_db already logs a failed cache write on save, but a failed read-back (`load` stores
what it read from the database), the existence check for a new key, and the cache delete of a
logout raise. Here each falls back to the database alone, which is what the plain database backend
would do, and logs it: every page keeps working while Redis is down, a little slower.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.sessions.backends import cached_db, db

log = logging.getLogger(__name__)


class SessionStore(cached_db.SessionStore):
    def load(self) -> dict[str, Any]:
        try:
            data = self._cache.get(self.cache_key)
        except Exception:
            log.warning("session cache unreachable; reading the session from the database")
            data = None
        if data is not None:
            return data  # type: ignore[no-any-return]
        stored = self._get_session_from_db()
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        try:
            self._cache.set(self.cache_key, data, self.get_expiry_age(expiry=stored.expire_date))
        except Exception:
            log.warning("session cache unreachable; not caching the session")
        return data  # type: ignore[no-any-return]

    def exists(self, session_key: str) -> bool:
        try:
            return super().exists(session_key)
        except Exception:
            log.warning("session cache unreachable; checking the session key in the database")
            return db.SessionStore.exists(self, session_key)

    def delete(self, session_key: str | None = None) -> None:
        # The database row goes first (as in cached_db); a cache entry that cannot be deleted now
        # is logged as an error: it would let the session back in until it expires.
        db.SessionStore.delete(self, session_key)
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        try:
            self._cache.delete(self.cache_key_prefix + key)
        except Exception:
            log.error("session cache unreachable; the cached copy of a deleted session remains")
