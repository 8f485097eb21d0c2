"""One redaction rule for every credential the process holds, applied wherever text leaves the gateway.

Chat models register their credentials when they are built (:func:`register_model`: API
keys, credential header and query values, ``user:key@`` userinfo in URLs); the provider
registry adds the credential header and query *names* each provider declares. Then
:func:`redact` masks, in any text:

* every registered credential, wherever it appears (a 401 body echoing the key);
* the value of any credential query parameter (``?api-key=...``, ``&key=...``);
* the userinfo of any URL (``https://user:key@host`` → ``https://**********@host``);
* ``Bearer``/``Basic`` tokens.

It runs where text goes out, never on the request path: error construction
(:mod:`langchain_multigateway.errors` also scrubs the foreign exceptions it chains),
log records of the gateway's and its HTTP clients' loggers (a log-record factory,
installed when the first model is built), span attributes, metric labels, ledger rows,
reprs and dumps, and cassettes. Values shorter than 8 characters are never registered:
they are placeholders (``"none"``, ``"x"``) and masking them would garble text.

This module imports nothing of the package, so every floor may use it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "MASK",
    "add_credential_names",
    "credential_header_names",
    "credential_query_names",
    "install_log_redaction",
    "is_secret_header",
    "is_secret_query",
    "redact",
    "redact_fields",
    "redact_label",
    "redact_value",
    "register_headers",
    "register_model",
    "register_query",
    "register_secret",
    "register_url",
    "scrub_exception",
]

MASK = "**********"
"""What a credential is replaced with (the same as pydantic's ``SecretStr``)."""

MIN_SECRET_LENGTH = 8

DEFAULT_CREDENTIAL_HEADERS = (
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
)
"""Header names that always carry credentials, whatever the provider."""

DEFAULT_CREDENTIAL_QUERY = (
    "api_key",
    "api-key",
    "apikey",
    "key",
    "access_token",
    "token",
    "subscription-key",  # Azure API Management
    "sig",  # Azure shared access signatures
    "auth",
)
"""Query parameter names that always carry credentials, whatever the provider."""

URL_ONLY_CREDENTIAL_QUERY = ("code",)
"""Credentials in a URL's query only (Azure Functions' ``?code=``): as a body key, ``code`` is an error code."""

# Header names are also judged by the words in them (a custom ``x-my-token`` header).
# "auth" catches X-Auth-Key and Helicone-Auth; a name ending in "key" (Ocp-Apim-Subscription-Key,
# X-Access-Key) is a credential too.
_SECRET_HEADER_WORDS = ("auth", "api-key", "apikey", "api_key", "cookie", "token", "secret", "password")

# Loggers whose records are redacted: the gateway's, its HTTP clients' (httpx logs the URL
# with its query string at INFO), the SDKs', and LangChain's (callback errors quote exceptions).
WATCHED_LOGGERS = {
    "langchain_multigateway",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "openai",
    "mistralai",
    "anthropic",
    "langchain_core",
    "langchain",
    "vcr",
}

_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@?#'\"<>]+@")
_BEARER = re.compile(r"\b((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


class _Vault:
    """The credentials and credential names the process knows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: set[str] = set()
        self.ordered: tuple[str, ...] = ()
        """The secrets, longest first, so a key containing another is masked whole."""
        self.by_prefix: dict[str, tuple[tuple[int, frozenset[str]], ...]] = {}
        """The secrets by their first characters, then by length (longest first): one pass over
        a text finds any of many keys, even keys sharing a prefix such as ``sk-proj-``."""
        self.header_names: set[str] = set(DEFAULT_CREDENTIAL_HEADERS)
        self.query_names: set[str] = set(DEFAULT_CREDENTIAL_QUERY)
        self.query: re.Pattern[str] | None = None
        self.version = 0
        """Bumped whenever what is masked changes (keys the cache of :func:`redact_label`)."""

    def add_secret(self, value: str) -> None:
        with self.lock:
            if value not in self.secrets:
                self.secrets.add(value)
                self.ordered = tuple(sorted(self.secrets, key=len, reverse=True))
                grouped: dict[str, dict[int, set[str]]] = {}
                for secret in self.ordered:
                    by_length = grouped.setdefault(secret[:MIN_SECRET_LENGTH], {})
                    by_length.setdefault(len(secret), set()).add(secret)
                self.by_prefix = {
                    prefix: tuple((n, frozenset(found)) for n, found in sorted(by_length.items(), reverse=True))
                    for prefix, by_length in grouped.items()
                }
                self.version += 1

    def add_names(self, headers: Iterable[str], query: Iterable[str]) -> None:
        with self.lock:
            before = (len(self.header_names), len(self.query_names))
            self.header_names.update(h.lower() for h in headers)
            self.query_names.update(q.lower() for q in query)
            if before != (len(self.header_names), len(self.query_names)):
                self.query = None
                self.version += 1

    def query_pattern(self) -> re.Pattern[str]:
        pattern = self.query
        if pattern is None:
            with self.lock:
                every = self.query_names.union(URL_ONLY_CREDENTIAL_QUERY)
                names = "|".join(re.escape(n) for n in sorted(every, key=len, reverse=True))
                # "]" never appears bare in a query: it closes the text around the URL.
                pattern = self.query = re.compile(rf"([?&;](?:{names})=)[^&#\s'\"<>\]]+", re.IGNORECASE)
        return pattern


_VAULT = _Vault()


# ---------------------------------------------------------------------- registering
def register_secret(value: Any) -> None:
    """Remember a credential (a str or a ``SecretStr``) so it is masked wherever it appears."""
    if value is None:
        return
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return
    value = value.strip()
    scheme, _, token = value.partition(" ")
    if token and scheme.lower() in ("bearer", "basic", "token"):
        register_secret(token)
    if len(value) >= MIN_SECRET_LENGTH:
        _VAULT.add_secret(value)


def register_headers(headers: Mapping[str, Any] | None) -> None:
    """Remember the values of the credential headers in ``headers``."""
    for name, value in (headers or {}).items():
        if is_secret_header(name):
            register_secret(value)


def register_query(query: Mapping[str, Any] | None) -> None:
    """Remember the values of the credential query parameters in ``query``."""
    for name, value in (query or {}).items():
        if is_secret_query(name):
            register_secret(value if isinstance(value, str) else str(value))


def register_url(url: Any) -> None:
    """Remember the userinfo and credential query values of a URL."""
    if not isinstance(url, str) or "://" not in url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        register_secret(parts.password)
        register_secret(unquote(parts.password))  # as the server sees (and may echo) it
        # and as the Basic credentials httpx sends for it
        userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
        register_secret(base64.b64encode(userinfo.encode()).decode())
    elif parts.username:
        register_secret(parts.username)  # a token passed as the whole userinfo
        register_secret(unquote(parts.username))
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if value and is_secret_query(name):
            register_secret(value)


def register_model(model: Any) -> None:
    """Remember every credential a (pydantic) chat model holds: its ``SecretStr`` fields,
    credential headers and query values, and URL userinfo. Installs log redaction."""
    for name, value in getattr(model, "__dict__", {}).items():
        if hasattr(value, "get_secret_value"):
            register_secret(value)
        elif isinstance(value, str):
            register_url(value)
        elif isinstance(value, Mapping):
            # Headers by header names; any other mapping (default_query, model_kwargs) by
            # credential-like keys such as api_key or access_token.
            (register_headers if "header" in name else register_query)(value)
            for inner_name, inner in value.items():  # model_kwargs={"extra_headers": {...}}
                if isinstance(inner, Mapping) and "header" in str(inner_name):
                    register_headers(inner)
    install_log_redaction()


def add_credential_names(*, headers: Iterable[str] = (), query: Iterable[str] = ()) -> None:
    """Declare more credential header and query names (the provider registry calls this)."""
    _VAULT.add_names(headers, query)


def credential_header_names() -> tuple[str, ...]:
    """Every credential header name known (defaults plus what providers declared), lowercase."""
    with _VAULT.lock:
        return tuple(sorted(_VAULT.header_names))


def credential_query_names() -> tuple[str, ...]:
    """Every credential query parameter name known, lowercase."""
    with _VAULT.lock:
        return tuple(sorted(_VAULT.query_names))


def is_secret_header(name: str) -> bool:
    """Whether a header carries a credential (its value is never shown or serialized)."""
    lowered = name.lower()
    return (
        lowered in _VAULT.header_names
        or lowered.endswith(("key", "credential", "credentials"))
        or any(word in lowered for word in _SECRET_HEADER_WORDS)
    )


def is_secret_query(name: str) -> bool:
    """Whether a query parameter carries a credential (``api-key``, ``access_token``; not ``max_tokens``)."""
    return _credential_entry(name) or name.lower() in URL_ONLY_CREDENTIAL_QUERY


# ---------------------------------------------------------------------- masking
def redact(text: str) -> str:
    """``text`` with every known credential, credential query value, URL userinfo and bearer token masked."""
    if not text:
        return text
    text = _mask_known(text)
    # Substring checks first: each regex runs only on text that could hold what it masks.
    if "=" in text:
        text = _VAULT.query_pattern().sub(rf"\g<1>{MASK}", text)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(rf"\g<1>{MASK}@", text)
    if "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text:
        text = _BEARER.sub(rf"\g<1>{MASK}", text)
    return text


_FEW_SECRETS = 32


def _mask_known(text: str) -> str:
    secrets = _VAULT.ordered
    if len(secrets) <= _FEW_SECRETS:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
    index, width = _VAULT.by_prefix, MIN_SECRET_LENGTH
    pieces: list[str] = []
    start = position = 0
    while position <= len(text) - width:
        for length, found in index.get(text[position : position + width], ()):
            if text[position : position + length] in found:
                pieces += (text[start:position], MASK)
                position = start = position + length
                break
        else:
            position += 1
    return "".join(pieces) + text[start:] if pieces else text


@functools.lru_cache(maxsize=4096)
def _redact_cached(text: str, version: int) -> str:
    return redact(text)


def redact_label(text: str) -> str:
    """:func:`redact` for short values that repeat (metric labels, model and deployment names,
    span attributes): cached, so a success path pays a dictionary lookup, not a regex pass."""
    if len(text) > 256:
        return redact(text)
    return _redact_cached(text, _VAULT.version)


def redact_fields(record: Any) -> Any:
    """A dataclass instance with its text fields (str, and tuples or lists of str) redacted;
    the same instance when nothing changed (ledger rows)."""
    changes: dict[str, Any] = {}
    for spec in dataclasses.fields(record):
        value = getattr(record, spec.name)
        if isinstance(value, str):
            clean: Any = redact_label(value)
        elif isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
            clean = type(value)(redact_label(v) for v in value)
        else:
            continue
        if clean != value:
            changes[spec.name] = clean
    return dataclasses.replace(record, **changes) if changes else record


def redact_value(value: Any) -> Any:
    """A copy of ``value`` (str, mapping, list, tuple) with credentials masked; credential-named
    entries of a mapping are masked whole. Other values are returned as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(value[k], str) and _credential_entry(k) else redact_value(value[k]) for k in value
        }
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_value(v) for v in value)
    return value


