"""Key administration over HTTP, for the master key only, and per-key usage from the ledger.

* ``POST /admin/keys`` ``{"name", "models", "rpm", "tpm", "budget_usd", "period", "expires"}``
  -> the new key (shown once) and its record
* ``GET /admin/keys`` -> every key's record (never a key or its hash)
* ``POST /admin/keys/{id}/revoke`` -> the revoked record
* ``GET /admin/keys/{id}/usage`` -> requests, tokens and cost per model, from the ledger
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from langchain_multigateway.server.errors import ApiError, openai_error_body
from langchain_multigateway.server.keys import KeyStore, VirtualKey

if TYPE_CHECKING:
    from langchain_multigateway.server.app import _Server
    from langchain_multigateway.usage import Ledger

__all__ = ["admin_routes", "key_usage", "spent_since"]


def key_usage(ledger: Ledger, key: VirtualKey, since: float | None = None) -> dict[str, Any]:
    """A key's requests, errors, tokens and cost per model (and in total) from the ledger."""
    rows = ledger.totals(by="model", tag=key.tag, since=since)
    total: dict[str, Any] = {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    for row in rows:
        for name in total:
            total[name] += row.get(name) or 0
    return {"key": key.to_public(), "since": since, "by_model": rows, "total": total}


def spent_since(ledger: Ledger) -> Any:
    """``(key, since) -> USD`` from the ledger, for :class:`~langchain_multigateway.server.limits.KeyLimits`."""

    def spent(key: VirtualKey, since: float) -> float:
        rows = ledger.totals(by="model", tag=key.tag, since=since)
        return float(sum(row.get("cost_usd") or 0.0 for row in rows))

    return spent


def admin_routes(server: _Server) -> list[BaseRoute]:
    def _json(body: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    def _store(request: Request) -> KeyStore:
        from langchain_multigateway.server.app import _MASTER

        key = server.authenticate(request)
        if key is not _MASTER:
            msg = "key administration needs the master key ($MULTIGATEWAY_MASTER_KEY)"
            raise ApiError(403 if key is not None else 401, "permission" if key is not None else "authentication", msg)
        if server.keys is None:
            raise ApiError(404, "not_found", "this gateway runs without a key store")
        return server.keys

    def guarded(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            try:
                response: Response = await handler(request, _store(request))
                return response
            except ApiError as failure:
                return _json(openai_error_body(failure), failure.status)

        return run

    def _find(store: KeyStore, key_id: str) -> VirtualKey:
        key = store.get(key_id)
        if key is None:
            raise ApiError(404, "not_found", f"no key with id or name {key_id!r}")
        return key

    async def create(request: Request, store: KeyStore) -> Response:
        body = await server.body(request)
        models = body.get("models") if isinstance(body, dict) else None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("name"), str)
            or not (models is None or (isinstance(models, list) and all(isinstance(m, str) for m in models)))
        ):
            raise ApiError(
                400, "invalid_request", "expected {name, models?, rpm?, tpm?, budget_usd?, period?, expires?}"
            )
        try:
            secret, key = store.create(
                body["name"],
                models=body.get("models"),
                rpm=body.get("rpm"),
                tpm=body.get("tpm"),
                budget_usd=body.get("budget_usd"),
                period=body.get("period"),
                expires=body.get("expires"),
            )
        except (ValueError, TypeError) as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        return _json({"key": secret, **key.to_public()}, 201)

    async def listing(request: Request, store: KeyStore) -> Response:
        return _json({"data": [k.to_public() for k in store.list()]})

    async def revoke(request: Request, store: KeyStore) -> Response:
        key = _find(store, request.path_params["key_id"])
        return _json(store.revoke(key.id).to_public())

    async def usage(request: Request, store: KeyStore) -> Response:
        key = _find(store, request.path_params["key_id"])
        ledger = server.gateway.ledger
        if ledger is None:
            raise ApiError(404, "not_found", "this gateway runs without a ledger")
        since = key.period_start(time.time()) if key.period_seconds else None
        return _json(key_usage(ledger, key, since))

    return [
        Route("/admin/keys", guarded(create), methods=["POST"]),
        Route("/admin/keys", guarded(listing), methods=["GET"]),
        Route("/admin/keys/{key_id}/revoke", guarded(revoke), methods=["POST"]),
        Route("/admin/keys/{key_id}/usage", guarded(usage), methods=["GET"]),
    ]
