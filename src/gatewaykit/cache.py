"""A client-side response cache, behind LangChain's own cache interface.

The backends are :class:`~langchain_core.caches.BaseCache` implementations, so they plug in the
usual way: ``GatewayChatModel(cache=cache)``, ``RouterChatModel(cache=cache)`` or process-wide
with ``set_llm_cache(cache)``. LangChain keys the cache on the prompt and the model's parameters
(model, temperature, tools, ``response_format``...); gatewaykit's models leave out what does not
change the answer (tags, metadata, end user, call ids, retry switches) and pass the request's
``cache_control`` through to the cache:

- ``no_cache``: skip the read (the answer is still stored unless ``no_store``);
- ``no_store``: skip the write;
- ``ttl``: seconds this answer stays fresh (else the cache's ``ttl``, else forever);
- ``namespace``: a separate key space (per tenant, per experiment).

Hits are marked: ``response_metadata["cache"] == {"hit": True, "namespace": ..., "age_s": ...}``
(a stored miss says ``{"hit": False, "stored": True}``). Cached answers report ``total_cost: 0``
in their usage, as LangChain does for any cache hit.

Example::

    from gatewaykit import GatewayChatModel, SQLiteResponseCache

    llm = GatewayChatModel.from_config("config.yaml", "gpt-4o", cache=SQLiteResponseCache("llm.db"))
    llm.invoke("Define idempotent.")                                    # stored
    llm.invoke("Define idempotent.").response_metadata["cache"]["hit"]  # True
    llm.invoke("Define idempotent.", cache_control={"no_cache": True})  # fresh answer
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import Serializable, dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation

from gatewaykit.config_errors import ConfigError, ConfigProblem

__all__ = [
    "InMemoryResponseCache",
    "RedisResponseCache",
    "ResponseCache",
    "SQLiteResponseCache",
    "UnsupportedCacheWarning",
    "cache_from_config",
    "split_llm_string",
    "with_cache_controls",
]

logger = logging.getLogger("gatewaykit.cache")

_MARK = "\x00gatewaykit-cache-control:"
_ALLOWED: list[type[Serializable]] = [
    ChatGeneration,
    ChatGenerationChunk,
    Generation,
    AIMessage,
    AIMessageChunk,
]
_ALIASES = {"no-cache": "no_cache", "no-store": "no_store", "s-maxage": "s_maxage"}


def normalize_controls(controls: Mapping[str, Any] | None) -> dict[str, Any]:
    """``cache_control`` in either spelling (``no-cache`` or ``no_cache``), validated."""
    out: dict[str, Any] = {}
    for k, v in (controls or {}).items():
        key = _ALIASES.get(k, k)
        if key in ("no_cache", "no_store"):
            out[key] = bool(v)
        elif key in ("ttl", "s_maxage"):
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise ValueError(
                    f"cache_control.{k} must be a positive number of seconds, got {v!r}"
                )
            out[key] = float(v)
        elif key == "namespace":
            if not isinstance(v, str) or not v:
                raise ValueError(f"cache_control.namespace must be a non-empty string, got {v!r}")
            out[key] = v
        else:
            raise ValueError(
                f"unknown cache_control key {k!r}; use no_cache, no_store, ttl, s_maxage, namespace"
            )
    return out


def with_cache_controls(llm_string: str, controls: Mapping[str, Any] | None) -> str:
    """Append the request's cache controls to LangChain's llm_string (which keys the cache)."""
    clean = normalize_controls(controls)
    if not clean:
        return llm_string
    return llm_string + _MARK + json.dumps(clean, sort_keys=True)


def split_llm_string(llm_string: str) -> tuple[str, dict[str, Any]]:
    """The part of an llm_string that keys the cache, and the request's cache controls."""
    base, sep, tail = llm_string.partition(_MARK)
    if not sep:
        return llm_string, {}
    try:
        controls = json.loads(tail)
    except ValueError:
        return llm_string, {}
    return base, controls if isinstance(controls, dict) else {}


