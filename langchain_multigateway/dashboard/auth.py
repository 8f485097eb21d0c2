"""Who may see the dashboard: the holder of the master key, by login cookie or bearer token.

The login form posts the key once; the answer sets a session cookie (HttpOnly, so no
script reads it; SameSite=Strict, so no other site's page sends it). The cookie holds
an expiry and an HMAC of it keyed by the master key, never the key itself: it proves
the key was shown without storing or repeating it, every worker process can check it
without shared memory, and changing the master key ends every session. Keys and MACs
are compared with :func:`hmac.compare_digest` (constant time). No master key, no page.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "SESSION_SECONDS", "Gatekeeper"]

COOKIE = "multigateway_dashboard"
SESSION_SECONDS = 12 * 3600
"""A login lasts a working day; after that the form asks for the key again."""
_CONTEXT = b"multigateway-dashboard-session:"
_MAX_DIGITS = 12


class Gatekeeper:
    """Checks a request's cookie or bearer token against the master key."""

    def __init__(self, master_key: str | None) -> None:
        self._key = (master_key or "").encode()

    @property
    def enabled(self) -> bool:
        """False when no master key is set: the dashboard is then not served at all."""
        return bool(self._key)

    def _mac(self, expires: str) -> str:
        return hmac.new(self._key, _CONTEXT + expires.encode(), hashlib.sha256).hexdigest()

    def key_matches(self, presented: str) -> bool:
        return self.enabled and hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), self._key)

    def session(self, now: float | None = None) -> str:
        """A new session cookie's value."""
        expires = str(int((time.time() if now is None else now) + SESSION_SECONDS))
        return f"{expires}.{self._mac(expires)}"

    def session_valid(self, value: str, now: float | None = None) -> bool:
        expires, _, mac = value.partition(".")
        # ASCII digits of a plausible length only: int() refuses other "digits" ("²") and
        # more than 4,300 of them, which a forged cookie must not turn into a 500.
        if not self.enabled or not (expires.isascii() and expires.isdigit() and len(expires) <= _MAX_DIGITS):
            return False
        if int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(mac.encode(), self._mac(expires).encode())

    def allows(self, request: Request) -> bool:
        """The request carries a valid session cookie, or the master key as a bearer token."""
        if not self.enabled:
            return False
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return self.key_matches(auth[7:].strip())
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and self.session_valid(cookie)

    def log_in(self, response: Response, request: Request) -> None:
        response.set_cookie(
            COOKIE,
            self.session(),
            max_age=SESSION_SECONDS,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def log_out(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
