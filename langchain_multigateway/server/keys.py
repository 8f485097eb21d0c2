"""Virtual keys: created once, stored as a hash (SQLite), looked up per request.

A key is ``mg-`` plus 43 random URL-safe characters (256 bits). The store keeps its
SHA-256 digest, a short id (``key_…``) and a display prefix, never the key itself,
so a stolen database yields no usable key. A plain hash (not a slow password hash)
is enough: the keys are random, not chosen by people, so there is nothing to guess.

Lookups go by the SHA-256 digest of what the client sent: the time a lookup takes
depends on that digest, which says nothing about how much of a guessed key was
right (comparing keys takes constant time in effect; the master key is compared with
:func:`hmac.compare_digest`). The server caches a lookup for
``cache_seconds`` (1 s by default): a key revoked by ``multigateway keys revoke`` in
another process stops working within that time.

.. code-block:: python

    store = KeyStore("keys.sqlite3")
    secret, key = store.create("team-a", models=["fast"], rpm=60, budget_usd=10, period="30d")
    store.authenticate(secret)      # the VirtualKey, or None when unknown
    store.revoke(key.id)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_multigateway._redact import register_secret

__all__ = ["KEYS_ENV", "KeyStore", "VirtualKey", "default_keys_path", "parse_duration", "parse_expiry"]

KEYS_ENV = "MULTIGATEWAY_KEYS"
_PREFIX = "mg-"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX = 10**12  # larger limits are typos (and would overflow SQLite's integers)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    models TEXT,
    rpm INTEGER,
    tpm INTEGER,
    budget_usd REAL,
    period_seconds REAL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
"""


