"""What RedisState sends and gets back, turned into Python: admission handles, reply fields,
refusals in MemoryState's words, and URLs with their password masked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langchain_multigateway.state.base import Admission

__all__ = ["Local", "Ticket", "as_float", "as_text", "granted_locally", "masked", "refusal", "reply_version"]


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for repr, logs and health)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True)
class Ticket:
    """A Redis admission's handle: its id in the deployment's window and in-flight set."""

    id: str


@dataclass(frozen=True)
class Local:
    """An admission granted by the local fallback while Redis was unreachable."""

    admission: Admission


def as_float(value: Any) -> float | None:
    if value is None or value in (b"", ""):
        return None
    return float(value)


def reply_version(value: Any) -> tuple[float, int]:
    """``"<born> <n>"`` as a comparable pair: keys created later (after a restart) win."""
    born, n = as_text(value).split()
    return float(born), int(n)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def granted_locally(admission: Admission) -> Admission:
    if not admission.ok:
        return admission
    return Admission(ok=True, probe=admission.probe, reservation=Local(admission))


def refusal(code: str, wait: float | None, used: str, tokens: int, rpm: int | None, tpm: int | None) -> Admission:
    """The same refusals, in the same words, as MemoryState's."""
    if code == "open":
        return Admission(ok=False, reason=f"circuit open (probe in {wait or 0.0:.1f}s)", retry_after=wait)
    if code == "gone":  # only for an admission its client had given up on
        return Admission(ok=False, reason="admission abandoned by its caller")
    if code == "probing":
        return Admission(ok=False, reason="circuit half-open, its probe is in flight")
    if code == "wait":
        return Admission(ok=False, reason=f"provider asked to wait {wait or 0.0:.1f}s", retry_after=wait, limited=True)
    if code == "rpm":
        return Admission(ok=False, reason=f"rpm limit {rpm} reached", retry_after=wait, limited=True)
    if code == "toobig":
        return Admission(ok=False, reason=f"request needs ~{tokens} tokens, more than its tpm limit {tpm}")
    return Admission(
        ok=False,
        reason=f"tpm limit {tpm} reached ({used} used, ~{tokens} needed)",
        retry_after=wait,
        limited=True,
    )