def _credential_entry(key: Any) -> bool:
    # Stricter than header names: a body's "total_tokens" or "token_type" is not a credential.
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return (
        lowered in _VAULT.header_names
        or lowered in _VAULT.query_names
        or lowered.endswith(("token", "_key", "-key"))  # model_kwargs' openai_key, subscription-key
        or any(word in lowered for word in ("authorization", "api-key", "apikey", "api_key", "secret", "password"))
    )


_EXCEPTION_TEXT_ATTRIBUTES = ("message", "msg", "body", "detail", "text", "reason")


def scrub_exception(error: BaseException | None) -> None:
    """Redact, in place, the text of ``error`` and of every exception it chains (cause,
    context, group members): ``args``, ``__notes__`` and the usual message/body attributes.

    Used on foreign exceptions (SDK and transport errors) before the gateway chains them,
    so tracebacks and ``exception.stacktrace`` span attributes hold no credential.
    """
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        _scrub_one(current)
        pending.extend((current.__cause__, current.__context__))
        pending.extend(getattr(current, "exceptions", ()) or ())


def _scrub_one(error: BaseException) -> None:
    # object.__setattr__: some SDK errors are dataclasses or refuse plain assignment.
    try:
        object.__setattr__(error, "args", tuple(redact_value(a) for a in error.args))
    except Exception:  # an exotic exception that refuses: its text stays, the chain goes on
        return
    state = getattr(error, "__dict__", {})
    for name in (*_EXCEPTION_TEXT_ATTRIBUTES, "__notes__"):
        value = state.get(name)
        if isinstance(value, (str, Mapping, list)):
            try:
                object.__setattr__(error, name, redact_value(value))
            except Exception:  # a read-only attribute: leave it
                continue


# ---------------------------------------------------------------------- logging
_install_lock = threading.Lock()
_installed = False


def _watched(name: str) -> bool:
    return name.split(".", 1)[0] in WATCHED_LOGGERS


def install_log_redaction() -> None:
    """Wrap the log-record factory (once) so records of the watched loggers are redacted.

    A factory rather than a logger filter: filters on ``httpx`` do not see records of
    ``httpcore.http11`` or ``openai._base_client``, and a factory sees every record when it
    is made (only records a level lets through are made). A record is rewritten only when
    redaction changes it, so clean records keep their message template and arguments.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _watched(record.name):
                _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def _redact_record(record: logging.LogRecord) -> None:
    try:
        text = record.getMessage()
    except Exception:  # a broken format string is logging's to report
        return
    clean = redact(text)
    if clean != text:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        scrub_exception(record.exc_info[1])
