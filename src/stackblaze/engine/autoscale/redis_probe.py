"""One Lua script that reads many Redis keys in one round trip, checking each key's type first, so that a
missing key and a key of the wrong type are told apart from a count of 0 in the same read.

Each `Op` names a key, what it does with it and the type it expects; the script answers, per op, the key's
type and the value (false, i.e. None, when the key is missing or of another type). Keys are passed in ARGV,
not KEYS: the script targets one standalone server (a cluster would need every key in one slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from stackblaze.engine.autoscale.work import ReadError

# How many delayed dramatiq messages one poll decodes to find the due ones; past it they count as not due and
# the read warns (it would otherwise block the server for as long as the scan takes).
DUE_SCAN_CAP = 10_000

# Per op: ARGV = name, n, key, n arguments. Values: integers, strings, or false (missing / other type).
#   llen zcard hlen scard: the count; zcount MIN MAX; hget FIELD; sismember MEMBER; exists: 1;
#   head INDEX PREFIX SUFFIX FIELD...: the list's element at INDEX (a zset's lowest), then HMGET of the hash
#     PREFIX..element..SUFFIX (the job's fields);
#   json_head INDEX HASH: the list's element at INDEX, its JSON message in HASH, and that message's
#     options.eta or else message_timestamp (dramatiq's, in ms);
#   due_json NOW_MS CAP: how many JSON messages of the hash have options.eta <= NOW_MS ({count, scanned}; -1
#     when the hash holds more than CAP).
SCRIPT = """
local want = {llen='list', zcard='zset', zcount='zset', hlen='hash', hget='hash', scard='set', sismember='set',
              head='*', json_head='list', due_json='hash', exists='*'}
local out = {}
local i = 1
while i <= #ARGV do
  local op, n, key = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local a = {}
  for j = 1, n do a[j] = ARGV[i + 2 + j] end
  i = i + 3 + n
  local t = redis.call('TYPE', key)['ok']
  local v = false
  if t ~= 'none' and (want[op] == t or want[op] == '*') then
    if op == 'llen' then v = redis.call('LLEN', key)
    elseif op == 'zcard' then v = redis.call('ZCARD', key)
    elseif op == 'zcount' then v = redis.call('ZCOUNT', key, a[1], a[2])
    elseif op == 'hlen' then v = redis.call('HLEN', key)
    elseif op == 'hget' then v = redis.call('HGET', key, a[1])
    elseif op == 'scard' then v = redis.call('SCARD', key)
    elseif op == 'sismember' then v = redis.call('SISMEMBER', key, a[1])
    elseif op == 'exists' then v = 1
    elseif op == 'head' then
      local id = false
      if t == 'list' then id = redis.call('LINDEX', key, a[1])
      elseif t == 'zset' then id = redis.call('ZRANGE', key, 0, 0)[1] or false end
      if id then
        local fields = {}
        for j = 4, n do fields[#fields + 1] = a[j] end
        v = redis.call('HMGET', a[2] .. id .. a[3], unpack(fields))
        for j = 1, #fields do if v[j] == nil then v[j] = false end end
      end
    elseif op == 'json_head' then
      local id = redis.call('LINDEX', key, a[1])
      if id then
        local raw = redis.call('HGET', a[2], id)
        if raw then
          local ok, m = pcall(cjson.decode, raw)
          if ok and type(m) == 'table' then
            local eta = type(m.options) == 'table' and m.options.eta or nil
            v = tostring(eta or m.message_timestamp or '')
          end
        end
      end
    elseif op == 'due_json' then
      local size = redis.call('HLEN', key)
      if size > tonumber(a[2]) then v = {-1, size}
      else
        local due = 0
        for _, raw in ipairs(redis.call('HVALS', key)) do
          local ok, m = pcall(cjson.decode, raw)
          if ok and type(m) == 'table' and type(m.options) == 'table' and tonumber(m.options.eta)
             and tonumber(m.options.eta) <= tonumber(a[1]) then due = due + 1 end
        end
        v = {due, size}
      end
    end
  end
  out[#out + 1] = {t, v}
end
return out
"""


@dataclass(frozen=True)
class Op:
    op: str
    key: str
    args: tuple[str | int | float, ...] = ()


@dataclass(frozen=True)
class Answer:
    """A key's type (`none` when missing) and the op's value (None when missing or of another type)."""

    type: str
    value: object

    @property
    def missing(self) -> bool:
        return self.type == "none"

    def count(self) -> int:
        return self.value if isinstance(self.value, int) else 0

    def text(self) -> str | None:
        return self.value.decode(errors="replace") if isinstance(self.value, bytes) else None


class RedisProbe:
    """A connection to one Redis database that runs a batch of `Op`s in one round trip (EVALSHA; the script
    is loaded on first use and again after a server restart, which costs that poll one more trip)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        # One immediate retry: a connection the server closed (it restarted) reconnects within the same poll;
        # a server that is down fails at once instead of after redis-py's default backoff of seconds.
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1),
            single_connection_client=True)
        self._script = self._client.register_script(SCRIPT)

    async def run(self, ops: Sequence[Op]) -> list[Answer]:
        argv: list[str | int | float] = []
        for op in ops:
            argv += [op.op, len(op.args), op.key, *op.args]
        try:
            raw = await self._script(args=argv)
        except (RedisError, OSError) as error:
            raise ReadError.reading(self.url, error) from None
        return [Answer(t.decode() if isinstance(t, bytes) else str(t), v) for t, v in raw]

    async def close(self) -> None:
        await self._client.aclose()
