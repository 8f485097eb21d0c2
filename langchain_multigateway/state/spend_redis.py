"""Budget spend in Redis: one atomic script judges a call and holds its estimate, across hosts.

Keys per budget, one hash tag so a Redis Cluster keeps them together:
``{namespace:budget:name}:spend`` (hash ``t:<bucket>`` tokens, ``c:<bucket>`` nano-USD, with a
TTL of the period plus a day) and ``{namespace:budget:name}:res`` (hash reservation key ->
``"<tokens> <nano-usd> <expires>"``; expired ones are dropped as they are read).
"""

from __future__ import annotations

from typing import Any

from langchain_multigateway.state._redis_replies import masked
from langchain_multigateway.state._redis_scripts import hash_tag
from langchain_multigateway.state.spend import (
    RESERVATION_LEASE,
    SpendStore,
    SpendStoreError,
    SpendTotals,
    buckets,
    nano,
    period_seconds,
)

__all__ = ["RedisSpendStore"]

_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rt, rc = 0, 0
local res = redis.call('HGETALL', KEYS[2])
for i = 1, #res, 2 do
  local tok, usd, exp = string.match(res[i + 1], '^(%-?%d+) (%-?%d+) (%S+)$')
  if tonumber(exp) <= now then
    redis.call('HDEL', KEYS[2], res[i])
  else
    rt, rc = rt + tonumber(tok), rc + tonumber(usd)
  end
end
local st, sc = 0, 0
local first = tonumber(ARGV[1])
for i = first, #ARGV do
  st = st + (tonumber(redis.call('HGET', KEYS[1], 't:' .. ARGV[i])) or 0)
  sc = sc + (tonumber(redis.call('HGET', KEYS[1], 'c:' .. ARGV[i])) or 0)
end
"""

# ARGV: first bucket index (8), key, tokens, nano|'' (unknown), max_tokens|'', max_nano|'', lease, buckets...
RESERVE = (
    _READ
    + """
local tokens, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_tokens, max_cost = tonumber(ARGV[5]), tonumber(ARGV[6])
local over = ''
if max_tokens and st + rt + tokens > max_tokens then
  over = 'tokens'
elseif max_cost then
  if (cost == nil and sc + rc >= max_cost) or (cost ~= nil and sc + rc + cost > max_cost) then over = 'cost' end
end
if over == '' then
  local lease = tonumber(ARGV[7])
  redis.call('HSET', KEYS[2], ARGV[2], string.format('%d %d %.6f', tokens, cost or 0, now + lease))
  redis.call('PEXPIRE', KEYS[2], math.floor(lease * 1000))
end
return {over, st, sc, rt, rc}
"""
)

# ARGV: first bucket index (2), buckets...
TOTALS = _READ + "\nreturn {'', st, sc, rt, rc}\n"

# KEYS: spend, res; ARGV: key, bucket, tokens, nano, ttl_ms
SETTLE = """
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 't:' .. ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisSpendStore(SpendStore):
    """Budget spend shared through Redis (see :class:`~langchain_multigateway.state.spend.SpendStore`).

    Args:
        url: ``redis://[user:password@]host:port/db``.
        namespace: Separates gateways sharing one Redis.
        timeout: Longest wait per Redis operation, seconds. Unlike routing state, a budget
            has no safe local fallback (each process would grant the whole budget again),
            so an unreachable Redis raises :class:`SpendStoreError` and the call is refused.
        client: An existing ``redis.Redis`` (or ``RedisCluster``) instead of ``url``.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        namespace: str = "multigateway",
        timeout: float = 0.5,
        client: Any = None,
    ) -> None:
        import redis
        import redis.backoff
        import redis.retry

        self.namespace = namespace
        self._errors = (redis.RedisError, OSError)
        self._where = masked(url) if client is None else repr(client)
        if client is None:
            retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
            client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry)
        self._client = client
        self._reserve = client.register_script(RESERVE)
        self._totals = client.register_script(TOTALS)
        self._settle = client.register_script(SETTLE)

    def _call(self, script: Any, budget: str, args: list[Any]) -> Any:
        try:
            return script(keys=self.keys(budget), args=args)
        except self._errors as exc:
            msg = f"budget {budget!r}: its Redis store at {self._where} failed ({type(exc).__name__}: {exc})"
            raise SpendStoreError(msg) from exc

    def keys(self, budget: str) -> list[str]:
        tag = hash_tag(self.namespace, "budget", budget)
        return [f"{tag}:spend", f"{tag}:res"]

    def reserve(
        self,
        budget: str,
        period: str | None,
        key: str,
        tokens: int,
        cost: float | None,
        max_tokens: int | None,
        max_cost: float | None,
    ) -> tuple[str | None, SpendTotals]:
        summed = buckets(period)[1]
        args = [
            8,
            key,
            int(tokens),
            "" if cost is None else nano(cost),
            "" if max_tokens is None else int(max_tokens),
            "" if max_cost is None else nano(max_cost),
            RESERVATION_LEASE,
            *summed,
        ]
        over, *numbers = self._call(self._reserve, budget, args)
        return (over.decode() if isinstance(over, bytes) else over) or None, _totals(numbers)

    def settle(self, budget: str, period: str | None, key: str, tokens: int, cost: float) -> None:
        ttl_ms = int(period_seconds(period) * 1000)
        self._call(self._settle, budget, [key, buckets(period)[0], int(tokens), nano(cost), ttl_ms])

    def totals(self, budget: str, period: str | None) -> SpendTotals:
        _, *numbers = self._call(self._totals, budget, [2, *buckets(period)[1]])
        return _totals(numbers)

    def reset(self, budget: str, period: str | None) -> None:
        fields = [f"{kind}:{bucket}" for bucket in buckets(period)[1] for kind in ("t", "c")]
        self._client.hdel(self.keys(budget)[0], *fields)

    def close(self) -> None:
        self._client.close()


def _totals(numbers: list[Any]) -> SpendTotals:
    spent_tokens, spent_nano, reserved_tokens, reserved_nano = (int(n) for n in numbers)
    return SpendTotals(spent_tokens, spent_nano / 1e9, reserved_tokens, reserved_nano / 1e9)