class ResponseCache(BaseCache):
    """Shared logic of the backends: keys, freshness, request controls, hit marking.

    ``ttl`` (seconds) is the default freshness; ``namespace`` the default key space.

    Example::

        from langchain_core.globals import set_llm_cache
        set_llm_cache(InMemoryResponseCache(maxsize=10_000, ttl=3600))
    """

    backend = "memory"

    def __init__(self, *, ttl: float | None = None, namespace: str = "default") -> None:
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.ttl = ttl
        self.namespace = namespace
        self.hits = 0
        self.misses = 0

    # backends implement these three
    def _get(self, key: str) -> tuple[bytes, float, float | None] | None:
        """(payload, stored_at, expires_at) or None."""
        raise NotImplementedError

    def _set(self, key: str, payload: bytes, stored_at: float, expires_at: float | None) -> None:
        raise NotImplementedError

    def _clear(self, namespace: str | None) -> None:
        raise NotImplementedError

    def _key(self, prompt: str, llm_string: str, namespace: str) -> str:
        digest = hashlib.sha256(f"{llm_string}\x00{prompt}".encode()).hexdigest()
        return f"{namespace}:{digest}"

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        base, controls = split_llm_string(llm_string)
        if controls.get("no_cache"):
            return None
        namespace = controls.get("namespace", self.namespace)
        row = self._get(self._key(prompt, base, namespace))
        now = time.time()
        if row is None or (row[2] is not None and row[2] <= now):
            self.misses += 1
            return None
        payload, stored_at, _ = row
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                generations = loads(payload.decode(), allowed_objects=_ALLOWED)
        except Exception:  # a corrupt or foreign entry is a miss, never a crash
            logger.warning("unreadable cache entry ignored (namespace %s)", namespace)
            self.misses += 1
            return None
        self.hits += 1
        marker = {
            "hit": True,
            "namespace": namespace,
            "age_s": round(now - stored_at, 3),
            "backend": self.backend,
        }
        for gen in generations:
            if isinstance(gen, ChatGeneration):
                gen.message.response_metadata = {**gen.message.response_metadata, "cache": marker}
        return list(generations)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        base, controls = split_llm_string(llm_string)
        if controls.get("no_store"):
            return
        namespace = controls.get("namespace", self.namespace)
        ttl = controls.get("ttl") or controls.get("s_maxage") or self.ttl
        now = time.time()
        payload = dumps(list(return_val)).encode()
        self._set(self._key(prompt, base, namespace), payload, now, now + ttl if ttl else None)
        for gen in return_val:  # the answer being returned right now says it was stored
            if isinstance(gen, ChatGeneration) and "cache" not in gen.message.response_metadata:
                gen.message.response_metadata["cache"] = {"hit": False, "stored": True}

    def clear(self, **kwargs: Any) -> None:
        """Drop every entry, or only ``namespace=...``'s."""
        self._clear(kwargs.get("namespace"))


class InMemoryResponseCache(ResponseCache):
    """An LRU dict in this process: the default, and the fastest.

    Example::

        llm = RouterChatModel.from_config("config.yaml", model="gpt-4o",
                                          cache=InMemoryResponseCache(maxsize=1000))
    """

    backend = "memory"

    def __init__(
        self, *, maxsize: int = 10_000, ttl: float | None = None, namespace: str = "default"
    ) -> None:
        super().__init__(ttl=ttl, namespace=namespace)
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._data: OrderedDict[str, tuple[bytes, float, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, key: str) -> tuple[bytes, float, float | None] | None:
        with self._lock:
            row = self._data.get(key)
            if row is not None:
                self._data.move_to_end(key)
            return row

    def _set(self, key: str, payload: bytes, stored_at: float, expires_at: float | None) -> None:
        with self._lock:
            self._data[key] = (payload, stored_at, expires_at)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def _clear(self, namespace: str | None) -> None:
        with self._lock:
            if namespace is None:
                self._data.clear()
            else:
                for k in [k for k in self._data if k.startswith(namespace + ":")]:
                    del self._data[k]


class SQLiteResponseCache(ResponseCache):
    """A SQLite file: survives restarts, shared by the processes of one machine.

    Example::

        cache = SQLiteResponseCache(".cache/llm.sqlite", ttl=86400)
    """

    backend = "sqlite"

    def __init__(
        self, path: str | Path, *, ttl: float | None = None, namespace: str = "default"
    ) -> None:
        super().__init__(ttl=ttl, namespace=namespace)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, payload BLOB NOT NULL,"
                " stored_at REAL NOT NULL, expires_at REAL)"
            )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def _get(self, key: str) -> tuple[bytes, float, float | None] | None:
        row = (
            self._conn()
            .execute("SELECT payload, stored_at, expires_at FROM responses WHERE key = ?", (key,))
            .fetchone()
        )
        return None if row is None else (bytes(row[0]), float(row[1]), row[2])

    def _set(self, key: str, payload: bytes, stored_at: float, expires_at: float | None) -> None:
        conn = self._conn()
        conn.execute(
            "INSERT OR REPLACE INTO responses (key, payload, stored_at, expires_at) "
            "VALUES (?, ?, ?, ?)",
            (key, payload, stored_at, expires_at),
        )
        if self.hits + self.misses and (self.hits + self.misses) % 1000 == 0:
            conn.execute(
                "DELETE FROM responses WHERE expires_at IS NOT NULL AND expires_at < ?",
                (stored_at,),
            )

    def _clear(self, namespace: str | None) -> None:
        if namespace is None:
            self._conn().execute("DELETE FROM responses")
        else:
            self._conn().execute("DELETE FROM responses WHERE key LIKE ?", (namespace + ":%",))


