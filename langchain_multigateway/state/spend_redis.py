"""Budget spend in Redis: one atomic script judges a call and holds its estimate, across hosts.

Keys per budget, one hash tag so a Redis Cluster keeps them together:
``{namespace:budget:name}:spend`` (hash ``t:<bucket>`` tokens, ``c:<bucket>`` nano-USD, with a
TTL of the period plus a day) and ``{namespace:budget:name}:res`` (hash reservation key ->
``"<tokens> <nano-usd> <expires>"``; expired ones are dropped as they are read).
Periods are cut by the Redis server's clock (``TIME``), so hosts whose clocks disagree still
judge a daily budget on the same day.
"""

from __future__ import annotations

from typing import Any

from langchain_multigateway._redact import register_url
from langchain_multigateway.state._redis_replies import masked
from langchain_multigateway.state._redis_scripts import hash_tag
from langchain_multigateway.state.spend import (
    RESERVATION_LEASE,
    Hold,
    SpendStore,
    SpendStoreError,
    SpendTotals,
    check_period,
    nano,
    period_seconds,
)

__all__ = ["RedisSpendStore"]

# Every script starts here. ARGV[1..3]: period kind ('all' | 'mo' | 'd'), days, at|'' (the server's
# clock): the buckets are named from the Redis server's time, so hosts with skewed clocks agree on
# "today" and never judge the same budget on different days.
_PERIOD = """
local function clock(arg)
  local given = tonumber(arg)
  if given then return given end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- days since 1970-01-01 -> year, month, day (proleptic Gregorian, UTC)
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end
local now = clock(ARGV[3])
local summed = {'all'}
local today = math.floor(now / 86400)
if ARGV[1] == 'mo' then
  local y, m = civil(today)
  summed = {string.format('m%04d-%02d', y, m)}
elseif ARGV[1] == 'd' then
  summed = {}
  for back = 0, tonumber(ARGV[2]) - 1 do
    local y, m, d = civil(today - back)
    summed[#summed + 1] = string.format('d%04d-%02d-%02d', y, m, d)
  end
end
"""

_READ = (
    _PERIOD
    + """
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
for i = 1, #summed do
  st = st + (tonumber(redis.call('HGET', KEYS[1], 't:' .. summed[i])) or 0)
  sc = sc + (tonumber(redis.call('HGET', KEYS[1], 'c:' .. summed[i])) or 0)
end
"""
)

# ARGV: period (3), key, tokens, nano|'' (unknown), max_tokens|'', max_nano|'', lease
RESERVE = (
    _READ
    + """
local tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_tokens, max_cost = tonumber(ARGV[7]), tonumber(ARGV[8])
local over = ''
if max_tokens and st + rt + tokens > max_tokens then
  over = 'tokens'
elseif max_cost then
  if (cost == nil and sc + rc >= max_cost) or (cost ~= nil and sc + rc + cost > max_cost) then over = 'cost' end
end
if over == '' then
  local lease = tonumber(ARGV[9])
  redis.call('HSET', KEYS[2], ARGV[4], string.format('%d %d %.6f', tokens, cost or 0, now + lease))
  redis.call('PEXPIRE', KEYS[2], math.floor(lease * 1000))
end
return {over, st, sc, rt, rc}
"""
)

# ARGV: period (3)
TOTALS = _READ + "\nreturn {'', st, sc, rt, rc}\n"

# KEYS: spend, res; ARGV: period (3), key, tokens, nano, ttl_ms
SETTLE = (
    _PERIOD
    + """
redis.call('HDEL', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[1], 't:' .. summed[1], ARGV[5])
redis.call('HINCRBY', KEYS[1], 'c:' .. summed[1], ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
"""
)

# ARGV: period (3); KEYS: spend. Spend in the current period back to zero; returns its buckets.
RESET = (
    _PERIOD
    + """
for i = 1, #summed do redis.call('HDEL', KEYS[1], 't:' .. summed[i], 'c:' .. summed[i]) end
return summed
"""
)


def period_args(period: str | None, at: float | None = None) -> list[Any]:
    """A period as the scripts take it: kind, days, and the time (``""``: the Redis server's)."""
    at_arg = "" if at is None else repr(float(at))
    if period is None:
        return ["all", 0, at_arg]
    if period == "1mo":
        return ["mo", 0, at_arg]
    check_period(period)
    return ["d", int(period[:-1]), at_arg]


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

        register_url(url)  # its password is masked wherever text leaves the gateway
        self.namespace = namespace
        self._errors = (redis.RedisError, OSError)
        self._where = masked(url) if client is None else repr(client)
        if client is None:
            retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
            client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry)
        self._client = client
        self._reserve_script = client.register_script(RESERVE)
        self._totals = client.register_script(TOTALS)
        self._settle = client.register_script(SETTLE)
        self._reset = client.register_script(RESET)
        self._buckets = client.register_script(_PERIOD + "\nreturn summed\n")

    def _call(self, script: Any, budget: str, args: list[Any]) -> Any:
        try:
            return script(keys=self.keys(budget), args=args)
        except self._errors as exc:
            msg = f"budget {budget!r}: its Redis store at {self._where} failed ({type(exc).__name__}: {exc})"
            raise SpendStoreError(msg) from exc

    def keys(self, budget: str) -> list[str]:
        tag = hash_tag(self.namespace, "budget", budget)
        return [f"{tag}:spend", f"{tag}:res"]

    def _reserve(self, budget: str, period: str | None, hold: Hold) -> tuple[str | None, SpendTotals]:
        args = [
            *period_args(period),
            hold.key,
            hold.tokens,
            "" if hold.cost is None else nano(hold.cost),
            "" if hold.max_tokens is None else int(hold.max_tokens),
            "" if hold.max_cost is None else nano(hold.max_cost),
            RESERVATION_LEASE,
        ]
        over, *numbers = self._call(self._reserve_script, budget, args)
        return (over.decode() if isinstance(over, bytes) else over) or None, _totals(numbers)

    def settle(self, budget: str, period: str | None, key: str, tokens: int, cost: float) -> None:
        ttl_ms = int(period_seconds(period) * 1000)
        self._call(self._settle, budget, [*period_args(period), key, int(tokens), nano(cost), ttl_ms])

    def totals(self, budget: str, period: str | None) -> SpendTotals:
        _, *numbers = self._call(self._totals, budget, period_args(period))
        return _totals(numbers)

    def reset(self, budget: str, period: str | None) -> None:
        self._call(self._reset, budget, period_args(period))

    def buckets(self, period: str | None, at: float | None = None) -> list[str]:
        """The buckets Redis sums for ``period`` now (by its clock), or at ``at`` (epoch seconds)."""
        summed = self._call(self._buckets, "", period_args(period, at))
        return [bucket.decode() if isinstance(bucket, bytes) else str(bucket) for bucket in summed]

    def close(self) -> None:
        self._client.close()


def _totals(numbers: list[Any]) -> SpendTotals:
    spent_tokens, spent_nano, reserved_tokens, reserved_nano = (int(n) for n in numbers)
    return SpendTotals(spent_tokens, spent_nano / 1e9, reserved_tokens, reserved_nano / 1e9)
