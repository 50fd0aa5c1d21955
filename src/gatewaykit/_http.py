"""HTTP clients that survive more than one event loop.

langchain-openai caches one ``httpx.AsyncClient`` per base URL for the whole process. Its pooled
connections belong to the event loop that opened them, so the second ``asyncio.run()`` in a
process (or a test suite with a loop per test) fails with "Event loop is closed". gatewaykit's
async clients route each request through a transport owned by the *running* loop instead.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import httpx

__all__ = [
    "LIMITS",
    "PerLoopAsyncTransport",
    "aclose_shared_transport",
    "async_client_for",
    "shared_async_transport",
    "shared_sync_transport",
]

LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30.0)


class PerLoopAsyncTransport(httpx.AsyncBaseTransport):
    """One ``httpx.AsyncHTTPTransport`` per running event loop, created on first use.

    Example::

        client = httpx.AsyncClient(transport=PerLoopAsyncTransport())
        asyncio.run(client.get(url)); asyncio.run(client.get(url))   # both work
    """

    def __init__(self, **transport_kwargs: Any) -> None:
        self._kwargs = {"limits": LIMITS, **transport_kwargs}
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport
        ]
        self._by_loop = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def _transport(self) -> httpx.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        transport = self._by_loop.get(loop)
        if transport is None:
            with self._lock:
                transport = self._by_loop.get(loop)
                if transport is None:
                    transport = httpx.AsyncHTTPTransport(**self._kwargs)
                    self._by_loop[loop] = transport
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport().handle_async_request(request)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        transport = self._by_loop.pop(loop, None)
        if transport is not None:
            await transport.aclose()


_CLIENTS: dict[str | None, httpx.AsyncClient] = {}
_CLIENTS_LOCK = threading.Lock()


def async_client_for(base_url: str | None) -> httpx.AsyncClient:
    """A process-wide async client for ``base_url`` that works from any event loop."""
    client = _CLIENTS.get(base_url)
    if client is None:
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(base_url)
            if client is None:
                client = httpx.AsyncClient(
                    base_url=base_url or "https://api.openai.com/v1",
                    transport=PerLoopAsyncTransport(),
                    timeout=httpx.Timeout(600.0, connect=10.0),
                )
                _CLIENTS[base_url] = client
    return client


class _Shared(httpx.AsyncBaseTransport):
    """A process-wide transport that a client's ``aclose()`` leaves open for the others."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:  # shared: closed with the process
        return None


class _SharedSync(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:  # shared: closed with the process
        return None


_SHARED: dict[str, Any] = {}


def shared_async_transport() -> httpx.AsyncBaseTransport:
    """One pooled async transport for the process's agent clients, per event loop.

    Building an ``httpx`` transport loads an SSL context (milliseconds of CPU, even for
    ``http://``); agent models build light clients on this one instead, once each, so no call
    pays for it on the event loop. No transport-level retries: a peer that is down fails fast,
    and the router decides what happens next.

    Example::

        client = httpx.AsyncClient(base_url=url, transport=shared_async_transport())
    """
    transport = _SHARED.get("async")
    if transport is None:
        with _CLIENTS_LOCK:
            transport = _SHARED.get("async")
            if transport is None:
                transport = _SHARED["async"] = _Shared(PerLoopAsyncTransport(retries=0))
    return transport  # type: ignore[no-any-return]


def shared_sync_transport() -> httpx.BaseTransport:
    """The sync twin of :func:`shared_async_transport` (one pool, thread-safe)."""
    transport = _SHARED.get("sync")
    if transport is None:
        with _CLIENTS_LOCK:
            transport = _SHARED.get("sync")
            if transport is None:
                transport = _SHARED["sync"] = _SharedSync(
                    httpx.HTTPTransport(limits=LIMITS, retries=0)
                )
    return transport  # type: ignore[no-any-return]


async def aclose_shared_transport() -> None:
    """Close the running event loop's connections in the shared pool (a server shutting down);
    a later call on the same loop opens new ones."""
    shared = _SHARED.get("async")
    if isinstance(shared, _Shared):
        await shared._inner.aclose()
