"""RedisState's key layout and its Lua scripts: one atomic round trip per admission and per release.

Every key of one deployment carries the same hash tag ``{namespace:router:deployment}``, so
a Redis Cluster keeps them in one slot and a script may touch them all. Per deployment:

``<tag>:s``  hash: breaker, streak, open period, probe lease, Retry-After, EWMAs, counters
``<tag>:w``  sorted set: the rate window (member: admission id, score: when it ended, or while in
            flight its lease end: a request counts from its admission until a minute after it
            ended, since the provider counts it on arrival, which may be long after admission)
``<tag>:t``  hash: admission id -> reserved (then real) tokens, for the tpm window
``<tag>:f``  sorted set: in-flight admissions (score: lease end, so a dead worker's expire)
``<tag>:x``  sorted set: admissions a client gave up on before Redis ran them (score: forget at)
``<tag>:p``  sorted set: processes admitting to it (score: last seen), so that while Redis is out
            of reach each process knows its share of a limit

Admission ids are made by the client (``<process>.<n>``), so a client that timed out or was
cancelled after sending an admission (Redis may still run it) or a release (its reply lost)
can still name it: :data:`FORGET` gives back its in-flight count and its probe lease, and
leaves a tombstone (``:x``) so an admission Redis runs later holds neither. Window entries
stay: a caller that gave up on Redis went on with local state and sent the request anyway.
Ids stay unique when Redis loses its keys (a restart, ``FLUSHALL``).

Scripts return floats as strings (Redis turns Lua numbers into integers). Admissions and
releases bump a version (``born``, when the keys were created, and ``ver``, a counter) so a
client keeps only the newest figures it was sent, and starts over when Redis did. Each refreshes
the TTL of every key it writes, so an idle deployment's keys disappear by themselves.
"""

from __future__ import annotations

__all__ = ["ADMIT", "COOLDOWN", "FORGET", "RELEASE", "STATS", "deployment_keys", "hash_tag"]

_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def hash_tag(namespace: str, router: str, deployment: str) -> str:
    """``{namespace:router:deployment}``, each part escaped so that no name can end the tag
    early or collide with another (``a:b`` in router ``r`` is not ``b`` in router ``r:a``)."""
    return "{" + ":".join(part.translate(_ESCAPES) for part in (namespace, router, deployment)) + "}"


def deployment_keys(namespace: str, router: str, deployment: str) -> list[str]:
    """The six keys of one deployment, in the order the scripts expect them."""
    tag = hash_tag(namespace, router, deployment)
    return [f"{tag}:s", f"{tag}:w", f"{tag}:t", f"{tag}:f", f"{tag}:x", f"{tag}:p"]


# Shared helpers, prepended to each script. KEYS: state, window, tokens, in-flight, forgotten, processes.
_COMMON = """
local WINDOW = 60
local function clock(arg)
  local given = tonumber(arg)
  if given then return given end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(v, default)
  local n = tonumber(v)
  if n == nil then return default end
  return n
end
local function touch(ttl_ms)
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl_ms) end
end
-- drop requests older than the window, and their tokens from the running sum
local function prune(now)
  local horizon = now - WINDOW
  while true do
    local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', horizon, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local toks = redis.call('HMGET', KEYS[3], unpack(old))
    local sum = 0
    for i = 1, #toks do sum = sum + num(toks[i], 0) end
    if sum ~= 0 then redis.call('HINCRBY', KEYS[1], 'wtok', -sum) end
    redis.call('HDEL', KEYS[3], unpack(old))
    redis.call('ZREM', KEYS[2], unpack(old))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
end
-- "<born> <n>": when these keys were created (a restart or expiry starts over) and a write counter
local function bump(now)
  redis.call('HSETNX', KEYS[1], 'born', tostring(now))
  local n = redis.call('HINCRBY', KEYS[1], 'ver', 1)
  return redis.call('HGET', KEYS[1], 'born') .. ' ' .. n
end
-- breaker codes: 0 closed, 1 open, 2 half-open; an open breaker past its period is half-open
local function breaker_now(now, write)
  local s = redis.call('HMGET', KEYS[1], 'br', 'opened', 'openfor')
  local br = num(s[1], 0)
  local opened, openfor = num(s[2], 0), num(s[3], 0)
  if br == 1 and now - opened >= openfor then
    br = 2
    if write then redis.call('HSET', KEYS[1], 'br', 2, 'probe', 0) end
  end
  return br, opened + openfor - now
end
"""

