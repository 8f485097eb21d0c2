"""Credentials stay home: a request hook for the providers' HTTP clients (httpx and httpx2).

The providers' default clients follow redirects, as the SDKs' own do. On a redirect to
another origin httpx drops ``Authorization`` only; a credential in any other header
(``api-key``, ``x-api-key``, ``X-Portkey-Api-Key``, whatever ``is_secret_header`` calls
secret) would go on to the host the redirect names. httpx calls its ``request`` event
hooks for every hop of a redirect chain, so this hook, given the deployment's home
origin, removes every secret header from a request bound anywhere else.

Home is the scheme, host and port of the deployment's base URL; an ``http`` to ``https``
upgrade is another origin too (the server's lean path, ``server/upstream.py``, rules the same).
The sync and async hooks differ only in being a coroutine, as httpx requires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from langchain_multigateway._redact import is_secret_header

__all__ = ["acredentials_stay_home", "add_request_hook", "credentials_stay_home"]

Origin = tuple[str, str, int | None]


def _origin_of(url: str) -> Origin | None:
    """(scheme, host, port) as httpx and httpx2 normalise them (a scheme's default port is ``None``)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if not parsed.scheme or not parsed.host:
        return None  # not absolute: every request to it fails anyway
    return parsed.scheme, parsed.host, parsed.port


def _strip_unless_home(home: Origin | None) -> Callable[[Any], None]:
    def strip_unless_home(request: Any) -> None:
        url = request.url
        if home is not None and url.port == home[2] and url.host == home[1] and url.scheme == home[0]:
            return
        headers = request.headers
        for name in {name for name in headers if is_secret_header(name)}:  # a set: del drops repeats too
            del headers[name]

    return strip_unless_home


def credentials_stay_home(home_url: str) -> Callable[[Any], None]:
    """A sync ``event_hooks["request"]`` hook sending credential headers only to ``home_url``'s origin."""
    return _strip_unless_home(_origin_of(home_url))


def acredentials_stay_home(home_url: str) -> Callable[[Any], Awaitable[None]]:
    """The async twin of :func:`credentials_stay_home` (httpx awaits an async client's hooks)."""
    strip = _strip_unless_home(_origin_of(home_url))

    async def credentials_stay_home(request: Any) -> None:
        strip(request)

    return credentials_stay_home


def add_request_hook(client: Any, hook: Callable[[Any], Any]) -> None:
    """Append ``hook`` to an httpx / httpx2 client's request hooks (after the ones it has)."""
    hooks = client.event_hooks
    client.event_hooks = {"request": [*hooks["request"], hook], "response": hooks["response"]}
