"""Credentials stay home: a request hook for the providers' HTTP clients (httpx and httpx2).

The providers' default clients follow redirects, as the SDKs' own do. On a redirect to
another origin httpx drops ``Authorization`` only; a credential in any other header
(``api-key``, ``x-api-key``, ``X-Portkey-Api-Key``, whatever ``is_secret_header`` calls
secret) would go on to the host the redirect names. httpx calls its ``request`` event
hooks for every hop of a redirect chain, so this hook, given the deployment's home
origin, removes from a request bound anywhere else every secret header, and every header
whose value holds a credential the process knows (``redact`` would mask it: a model's key
under a harmless name, a bearer token). A secret the process was never told of, under a
name that says nothing, is not recognised.

Home is the scheme, host and port of the deployment's base URL; an ``http`` to ``https``
upgrade is another origin too (the server's lean path, ``server/upstream.py``, rules the same).
The sync and async hooks differ only in being a coroutine, as httpx requires.

A 301, 302 or 303 answering a POST is not followed: httpx would resend the call as a GET
without its body, which no chat endpoint serves (the user would see "malformed JSON" from
whatever page answered, and retry it). A response hook stops there with
:class:`RedirectDropsTheRequest`; :func:`redirect_failure` turns it, and a redirect loop
(``TooManyRedirects``, which the openai SDK reports as a connection error), into a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

import httpx

from langchain_multigateway._redact import is_secret_header, redact

__all__ = [
    "WITHHELD_FROM",
    "RedirectDropsTheRequest",
    "acredentials_stay_home",
    "credential_headers",
    "credentials_stay_home",
    "drops_the_request",
    "guard_redirects",
    "redirect_failure",
]

Origin = tuple[str, str, int | None]

WITHHELD_FROM: ContextVar[list[str] | None] = ContextVar("credentials_withheld_from", default=None)
"""Where the call in progress (its ``Exchange`` sets the list) was redirected and sent no
credential: a 401 from there is the withholding's doing, and its error says so."""


def _origin_of(url: str) -> Origin | None:
    """(scheme, host, port) as httpx and httpx2 normalise them (a scheme's default port is ``None``)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if not parsed.scheme or not parsed.host:
        return None  # not absolute: every request to it fails anyway
    return parsed.scheme, parsed.host, parsed.port


def credential_headers(headers: Iterable[tuple[str, str]]) -> set[str]:
    """The names of the headers a request bound for another origin must not carry: by name
    (``is_secret_header``), and by value (a known key, or a bearer token, under a harmless name).
    The one rule for every client that follows redirects: the providers' and the server's."""
    return {name for name, value in headers if is_secret_header(name) or redact(value) != value}


def drops_the_request(method: str, status: int) -> bool:
    """Whether following a redirect (an answer with a Location) of ``status`` to a ``method`` request would
    resend a POST as a GET without its body: refused, not followed."""
    return method == "POST" and status in (301, 302, 303)


def _strip_unless_home(home: Origin | None) -> Callable[[Any], None]:
    def strip_unless_home(request: Any) -> None:
        url = request.url
        if home is not None and url.port == home[2] and url.host == home[1] and url.scheme == home[0]:
            return
        headers = request.headers
        leaving = credential_headers(headers.items())
        for name in leaving:  # a set: del drops repeats too
            del headers[name]
        noted = WITHHELD_FROM.get()
        if leaving and noted is not None:
            noted.append(f"{url.scheme}://{url.netloc.decode('ascii')}")

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


class RedirectDropsTheRequest(Exception):  # noqa: N818 (what happened, not an "Error" suffix)
    """A redirect that would resend a POST as a bodiless GET was answered (and not followed)."""

    def __init__(self, status: int, url: str, location: str) -> None:
        super().__init__(
            f"the server answered the request to {url} with HTTP {status}, a redirect to {location} "
            "that would resend it as a GET without its body (not followed): set the base URL to "
            "the server's new address"
        )
        self.status = status


def _refuse_if_it_drops_the_request(response: Any) -> None:
    location = response.headers.get("location")
    if location is not None and drops_the_request(response.request.method, response.status_code):
        url = response.request.url
        try:
            target = str(url.join(location))
        except Exception:  # a Location no URL parser takes: shown as it came
            target = location
        raise RedirectDropsTheRequest(response.status_code, str(url), target)


async def _arefuse_if_it_drops_the_request(response: Any) -> None:
    _refuse_if_it_drops_the_request(response)


def guard_redirects(client: Any, home_url: str, *, asynchronous: bool) -> None:
    """Append to an httpx / httpx2 client's hooks the credential rule and the POST-redirect refusal."""
    hooks = client.event_hooks
    if asynchronous:
        request_hook: Any = acredentials_stay_home(home_url)
        response_hook: Any = _arefuse_if_it_drops_the_request
    else:
        request_hook, response_hook = credentials_stay_home(home_url), _refuse_if_it_drops_the_request
    client.event_hooks = {"request": [*hooks["request"], request_hook], "response": [*hooks["response"], response_hook]}


def redirect_failure(exc: BaseException) -> tuple[str, int | None] | None:
    """What went wrong, and the redirect's status, when ``exc`` (or what it wraps) is a refused
    redirect or a redirect loop; else None."""
    import httpx2

    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RedirectDropsTheRequest):
            return str(current), current.status
        if isinstance(current, (httpx.TooManyRedirects, httpx2.TooManyRedirects)):
            return f"the server keeps redirecting the request ({current}): check the base URL", None
        current = current.__cause__ or current.__context__
    return None