ADMIT = (
    _COMMON
    + """
-- ARGV: now|'', tokens, rpm|'', tpm|'', probe_timeout, inflight_lease, ttl_ms, id, process
-- Every reply: ok, code, wait, breaker, id, probe, in-flight, latency, ttft, tokens used, version, processes
local now = clock(ARGV[1])
local id = ARGV[8]
-- the processes admitting here in the last minute: each one's share of a limit while Redis is out of reach
redis.call('ZADD', KEYS[6], now, ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - WINDOW)
redis.call('PEXPIRE', KEYS[6], ARGV[7])
local peers = redis.call('ZCARD', KEYS[6])
if redis.call('ZSCORE', KEYS[5], id) then  -- its client gave up on it before it ran (and sent it locally)
  redis.call('ZREM', KEYS[5], id)
  prune(now)
  redis.call('ZADD', KEYS[2], now, id)  -- still counted in the rpm window, never in flight
  touch(ARGV[7])
  return {0, 'gone', '', 0, 0, 0, 0, '', '', '', '', peers}
end
local tokens = num(ARGV[2], 0)
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local br, open_left = breaker_now(now, true)
local s = redis.call('HMGET', KEYS[1], 'probe', 'ra', 'lat', 'ttft')
local lat, ttft = s[3] or '', s[4] or ''
if br == 1 then return {0, 'open', tostring(open_left), br, 0, 0, 0, lat, ttft, '', '', peers} end
if br == 2 and num(s[1], 0) > now then return {0, 'probing', '', br, 0, 0, 0, lat, ttft, '', '', peers} end
local ra = num(s[2], 0)
if ra > now then return {0, 'wait', tostring(ra - now), br, 0, 0, 0, lat, ttft, '', '', peers} end
prune(now)
local wtok = num(redis.call('HGET', KEYS[1], 'wtok'), 0)
if rpm ~= nil then
  local n = redis.call('ZCARD', KEYS[2])
  if n >= rpm then
    local wait = WINDOW
    if rpm > 0 then  -- the one that must leave first; one in flight leaves a minute after it ends, at best
      local oldest = redis.call('ZRANGE', KEYS[2], n - rpm, n - rpm, 'WITHSCORES')
      wait = math.max(math.min(tonumber(oldest[2]), now) + WINDOW - now, 0)
    end
    return {0, 'rpm', tostring(wait), br, 0, 0, 0, lat, ttft, '', '', peers}
  end
end
if tpm ~= nil and wtok + tokens > tpm then
  if tokens > tpm then return {0, 'toobig', '', br, 0, 0, 0, lat, ttft, tostring(wtok), '', peers} end
  local excess = wtok + tokens - tpm
  local wait = WINDOW
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    excess = excess - num(redis.call('HGET', KEYS[3], entries[i]), 0)
    if excess <= 0 then
      wait = math.min(tonumber(entries[i + 1]), now) + WINDOW - now
      break
    end
  end
  return {0, 'tpm', tostring(math.max(wait, 0)), br, 0, 0, 0, lat, ttft, tostring(wtok), '', peers}
end
redis.call('ZADD', KEYS[2], now + num(ARGV[6], 600), id)  -- in flight: kept until it ends (or its lease does)
if tokens ~= 0 then
  redis.call('HSET', KEYS[3], id, tokens)
  redis.call('HINCRBY', KEYS[1], 'wtok', tokens)
end
redis.call('ZADD', KEYS[4], now + num(ARGV[6], 600), id)
local probe = 0
if br == 2 then
  probe = 1
  redis.call('HSET', KEYS[1], 'probe', now + num(ARGV[5], 120), 'probe_by', id)
end
touch(ARGV[7])
local ver = bump(now)
return {1, '', '', br, id, probe, redis.call('ZCARD', KEYS[4]), lat, ttft, '', ver, peers}
"""
)