def default_keys_path() -> Path:
    """``$MULTIGATEWAY_KEYS``, else ``~/.multigateway/keys.sqlite3``."""
    env = os.environ.get(KEYS_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".multigateway" / "keys.sqlite3"


def parse_duration(text: str) -> float:
    """Seconds in ``"30d"``, ``"12h"``, ``"90m"``, ``"2w"`` or ``"45s"``."""
    found = _DURATION.match(text)
    if not found:
        msg = f"expected a duration such as 30d, 12h, 90m, 2w or 45s (got {text!r})"
        raise ValueError(msg)
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_expiry(text: str, *, now: float | None = None) -> float:
    """Epoch seconds from a duration (``"30d"``: from now) or an ISO date/time (UTC when no zone)."""
    try:
        return (time.time() if now is None else now) + parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        msg = f"expected a duration (30d) or an ISO date such as 2026-12-31 (got {text!r})"
        raise ValueError(msg) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class VirtualKey:
    """A key's record (never the key itself)."""

    id: str
    name: str
    prefix: str
    """The first characters of the key, to recognise it in a list."""
    models: tuple[str, ...] | None = None
    """Routers and models the key may use; None: all."""
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    period_seconds: float | None = None
    """The budget's period; None: the budget is for the key's lifetime."""
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    digest: str = ""

    def __repr__(self) -> str:
        return f"VirtualKey(id={self.id!r}, name={self.name!r}, prefix={self.prefix!r})"

    @property
    def tag(self) -> str:
        """The ledger tag of this key's calls (its id, never the key)."""
        return f"key:{self.id}"

    def state(self, now: float | None = None) -> str:
        """``"active"``, ``"revoked"`` or ``"expired"``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (time.time() if now is None else now):
            return "expired"
        return "active"

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def period_start(self, now: float) -> float:
        """Start of the budget period ``now`` falls in (periods run from the key's creation)."""
        if not self.period_seconds:
            return self.created_at
        elapsed = max(0.0, now - self.created_at)
        return self.created_at + (elapsed // self.period_seconds) * self.period_seconds

    def to_public(self) -> dict[str, Any]:
        """The record as shown by ``keys list`` and the admin API (no digest)."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_usd": self.budget_usd,
            "period_seconds": self.period_seconds,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "state": self.state(),
        }


def _row_key(row: sqlite3.Row) -> VirtualKey:
    models = json.loads(row["models"]) if row["models"] is not None else None
    return VirtualKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        models=tuple(models) if models is not None else None,
        rpm=row["rpm"],
        tpm=row["tpm"],
        budget_usd=row["budget_usd"],
        period_seconds=row["period_seconds"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        digest=row["digest"],
    )


class KeyStore:
    """Virtual keys in SQLite (the file is created if missing; ``":memory:"`` works for tests)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, cache_seconds: float = 1.0) -> None:
        self.path = str(default_keys_path() if path is None else path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            os.chmod(self.path, 0o600)
        self._conn.executescript(_SCHEMA)
        self._cache: dict[str, tuple[float, VirtualKey | None]] = {}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(
        self,
        name: str,
        *,
        models: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: float | None = None,
        period: str | float | None = None,
        expires: str | float | None = None,
    ) -> tuple[str, VirtualKey]:
        """A new key: returns ``(the key, its record)``. The key is not stored; show it once."""
        if not name.strip():
            msg = "a key needs a non-empty --name"
            raise ValueError(msg)
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX):
                msg = f"--{label} must be a whole number from 1 to {_MAX} (got {value!r})"
                raise ValueError(msg)
        if budget_usd is not None and (
            isinstance(budget_usd, bool) or not isinstance(budget_usd, (int, float)) or not 0 <= budget_usd <= _MAX
        ):
            msg = f"--budget must be a number of USD from 0 to {_MAX} (got {budget_usd!r})"
            raise ValueError(msg)
        for label, text in (("period", period), ("expires", expires)):
            if text is not None and (isinstance(text, bool) or not isinstance(text, (str, int, float))):
                msg = f"--{label} must be a duration such as 30d (got {text!r})"
                raise ValueError(msg)
        period_seconds = parse_duration(period) if isinstance(period, str) else period
        if period_seconds is not None and budget_usd is None:
            msg = "--period applies to a budget: give --budget too"
            raise ValueError(msg)
        now = time.time()
        expires_at = parse_expiry(expires, now=now) if isinstance(expires, str) else expires
        if expires_at is not None and expires_at <= now:
            msg = "--expires is in the past"
            raise ValueError(msg)
        secret = _PREFIX + secrets.token_urlsafe(32)
        key = VirtualKey(
            id="key_" + secrets.token_hex(6),
            name=name.strip(),
            prefix=secret[:7],
            models=tuple(models) if models else None,
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            period_seconds=period_seconds,
            created_at=now,
            expires_at=expires_at,
            digest=digest_of(secret),
        )
        with self._lock:
            self._conn.execute(
                "INSERT INTO keys (id, name, digest, prefix, models, rpm, tpm, budget_usd, period_seconds,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.name,
                    key.digest,
                    key.prefix,
                    json.dumps(list(key.models)) if key.models is not None else None,
                    rpm,
                    tpm,
                    budget_usd,
                    period_seconds,
                    now,
                    expires_at,
                ),
            )
        return secret, key

    def list(self) -> list[VirtualKey]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM keys ORDER BY created_at").fetchall()
        return [_row_key(r) for r in rows]

    def get(self, key_id: str) -> VirtualKey | None:
        """The key with this id, or with this name (the newest one), or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM keys WHERE id = ? OR name = ? ORDER BY id = ? DESC, created_at DESC LIMIT 1",
                (key_id, key_id, key_id),
            ).fetchone()
        return _row_key(row) if row is not None else None

    def revoke(self, key_id: str) -> VirtualKey:
        """Revoke a key by id or name; raises ``KeyError`` when there is none."""
        key = self.get(key_id)
        if key is None:
            raise KeyError(key_id)
        with self._lock:
            self._conn.execute(
                "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (time.time(), key.id)
            )
            self._cache.clear()
        revoked = self.get(key.id)
        assert revoked is not None
        return revoked

    def authenticate(self, secret: str) -> VirtualKey | None:
        """The record of ``secret`` (active, revoked or expired alike), or None when it is unknown."""
        digest = digest_of(secret)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        with self._lock:
            row = self._conn.execute("SELECT * FROM keys WHERE digest = ?", (digest,)).fetchone()
        key = _row_key(row) if row is not None else None
        if key is not None:
            register_secret(secret)  # a real key (never a guess) is masked in every log from now on
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, key)
        return key