class RedisResponseCache(ResponseCache):
    """Redis: one cache for every process and machine. Entries expire by Redis TTL.

    A Redis outage turns lookups into misses and writes into no-ops (with one warning), never
    into failed calls; after a failure Redis is left alone for ``retry_interval_s``, so an
    outage costs one timeout per interval, not one per call.

    Example::

        cache = RedisResponseCache(url="redis://localhost:6379/0", ttl=3600)
    """

    backend = "redis"

    def __init__(
        self,
        client: Any = None,
        *,
        url: str | None = None,
        prefix: str = "gatewaykit:cache:",
        ttl: float | None = None,
        namespace: str = "default",
        retry_interval_s: float = 5.0,
    ) -> None:
        super().__init__(ttl=ttl, namespace=namespace)
        self.retry_interval_s = retry_interval_s
        self._down_until = 0.0
        self._connect: Callable[[], Any] | None = None
        if callable(client) and not hasattr(client, "get"):
            self._connect, client = client, None  # a factory: connect at first use
        elif client is None:
            import redis

            client = redis.Redis.from_url(url or "redis://127.0.0.1:6379/0", socket_timeout=1.0)
        self._client = client
        self.prefix = prefix
        self._warned = False

    @property
    def client(self) -> Any:
        """The Redis client (built by the factory given as ``client`` on first use)."""
        if self._client is None and self._connect is not None:
            self._client = self._connect()
        return self._client

    def _down(self) -> bool:
        return self._down_until > time.monotonic()

    def _failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + self.retry_interval_s
        if not self._warned:
            self._warned = True
            # A config error says which variable is missing and never holds a secret.
            why = str(exc) if isinstance(exc, ConfigError) else type(exc).__name__
            logger.warning("response cache: Redis unavailable (%s); serving without cache", why)

    def _get(self, key: str) -> tuple[bytes, float, float | None] | None:
        if self._down():
            return None
        try:
            raw = self.client.get(self.prefix + key)
        except Exception as exc:
            self._failed(exc)
            return None
        if raw is None:
            return None
        self._warned = False
        stored_at = float.fromhex(raw[:24].decode().strip())
        return bytes(raw[24:]), stored_at, None

    def _set(self, key: str, payload: bytes, stored_at: float, expires_at: float | None) -> None:
        if self._down():
            return
        header = stored_at.hex().ljust(24).encode()
        try:
            if expires_at is not None:
                ms = max(1, int((expires_at - stored_at) * 1000))
                self.client.set(self.prefix + key, header + payload, px=ms)
            else:
                self.client.set(self.prefix + key, header + payload)
        except Exception as exc:
            self._failed(exc)

    def _clear(self, namespace: str | None) -> None:
        pattern = self.prefix + (f"{namespace}:*" if namespace else "*")
        try:
            batch: list[Any] = []
            for k in self.client.scan_iter(match=pattern, count=500):
                batch.append(k)
                if len(batch) >= 500:
                    self.client.delete(*batch)
                    batch.clear()
            if batch:
                self.client.delete(*batch)
        except Exception as exc:
            self._failed(exc)