RELEASE = (
    _COMMON
    + """
-- ARGV: now|'', id, ok, latency|'', ttft|'', tokens|'', counts, probe, alpha,
--       threshold, first_cooldown, cap, growth, ttl_ms
local now = clock(ARGV[1])
local id, ok, counts, probe = ARGV[2], ARGV[3] == '1', ARGV[7] == '1', ARGV[8] == '1'
local alpha = tonumber(ARGV[9])
redis.call('ZREM', KEYS[4], id)
local tokens = tonumber(ARGV[6])
local at = tonumber(redis.call('ZSCORE', KEYS[2], id))
if at ~= nil and at > now then redis.call('ZADD', KEYS[2], now, id) end  -- ended: a minute from now
if tokens ~= nil and at ~= nil then
  local old = num(redis.call('HGET', KEYS[3], id), 0)
  redis.call('HSET', KEYS[3], id, tokens)
  redis.call('HINCRBY', KEYS[1], 'wtok', tokens - old)
end
local s = redis.call('HMGET', KEYS[1], 'lat', 'ttft', 'err', 'br', 'streak', 'openfor')
local function ewma(prev, sample)
  local p = tonumber(prev)
  if p == nil then return sample end
  return p + alpha * (sample - p)
end
local lat, ttft = s[1] or '', s[2] or ''
if tonumber(ARGV[4]) then lat = tostring(ewma(s[1], tonumber(ARGV[4]))) end
if tonumber(ARGV[5]) then ttft = tostring(ewma(s[2], tonumber(ARGV[5]))) end
local err = num(s[3], 0)
local br, streak, openfor = num(s[4], 0), num(s[5], 0), num(s[6], 0)
if ok then
  err = err - alpha * err
  streak = 0
  redis.call('HINCRBY', KEYS[1], 'ok', 1)
  if probe and br ~= 0 then  -- recovered: the next outage starts short again
    br = 0
    redis.call('HSET', KEYS[1], 'br', 0, 'probe', 0, 'openfor', 0)
  end
else
  err = err + alpha * (1 - err)
  redis.call('HINCRBY', KEYS[1], 'fail', 1)
  if probe then redis.call('HSET', KEYS[1], 'probe', 0) end
  if counts then
    streak = streak + 1
    local open_for = nil
    if probe and br == 2 then
      local first = tonumber(ARGV[11])
      open_for = math.min(tonumber(ARGV[12]), math.max(openfor, first) * tonumber(ARGV[13]))
    elseif br == 0 and streak >= tonumber(ARGV[10]) then
      open_for = tonumber(ARGV[11])
    end
    if open_for ~= nil then
      br = 1
      redis.call('HSET', KEYS[1], 'br', 1, 'opened', tostring(now), 'openfor', tostring(open_for))
    end
  end
end
redis.call('HSET', KEYS[1], 'lat', lat, 'ttft', ttft, 'err', tostring(err), 'streak', streak)
touch(ARGV[14])
local ver = bump(now)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - WINDOW)
return {br, lat, ttft, redis.call('ZCARD', KEYS[4]), ver, redis.call('ZCARD', KEYS[6])}
"""
)

COOLDOWN = (
    _COMMON
    + """
-- ARGV: now|'', seconds, ttl_ms
local now = clock(ARGV[1])
local until_ = now + tonumber(ARGV[2])
if until_ > num(redis.call('HGET', KEYS[1], 'ra'), 0) then
  redis.call('HSET', KEYS[1], 'ra', tostring(until_))
end
touch(ARGV[3])
return 1
"""
)

FORGET = (
    _COMMON
    + """
-- ARGV: now|'', id, sent (1: the request went out, its release was lost), lease, ttl_ms
local now = clock(ARGV[1])
local id = ARGV[2]
local was_in_flight = redis.call('ZREM', KEYS[4], id) == 1
local at = tonumber(redis.call('ZSCORE', KEYS[2], id))
if at ~= nil and at > now then redis.call('ZADD', KEYS[2], now, id) end  -- ended (or never sent): from now
if redis.call('HGET', KEYS[1], 'probe_by') == id then redis.call('HSET', KEYS[1], 'probe', 0, 'probe_by', '') end
-- its window entry stays: a caller that gave up on Redis went on with local state and sent it anyway
if ARGV[3] ~= '1' and not was_in_flight and at == nil then
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[4]), id)  -- not run yet: refuse it if it ever does
end
touch(ARGV[5])
return 1
"""
)

STATS = (
    _COMMON
    + """
-- ARGV: now|''
local now = clock(ARGV[1])
local br, open_left = breaker_now(now, false)
prune(now)
local s = redis.call('HMGET', KEYS[1], 'streak', 'lat', 'ttft', 'err', 'wtok', 'ra', 'ok', 'fail', 'born', 'ver')
local retry = ''
if br == 1 then
  retry = tostring(open_left)
elseif num(s[6], 0) > now then
  retry = tostring(num(s[6], 0) - now)
end
return {br, num(s[1], 0), s[2] or '', s[3] or '', s[4] or '0', redis.call('ZCARD', KEYS[4]),
        redis.call('ZCARD', KEYS[2]), num(s[5], 0), retry, num(s[7], 0), num(s[8], 0),
        (s[9] or '0') .. ' ' .. (s[10] or '0')}
"""
)
