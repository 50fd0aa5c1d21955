"""RedisStore: router state shared by every process that points at one Redis.

Several router processes (workers of one service, replicas on several machines) that share a
:class:`RedisStore` see one rpm/tpm window, one in-flight count, one cooldown and half-open
circuit, one latency average and one spend figure per deployment. Each store method is one
Lua script run with ``EVALSHA`` (one round trip), so admission is atomic across processes: with
``rpm: 20`` no window ever admits a 21st request, whatever the number of routers.

Clocks: callers pass ``now`` from their own ``time.monotonic()``, which means nothing to another
process. Windows, cooldown deadlines and trial leases are kept on the Redis server's clock
(``TIME`` inside the scripts); deadlines handed in are turned into durations, and times handed
back are moved into the caller's frame (``caller_now + (server_t - server_now)``).

Failure: when Redis does not answer, the store logs one warning (logger
``gatewaykit.routing``), counts the event in :attr:`RedisStore.fallbacks`, and serves from a
process-local :class:`~gatewaykit.routing.store.InMemoryStore` seeded with the last shared view;
it tries Redis again every ``retry_interval_s`` and resumes on the first answer. No store method
raises because Redis failed.

redis-py is an optional extra (``pip install 'gatewaykit[redis]'``); this module imports it only
when a RedisStore is built, so :func:`store_from_config` works without it for configs that do not
ask for Redis.

Example::

    from gatewaykit import RouterChatModel
    from gatewaykit.routing.redis_store import RedisStore

    store = RedisStore(url="redis://:secret@redis.internal:6379/0")
    router = RouterChatModel.from_config("config.yaml", model="claude-sonnet", store=store)
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gatewaykit._redact import redact
from gatewaykit.routing import store as _store
from gatewaykit.routing.store import Admission, DeploymentState, InMemoryStore, Outcome, StateStore

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

    from gatewaykit.config import GatewayConfig, RouterSettings

__all__ = ["DEFAULT_PREFIX", "RedisStore", "store_from_config"]

logger = logging.getLogger("gatewaykit.routing")

DEFAULT_PREFIX = "gatewaykit:"
"""Namespace of every key a RedisStore writes (``<prefix>dep:<deployment id>``)."""

# --------------------------------------------------------------------------------------------
# Lua. Every script starts with the same prelude: ARGV[1..5] are the window length, how long an
# in-flight entry of a silent process counts, the trial lease, the minimum key TTL (seconds) and
# this store's instance id; NOW is the server clock. A deployment is one hash:
#
#   ws rpm tpm ok fail cf     window start, counters of that window, consecutive failures
#   lat ttft lat_at           latency moving averages (absent until measured) and their time
#   cd cdr ho tr tr_at        cooldown deadline and reason, half-open flag, trial flag and start
#   sp                        spend
#   if:<instance>             "<count>|<time>": calls in flight from one router process
#
# In-flight calls are counted per process: each process writes its own absolute count, so a
# lost reply or a Redis outage never leaves a drift, and the count of a process that died
# stops counting after ARGV[2] seconds without an update.

_PRELUDE = r"""
local W = tonumber(ARGV[1])
local STALE = tonumber(ARGV[2])
local TRIAL_TTL = tonumber(ARGV[3])
local KEY_TTL = tonumber(ARGV[4])
local OWN = 'if:' .. ARGV[5]
local T = redis.call('TIME')
local NOW = tonumber(T[1]) + tonumber(T[2]) / 1000000

local function f17(x) return string.format('%.17g', x) end