def cache_key_kwargs(kwargs: Mapping[str, Any], drop: Sequence[str]) -> dict[str, Any]:
    """``kwargs`` without the options that do not change the answer."""
    return {k: v for k, v in kwargs.items() if k not in drop}


# --------------------------------------------------------------------------- from a config

_LOCAL_TYPES = frozenset({"local", "memory", "in-memory", "in_memory"})


class UnsupportedCacheWarning(UserWarning):
    """A config asks for a cache type that only the LiteLLM proxy provides (semantic, s3...)."""


def cache_from_config(config: Any) -> ResponseCache | None:
    """The response cache a LiteLLM-dialect config asks for, or None.

    Reads LiteLLM's two switches: the Router's ``router_settings.cache_responses: true`` (a
    Redis cache when ``router_settings`` has Redis settings, else in memory) and the proxy's
    ``litellm_settings.cache: true`` with ``cache_params`` (``type``: ``local``, ``redis`` with
    ``host``/``port``/``password`` or ``url``, ``disk`` with ``disk_cache_dir``; ``ttl``,
    ``namespace``). Redis is connected at first use, so a config whose Redis address lives in an
    unset ``os.environ/VAR`` still loads; until the variable is set, calls run uncached and one
    warning names it. Types only the proxy has (``redis-semantic``, ``qdrant-semantic``, ``s3``,
    ``gcs``...) give an :class:`UnsupportedCacheWarning` and no client-side cache.

    Example::

        cfg = load_config("config.yaml")   # litellm_settings: {cache: true, cache_params: {...}}
        router = RouterChatModel(config=cfg, model="smart", cache=cache_from_config(cfg))
    """
    from gatewaykit.config import load_config

    cfg = load_config(config)
    ls, rs = cfg.litellm_settings, cfg.router
    wanted_by_router = bool(rs.extra.get("cache_responses"))
    if not (ls.get("cache") is True or wanted_by_router):
        return None
    params: Mapping[str, Any] = ls.get("cache_params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(
            ConfigProblem("litellm_settings.cache_params", "must be a mapping of cache settings"),
            source=cfg.source,
        )
    ttl = params.get("ttl")
    ttl_s = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else None
    namespace = str(params.get("namespace") or "default")
    kind = str(params.get("type") or ("redis" if params.get("host") else "local")).lower()
    if ls.get("cache") is not True:  # only the Router's switch: its own Redis, or memory
        kind = "redis" if (rs.redis_url or rs.redis_host) else "local"
    if kind in _LOCAL_TYPES:
        return InMemoryResponseCache(ttl=ttl_s, namespace=namespace)
    if kind == "disk":
        folder = Path(str(cfg.resolve(params.get("disk_cache_dir")) or ".gatewaykit-cache"))
        return SQLiteResponseCache(folder / "responses.sqlite", ttl=ttl_s, namespace=namespace)
    if kind == "redis":

        def connect() -> Any:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            if ls.get("cache") is not True:
                from gatewaykit.routing.redis_store import RedisStore

                return RedisStore.from_settings(rs, resolve=cfg.resolve)._client
            url = cfg.resolve(params.get("url") or params.get("redis_url"))
            if url:
                return redis.Redis.from_url(
                    str(url), socket_timeout=1.0, socket_connect_timeout=1.0
                )
            port = cfg.resolve(params.get("port"))
            return redis.Redis(
                host=str(cfg.resolve(params.get("host")) or "127.0.0.1"),
                port=int(port) if port not in (None, "") else 6379,
                password=cfg.resolve(params.get("password")) or None,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
                retry=Retry(NoBackoff(), 0),
            )

        return RedisResponseCache(connect, ttl=ttl_s, namespace=namespace)
    message = (
        f"litellm_settings.cache_params.type: cache type {kind!r} has no client-side "
        "equivalent (supported: local, redis, disk); calls run uncached here, and a LiteLLM "
        "proxy using this config still caches"
    )
    logger.warning(message)
    warnings.warn(message, UnsupportedCacheWarning, stacklevel=2)
    return None
