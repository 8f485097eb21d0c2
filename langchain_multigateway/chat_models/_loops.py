"""Async clients bound to the event loop they were made under.

An async HTTP client's connections belong to one event loop: reused under another
(``asyncio.run`` twice, pytest-asyncio's per-test loops) they fail with "Event loop
is closed". ``LoopBound`` keeps one client per running loop, made on first use there,
and closes it while that loop still runs: a parked async generator is registered with
the loop, and ``asyncio.run`` (like any runner that calls ``shutdown_asyncgens``)
closes it on the way out, which closes the client without a warning.

The rest of a client's life is here too: a sync client made for an SDK closes when the SDK
object is collected (``close_when_collected``), and ``OwnsClients`` says which copies of a
model share its clients and which make their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

__all__ = ["CLIENTS_LOCK", "LoopBound", "OwnsClients", "close_when_collected"]

# Guards a model's lazy client creation: threads making a model's first calls at once must
# share one client (a client that lost the race would be collected, closing its pool under
# the requests still using it).
CLIENTS_LOCK = threading.RLock()

C = TypeVar("C")


async def _close_on_loop_shutdown(
    close: Callable[[], Awaitable[object]], forget: Callable[[], object]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        forget()  # the entry's closer refers to its loop: drop it, or the loop is never collected
        with contextlib.suppress(Exception):
            await close()


def _park(closer: AsyncGenerator[None, None]) -> None:
    """Start ``closer`` up to its ``yield``, registering it with the running loop.

    The loop's first-iteration hook runs when ``__anext__`` is called; the generator then
    reaches its ``yield`` without awaiting anything, so one ``send`` finishes the step.
    """
    step = closer.__anext__()
    try:
        step.send(None)
    except StopIteration:
        return
    msg = "the closer generator awaited before parking"  # cannot happen: nothing is awaited
    raise RuntimeError(msg)


class LoopBound(Generic[C]):
    """One client per running event loop, closed when that loop shuts down."""

    def __init__(self, make: Callable[[], C], close: Callable[[C], Awaitable[object]]) -> None:
        self._make = make
        self._close = close
        self._lock = threading.Lock()
        # loop -> (client, parked closer); weak keys: a collected loop drops its entry.
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[C, AsyncGenerator[None, None]]] = (
            weakref.WeakKeyDictionary()
        )
        self._detached: C | None = None

    def get(self) -> C:
        """The client for the running loop (made, and its closing arranged, on first use there).

        Outside any event loop: one detached client, for code that only inspects it.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self._lock:
                if self._detached is None:
                    self._detached = self._make()
                return self._detached
        entry = self._by_loop.get(loop)
        if entry is not None:
            return entry[0]
        client = self._make()
        closer = _close_on_loop_shutdown(lambda: self._close(client), lambda: self._forget(loop))
        _park(closer)
        with self._lock:
            self._by_loop[loop] = (client, closer)
        return client

    def _forget(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._by_loop.pop(loop, None)


def close_when_collected(owner: object, client: Any) -> None:
    """Close the sync HTTP ``client`` once ``owner`` (the SDK object holding it) is collected.

    Why: the SDKs close the clients they make themselves when collected; one made for them is
    theirs to use but ours to close, or its pooled sockets are left to the collector ("unclosed
    socket" ResourceWarning). The owner is the SDK object, not the chat model: copies of a model
    (``model_copy``) share its SDK object, so the client outlives every copy that uses it.
    """
    weakref.finalize(owner, _close_quietly, client)


def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):  # at collection or exit: nobody to tell
        client.close()


_CLIENT_ATTRS = ("_client", "_async_clients")
"""The private attributes where a provider keeps the clients it made."""


class OwnsClients:
    """The clients a chat model makes are its own (mixed into ``GatewayChatModel``).

    A copy shares them (the router's per-deployment copies use one connection pool) unless it
    changes a field they are made from: they bake in the base URL (and, for the SDKs, the key),
    so a copy sent elsewhere on them would go to the old server, or have its credential headers
    stripped as bound for a foreign origin (``_redirects``). A deep copy or an unpickled model
    makes its own: a client, with its pool, locks and sockets, cannot be copied.
    """

    clients_built_from: ClassVar[frozenset[str]] = frozenset()
    """The fields this provider's HTTP clients are made from."""

    def _forget_clients(self) -> None:
        """Drop this model's clients (copies keep theirs); its next call makes new ones."""
        private = getattr(self, "__pydantic_private__", None) or {}
        for name in _CLIENT_ATTRS:
            if name in private:
                private[name] = None

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        memo = {} if memo is None else memo
        private = getattr(self, "__pydantic_private__", None) or {}
        for name in _CLIENT_ATTRS:
            if private.get(name) is not None:
                memo.setdefault(id(private[name]), None)  # copied as "none made yet"
        for name in ("http_client", "http_async_client"):  # a client the caller passed: shared, as given
            given = self.__dict__.get(name)
            if given is not None:
                memo.setdefault(id(given), given)
        return super().__deepcopy__(memo)  # type: ignore[misc]

    def __getstate__(self) -> dict[Any, Any]:
        state: dict[Any, Any] = super().__getstate__()  # type: ignore[assignment]
        private = state.get("__pydantic_private__")
        if private:
            state["__pydantic_private__"] = {k: None if k in _CLIENT_ATTRS else v for k, v in private.items()}
        return state