local function load(key, new_ws)
  local raw = redis.call('HGETALL', key)
  local h = {}
  local st = {key = key, others = 0, stale = {}, dirty = false, own = 0}
  for i = 1, #raw, 2 do
    local f = raw[i]
    if string.sub(f, 1, 3) == 'if:' then
      if f ~= OWN then
        local c, at = string.match(raw[i + 1], '^(%d+)|(.+)$')
        c = tonumber(c) or 0
        at = tonumber(at) or 0
        if NOW - at < STALE then
          st.others = st.others + c
        else
          st.stale[#st.stale + 1] = f
        end
      end
    else
      h[f] = raw[i + 1]
    end
  end
  st.new = (#raw == 0)
  if st.new then
    st.dirty = true
    st.ws = new_ws
  else
    st.ws = tonumber(h.ws) or 0
  end
  st.rpm = tonumber(h.rpm) or 0
  st.tpm = tonumber(h.tpm) or 0
  st.ok = tonumber(h.ok) or 0
  st.fail = tonumber(h.fail) or 0
  st.cf = tonumber(h.cf) or 0
  st.lat = tonumber(h.lat)
  st.ttft = tonumber(h.ttft)
  st.lat_at = tonumber(h.lat_at) or 0
  st.cd = tonumber(h.cd) or 0
  st.cdr = h.cdr or ''
  st.ho = tonumber(h.ho) or 0
  st.tr = tonumber(h.tr) or 0
  st.tr_at = tonumber(h.tr_at) or 0
  st.sp = tonumber(h.sp) or 0
  st.tp = tonumber(h.tp) or 0
  if st.tr == 1 and NOW - st.tr_at >= TRIAL_TTL then
    st.tr = 0
  end
  return st
end

local function roll(st)
  if NOW - st.ws >= W then
    if st.ws ~= 0 then
      st.ws = NOW - ((NOW - st.ws) % W)
    else
      st.ws = NOW
    end
    st.rpm = 0
    st.tpm = 0
    st.ok = 0
    st.fail = 0
    st.dirty = true
  end
end

local function set_own(st, n)
  st.own = n
  if n > 0 then
    redis.call('HSET', st.key, OWN, tostring(n) .. '|' .. f17(NOW))
  else
    redis.call('HDEL', st.key, OWN)
  end
end

local function save(st)
  local a = {'ws', f17(st.ws), 'rpm', tostring(st.rpm), 'tpm', tostring(st.tpm),
    'ok', tostring(st.ok), 'fail', tostring(st.fail), 'cf', tostring(st.cf),
    'lat_at', f17(st.lat_at), 'cd', f17(st.cd), 'cdr', st.cdr, 'ho', tostring(st.ho),
    'tr', tostring(st.tr), 'tr_at', f17(st.tr_at), 'sp', f17(st.sp), 'tp', tostring(st.tp)}
  if st.lat then
    a[#a + 1] = 'lat'
    a[#a + 1] = f17(st.lat)
  end
  if st.ttft then
    a[#a + 1] = 'ttft'
    a[#a + 1] = f17(st.ttft)
  end
  redis.call('HSET', st.key, unpack(a))
  if #st.stale > 0 then
    redis.call('HDEL', st.key, unpack(st.stale))
  end
  local ttl = KEY_TTL
  if 2 * W > ttl then ttl = 2 * W end
  if st.cd - NOW + W > ttl then ttl = st.cd - NOW + W end
  redis.call('PEXPIRE', st.key, math.ceil(ttl * 1000))
end

local function out(st)
  local lat, ttft = '', ''
  if st.lat then lat = f17(st.lat) end
  if st.ttft then ttft = f17(st.ttft) end
  return {tostring(st.others + st.own), f17(st.ws), tostring(st.rpm), tostring(st.tpm),
    tostring(st.ok), tostring(st.fail), tostring(st.cf), lat, ttft, f17(st.lat_at),
    f17(st.cd), st.cdr, tostring(st.ho), tostring(st.tr), f17(st.sp), tostring(st.tp)}
end
"""

# KEYS: deployments. ARGV[6..]: this process's in-flight count for each.
_VIEW = r"""
local res = {f17(NOW)}
for i, key in ipairs(KEYS) do
  local st = load(key, NOW)
  roll(st)
  if st.dirty then save(st) end
  st.own = tonumber(ARGV[5 + i]) or 0
  res[i + 1] = out(st)
end
return res
"""

# KEYS[1]: the deployment. ARGV[6]: this process's in-flight count; ARGV[7..10]: rpm, tpm,
# tokens, max_parallel ('' = no limit). Returns {now, verdict, retry_at, cooldown reason}.
_ACQUIRE = r"""
local st = load(KEYS[1], NOW)
roll(st)
local own = tonumber(ARGV[6])
local rpm, tpm = tonumber(ARGV[7]), tonumber(ARGV[8])
local tokens, mp = tonumber(ARGV[9]), tonumber(ARGV[10])
local function refuse(verdict, retry_at)
  if st.dirty then save(st) end
  return {f17(NOW), verdict, f17(retry_at), st.cdr}
end
if st.cd > NOW then return refuse('cool', st.cd) end
local trial = false
if st.ho == 1 then
  if st.tr == 1 then return refuse('trial', NOW + 0.05) end
  trial = true
end
if rpm and st.rpm + 1 > rpm then return refuse('rpm', st.ws + W) end
if tpm and st.tpm + tokens > tpm and st.tpm > 0 then return refuse('tpm', st.ws + W) end
if mp and st.others + own >= mp then return refuse('parallel', NOW + 0.01) end
st.rpm = st.rpm + 1
st.tpm = st.tpm + tokens
if trial then
  st.tr = 1
  st.tr_at = NOW
end
set_own(st, own + 1)
save(st)
local t = '0'
if trial then t = '1' end
return {f17(NOW), 'ok', '0', '', t}
"""

# KEYS[1]: the deployment. ARGV[6]: this process's in-flight count after the call; ARGV[7..15]:
# ok, latency, ttft ('' = none), tpm correction, cost, counts as failure, is a timeout,
# cooldown seconds ('' = none), cooldown reason. Returns {now, state}.
_RELEASE = r"""
local st = load(KEYS[1], NOW)
roll(st)
set_own(st, tonumber(ARGV[6]))
local ok, latency, ttft = ARGV[7] == '1', tonumber(ARGV[8]), tonumber(ARGV[9])
local delta, cost = tonumber(ARGV[10]), tonumber(ARGV[11])
local counts, timeout, cool = ARGV[12] == '1', ARGV[13] == '1', tonumber(ARGV[14])
local function update_latency()
  local a = 0.3
  if st.lat then st.lat = (1 - a) * st.lat + a * latency else st.lat = latency end
  if ttft then
    if st.ttft then st.ttft = (1 - a) * st.ttft + a * ttft else st.ttft = ttft end
  end
  st.lat_at = NOW
end
if delta ~= 0 then st.tpm = math.max(0, st.tpm + delta) end
st.sp = st.sp + cost
st.tr = 0
if ok then
  st.ok = st.ok + 1
  st.cf = 0
  st.ho = 0
  st.tp = 0
  update_latency()
elseif counts then
  st.fail = st.fail + 1
  st.cf = st.cf + 1
  if timeout then update_latency() end
end
if cool then
  if st.cd <= NOW then st.tp = st.tp + 1 end
  st.cd = NOW + cool
  st.cdr = ARGV[15]
  st.ho = 1
end
save(st)
return {f17(NOW), out(st)}
"""

# KEYS[1]: the deployment. ARGV[6]: seconds from now; ARGV[7]: reason; ARGV[8]: '1' when a
# half-open trial follows (a health cooldown, counted in tp), '0' for a rate limit.
_COOL_DOWN = r"""
local st = load(KEYS[1], 0)
local untl = NOW + tonumber(ARGV[6])
local trial = ARGV[8] == '1'
if trial and st.cd <= NOW then st.tp = st.tp + 1 end
if untl > st.cd then st.cd = untl end
st.cdr = ARGV[7]
if trial then st.ho = 1 else st.ho = 0 end
save(st)
return f17(NOW)
"""

_REFUSALS: Mapping[str, Callable[[int | None, int | None, int | None, str], str]] = {
    "cool": lambda rpm, tpm, mp, why: f"cooling down ({why})",
    "trial": lambda rpm, tpm, mp, why: "half-open: trial call in flight",
    "rpm": lambda rpm, tpm, mp, why: f"rpm limit {rpm} reached",
    "tpm": lambda rpm, tpm, mp, why: f"tpm limit {tpm} reached",
    "parallel": lambda rpm, tpm, mp, why: f"{mp} calls in flight",
}


_REFUSAL_KINDS: Mapping[str, str] = {"cool": "cooldown"}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(value: int | float | None) -> str:
    return "" if value is None else repr(value)


class RedisStore:
    """A :class:`~gatewaykit.routing.store.StateStore` kept in Redis, shared by many routers.

    Same semantics as :class:`~gatewaykit.routing.store.InMemoryStore` (rpm/tpm/max_parallel
    admission, one-minute windows, cooldowns with a single half-open trial, latency and TTFT
    moving averages, spend), made atomic across processes by Lua scripts: each method is one
    ``EVALSHA`` round trip. Each deployment is one hash, ``<prefix>dep:<id>``, with a TTL.

    Give it a redis-py client, or connection settings (``url`` wins over ``host``/``port``). The
    client it builds uses short socket timeouts and a single retry, so a dead Redis costs a
    call little before the store falls back to process-local state (see the module docs).
    A client passed in is used as it is: give it short timeouts too.

    Attributes for metrics: :attr:`degraded` (serving from local state now),
    :attr:`fallbacks` (outages so far), :attr:`errors` (failed Redis calls so far).

    Example::

        store = RedisStore(url="redis://redis.internal:6379/0", prefix="myapp:router:")
        router = RouterChatModel.from_config("config.yaml", model="gpt-4o", store=store)

        store = RedisStore.from_settings(cfg.router, resolve=cfg.resolve)  # router_settings
        store = store_from_config(cfg)        # RedisStore when redis_* is set, else InMemoryStore
    """

    def __init__(
        self,
        client: Redis | None = None,
        *,
        url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 6379,
        password: str | None = None,
        username: str | None = None,
        db: int = 0,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = 0.25,
        window_s: float | None = None,
        key_ttl_s: float = 86400.0,
        inflight_ttl_s: float = 900.0,
        trial_ttl_s: float = 120.0,
        retry_interval_s: float = 1.0,
    ) -> None:
        """Connect lazily (nothing is sent until the first call).

        ``window_s`` is the rpm/tpm window (default :data:`~gatewaykit.routing.store.WINDOW_S`,
        60 s); ``key_ttl_s`` how long an idle deployment's hash lives (never less than two
        windows or a pending cooldown); ``inflight_ttl_s`` how long the in-flight count of a
        router process that stopped talking (crashed) still counts; ``trial_ttl_s`` how long a
        half-open trial call holds the circuit before another may try; ``retry_interval_s`` how
        often Redis is tried again while serving from local state.
        """
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("RedisStore needs redis-py: pip install 'gatewaykit[redis]'") from exc
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("key_ttl_s", key_ttl_s),
            ("inflight_ttl_s", inflight_ttl_s),
            ("trial_ttl_s", trial_ttl_s),
            ("retry_interval_s", retry_interval_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        window = _store.WINDOW_S if window_s is None else float(window_s)
        if not window > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")

        self._owns_client = client is None
        if client is None:
            options: dict[str, Any] = {
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": socket_timeout,
                "retry": Retry(NoBackoff(), 1),
                "health_check_interval": 0,
            }
            if url is not None:
                # Parts of the URL win; password, username and db fill in what it leaves out.
                extra = {"password": password, "username": username}
                options.update({k: v for k, v in extra.items() if v is not None}, db=db)
                client = redis.Redis.from_url(url, **options)
            else:
                client = redis.Redis(
                    host=host,
                    port=port,
                    db=db,
                    password=password,
                    username=username,
                    **options,
                )
        self._client: Redis = client
        self._location = _location(client, url if self._owns_client else None)
        self.prefix = prefix
        self.window_s = window
        self._common = (
            repr(window),
            repr(float(inflight_ttl_s)),
            repr(float(trial_ttl_s)),
            repr(float(key_ttl_s)),
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._scripts: dict[str, Script] = {
            name: client.register_script(_PRELUDE + body)
            for name, body in (
                ("view", _VIEW),
                ("acquire", _ACQUIRE),
                ("release", _RELEASE),
                ("cool_down", _COOL_DOWN),
            )
        }
        self._retry_interval = float(retry_interval_s)
        self._meta = threading.Lock()
        self._id_locks: dict[str, threading.Lock] = {}
        self._new_process()
        self._local = InMemoryStore()
        self._last: dict[str, DeploymentState] = {}
        self._offset = 0.0
        self._degraded = False
        self._retry_at = 0.0
        self.fallbacks = 0
        """How many times the store fell back to local state (one per outage)."""
        self.errors = 0
        """Redis calls that failed (the first of an outage and every failed retry)."""

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_settings(
        cls,
        settings: RouterSettings,
        *,
        resolve: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> RedisStore:
        """Build from ``router_settings``: ``redis_url``, or ``redis_host`` + ``redis_port``, and
        ``redis_password``, as LiteLLM reads them (the URL wins over host and port, and its own
        credentials over ``redis_password``); also ``redis_username``, ``redis_db`` and
        ``redis_prefix`` when present. ``os.environ/VAR`` values are resolved with ``resolve``
        (pass ``cfg.resolve`` to honour ``environment_variables``; default: the environment).
        ``kwargs`` go to the constructor and win over the settings.

        Example::

            cfg = GatewayConfig.from_yaml("config.yaml")
            store = RedisStore.from_settings(cfg.router, resolve=cfg.resolve)
        """
        if resolve is None:
            from gatewaykit.config import resolve_value

            resolve = resolve_value
        url = resolve(settings.redis_url)
        host = resolve(settings.redis_host)
        if not url and not host:
            raise ValueError("router_settings has neither redis_url nor redis_host")
        options: dict[str, Any] = {}
        if url:
            options["url"] = str(url)
        else:
            options["host"] = str(host)
            port = resolve(settings.redis_port)
            if port not in (None, ""):
                options["port"] = int(port)
        password = resolve(settings.redis_password)
        if password:
            options["password"] = str(password)
        extra = settings.extra
        if extra.get("redis_username"):
            options["username"] = str(resolve(extra["redis_username"]))
        if extra.get("redis_db") not in (None, ""):
            options["db"] = int(resolve(extra["redis_db"]))
        if extra.get("redis_prefix"):
            options["prefix"] = str(resolve(extra["redis_prefix"]))
        options.update(kwargs)
        return cls(**options)

    def __repr__(self) -> str:
        return (
            f"RedisStore(location={self._location!r}, prefix={self.prefix!r}, "
            f"degraded={self._degraded})"
        )

    # ------------------------------------------------------------------ state for metrics

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and this process serves from local state."""
        return self._degraded

    @property
    def client(self) -> Redis:
        """The redis-py client in use."""
        return self._client

    def key(self, id_: str) -> str:
        """The Redis key of a deployment's hash."""
        return f"{self.prefix}dep:{id_}"

    # ------------------------------------------------------------------ StateStore

    def view(self, ids: Iterable[str], now: float) -> Mapping[str, DeploymentState]:
        """Current state of these deployments, read in one round trip."""
        ids = list(dict.fromkeys(ids))
        self._note(now)
        if not ids:
            return {}
        if self._try_redis():
            inflight = self._inflight
            try:
                raw = self._scripts["view"](
                    keys=[self.key(i) for i in ids],
                    args=[*self._common, self._instance, *(inflight.get(i, 0) for i in ids)],
                )
            except self._errors as exc:
                self._failed(exc)
            else:
                self._recovered()
                server_now = float(raw[0])
                states = {
                    i: self._state(s, server_now, now) for i, s in zip(ids, raw[1:], strict=True)
                }
                self._last.update(states)
                return states
        return self._local.view(ids, now)

    def acquire(
        self,
        id_: str,
        now: float,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        tokens: int = 0,
        max_parallel: int | None = None,
        trial: bool = False,
    ) -> Admission:
        """Atomically check headroom and reserve one request (and ``tokens``) on ``id_``."""
        self._note(now)
        with self._lock_for(id_):
            own = self._inflight.get(id_, 0)
            adm: Admission | None = None
            if self._try_redis():
                try:
                    raw = self._scripts["acquire"](
                        keys=[self.key(id_)],
                        args=[
                            *self._common,
                            self._instance,
                            own,
                            _opt(rpm),
                            _opt(tpm),
                            int(tokens),
                            _opt(max_parallel),
                        ],
                    )
                except self._errors as exc:
                    self._failed(exc)
                else:
                    self._recovered()
                    verdict = _text(raw[1])
                    if verdict == "ok":
                        adm = Admission(True, trial=len(raw) > 4 and _text(raw[4]) == "1")
                    else:
                        server_now = float(raw[0])
                        reason = _REFUSALS[verdict](rpm, tpm, max_parallel, _text(raw[3]))
                        adm = Admission(
                            False,
                            reason,
                            now + (float(raw[2]) - server_now),
                            _REFUSAL_KINDS.get(verdict, verdict),
                        )
            if adm is None:
                adm = self._local.acquire(
                    id_,
                    now,
                    rpm=rpm,
                    tpm=tpm,
                    tokens=tokens,
                    max_parallel=max_parallel,
                    trial=trial,
                )
            if adm.ok:
                self._inflight[id_] = own + 1
            return adm

    def release(self, id_: str, now: float, outcome: Outcome) -> DeploymentState:
        """Record how the call ended; returns the updated state (the health policy reads it)."""
        self._note(now)
        with self._lock_for(id_):
            own = max(0, self._inflight.get(id_, 0) - 1)
            if own:
                self._inflight[id_] = own
            else:
                self._inflight.pop(id_, None)
            if self._try_redis():
                settle = (
                    outcome.tokens - outcome.reserved_tokens
                    if outcome.tokens and outcome.tokens != outcome.reserved_tokens
                    else 0
                )
                try:
                    raw = self._scripts["release"](
                        keys=[self.key(id_)],
                        args=[
                            *self._common,
                            self._instance,
                            own,
                            "1" if outcome.ok else "0",
                            repr(float(outcome.latency_s)),
                            _opt(None if outcome.ttft_s is None else float(outcome.ttft_s)),
                            int(settle),
                            repr(float(outcome.cost)),
                            "1" if outcome.counts_as_failure else "0",
                            "1" if outcome.kind == "timeout" else "0",
                            repr(float(outcome.cooldown_s)) if outcome.cooldown_s else "",
                            f"{outcome.kind} {outcome.status or ''}".strip(),
                        ],
                    )
                except self._errors as exc:
                    self._failed(exc)
                else:
                    self._recovered()
                    state = self._state(raw[1], float(raw[0]), now)
                    self._last[id_] = state
                    return state
            return self._local.release(id_, now, outcome)

    def cool_down(
        self, id_: str, until: float, reason: str, *, trial: bool = True, now: float | None = None
    ) -> None:
        """Exclude ``id_`` until ``until`` (caller's clock), for every router on this Redis;
        ``trial`` as in :meth:`StateStore.cool_down` (whether a new cooldown is a trip is
        decided on the Redis server's clock)."""
        if now is None:
            # Estimate the caller's clock from the offset between the `now` of its latest call
            # and time.monotonic() at that moment.
            now = time.monotonic() + self._offset
        seconds = until - now
        if self._try_redis():
            try:
                self._scripts["cool_down"](
                    keys=[self.key(id_)],
                    args=[
                        *self._common,
                        self._instance,
                        repr(float(seconds)),
                        reason,
                        "1" if trial else "0",
                    ],
                )
            except self._errors as exc:
                self._failed(exc)
            else:
                self._recovered()
                return
        self._local.cool_down(id_, until, reason, trial=trial, now=now)

    # ------------------------------------------------------------------ maintenance

    def ping(self) -> bool:
        """Whether Redis answers now (does not change the store's mode)."""
        try:
            return bool(self._client.ping())
        except self._errors:
            return False

    def clear(self) -> int:
        """Delete this store's deployment keys (``<prefix>dep:*``); returns how many.

        Never touches other keys, nor those of a longer prefix that starts with this one.
        Raises if Redis is unreachable (maintenance, not the hot path).
        """
        n = 0
        batch: list[Any] = []
        for key in self._client.scan_iter(match=_glob_escape(self.prefix) + "dep:*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                n += int(self._client.delete(*batch))
                batch.clear()
        if batch:
            n += int(self._client.delete(*batch))
        self._local.reset()
        self._last.clear()
        return n

    def close(self) -> None:
        """Close the connections of a client this store built (a client passed in is left)."""
        if self._owns_client:
            self._client.close()

    # ------------------------------------------------------------------ internals

    def _new_process(self) -> None:
        """Fresh identity after construction or a fork: in-flight counts are per process."""
        self._pid = os.getpid()
        self._instance = uuid.uuid4().hex[:16]
        self._inflight: dict[str, int] = {}
        self._id_locks.clear()

    def _note(self, now: float) -> None:
        if self._pid != os.getpid():
            with self._meta:
                if self._pid != os.getpid():
                    self._new_process()
        self._offset = now - time.monotonic()

    def _lock_for(self, id_: str) -> threading.Lock:
        lock = self._id_locks.get(id_)
        if lock is None:
            with self._meta:
                lock = self._id_locks.setdefault(id_, threading.Lock())
        return lock

    def _try_redis(self) -> bool:
        """Whether this call goes to Redis: always when healthy; while degraded, one call per
        ``retry_interval_s`` probes it (the others stay local, so an outage costs no waits)."""
        if not self._degraded:
            return True
        t = time.monotonic()
        with self._meta:
            if t < self._retry_at:
                return False
            self._retry_at = t + self._retry_interval
            return True

    def _failed(self, exc: BaseException) -> None:
        with self._meta:
            self.errors += 1
            self._retry_at = time.monotonic() + self._retry_interval
            if self._degraded:
                logger.debug("RedisStore: Redis at %s still unavailable", self._location)
                return
            local = InMemoryStore()
            local.seed(
                {
                    i: _replace(s, in_flight=self._inflight.get(i, 0), trial_in_flight=False)
                    for i, s in self._last.items()
                }
            )
            self._local = local
            self._degraded = True
            self.fallbacks += 1
        logger.warning(
            "RedisStore: Redis at %s is unavailable (%s: %s); routing on process-local state, "
            "retrying every %.1fs",
            self._location,
            type(exc).__name__,
            redact(str(exc))[:200],
            self._retry_interval,
        )

    def _recovered(self) -> None:
        if not self._degraded:
            return
        with self._meta:
            if not self._degraded:
                return
            self._degraded = False
        logger.info("RedisStore: Redis at %s answers again; shared state resumed", self._location)

    @staticmethod
    def _state(raw: Sequence[Any], server_now: float, now: float) -> DeploymentState:
        def at(value: Any) -> float:
            t = float(value)
            return now + (t - server_now) if t else 0.0

        lat, ttft = _text(raw[7]), _text(raw[8])
        return DeploymentState(
            in_flight=int(raw[0]),
            window_start=at(raw[1]),
            rpm_used=int(raw[2]),
            tpm_used=int(raw[3]),
            successes=int(raw[4]),
            failures=int(raw[5]),
            consecutive_failures=int(raw[6]),
            latency_s=float(lat) if lat else None,
            ttft_s=float(ttft) if ttft else None,
            latency_at=at(raw[9]),
            cooldown_until=at(raw[10]),
            cooldown_reason=_text(raw[11]),
            half_open=_text(raw[12]) == "1",
            trial_in_flight=_text(raw[13]) == "1",
            spend=float(raw[14]),
            trips=int(raw[15]) if len(raw) > 15 and _text(raw[15]) else 0,
        )


def _replace(st: DeploymentState, **changes: Any) -> DeploymentState:
    import dataclasses

    return dataclasses.replace(st, **changes)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _location(client: Redis, url: str | None) -> str:
    """host:port/db of the server, never its credentials (for logs and reprs)."""
    if url is not None:
        parts = urlsplit(url)
        host = parts.hostname or parts.path or "?"
        port = f":{parts.port}" if parts.port else ""
        db = parts.path if parts.hostname and parts.path not in ("", "/") else ""
        return f"{parts.scheme}://{host}{port}{db}"
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def store_from_config(cfg: GatewayConfig, **kwargs: Any) -> StateStore:
    """The state store a config asks for: a :class:`RedisStore` when ``router_settings`` sets
    ``redis_url`` or ``redis_host`` (``os.environ/VAR`` values resolved with ``cfg.resolve``),
    else an :class:`~gatewaykit.routing.store.InMemoryStore`. ``kwargs`` go to RedisStore.

    Example::

        cfg = GatewayConfig.from_yaml("config.yaml")
        engine = RouterEngine(cfg, store=store_from_config(cfg))
    """
    rs = cfg.router
    if rs.redis_url is None and rs.redis_host is None:
        return InMemoryStore()
    return RedisStore.from_settings(rs, resolve=cfg.resolve, **kwargs)
