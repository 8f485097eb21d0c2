"""Who may see the dashboard: the holder of the master key, by login cookie or bearer token.

The login form posts the key once; the answer sets a session cookie (HttpOnly, so no
script reads it; SameSite=Strict, so no other site's page sends it). The cookie holds
an expiry, a random session id and an HMAC of both keyed by the master key, never the
key itself: it proves the key was shown without storing or repeating it, every worker
process can check it without shared memory, and changing the master key ends every
session. Signing out also ends the session server-side (its id is refused until it
would have expired), so a copy of the cookie taken before is no use after; with
``serve --workers N`` that refusal is known to the worker that answered the sign-out
only. Keys and MACs are compared with :func:`hmac.compare_digest` (constant time).
No master key, no page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
        self._ended: dict[str, float] = {}
        """Sessions signed out before their expiry (``expires.id`` -> expiry)."""

    @property
    def enabled(self) -> bool:
        """False when no master key is set: the dashboard is then not served at all."""
        return bool(self._key)

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, _CONTEXT + body.encode(), hashlib.sha256).hexdigest()

    def key_matches(self, presented: str) -> bool:
        return self.enabled and hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), self._key)

    def session(self, now: float | None = None) -> str:
        """A new session cookie's value: ``expires.id.mac``."""
        expires = str(int((time.time() if now is None else now) + SESSION_SECONDS))
        body = f"{expires}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._mac(body)}"

    def session_valid(self, value: str, now: float | None = None) -> bool:
        body, _, mac = value.rpartition(".")
        expires, _, session_id = body.partition(".")
        # ASCII digits of a plausible length only: int() refuses other "digits" ("²") and
        # more than 4,300 of them, which a forged cookie must not turn into a 500.
        if not self.enabled or not (expires.isascii() and expires.isdigit() and len(expires) <= _MAX_DIGITS):
            return False
        if not session_id or int(expires) < (time.time() if now is None else now) or body in self._ended:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(body).encode())

    def end(self, value: str | None, now: float | None = None) -> None:
        """Sign a session out: its cookie is refused from now on (until it would have expired anyway)."""
        now = time.time() if now is None else now
        if value is None or not self.session_valid(value, now):
            return
        body = value.rpartition(".")[0]
        self._ended = {b: t for b, t in self._ended.items() if t >= now}  # forget those past their expiry
        self._ended[body] = float(body.partition(".")[0])

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

    def log_out(self, response: Response, request: Request) -> None:
        self.end(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
