"""Serve a metrics registry as ``GET /metrics`` from any ASGI app.

:func:`metrics_app` is a bare ASGI app (mount it anywhere, run it alone); :func:`mount_metrics`
adds it to a Starlette (or FastAPI) app as one exact route, so ``/metrics`` answers without the
redirect to ``/metrics/`` that a ``Mount`` would make Prometheus follow.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, make_asgi_app

__all__ = ["metrics_app", "mount_metrics"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def metrics_app(
    registry: CollectorRegistry, *, bearer_tokens: Sequence[str] | None = None
) -> ASGIApp:
    """An ASGI app answering with the registry in Prometheus' text (or OpenMetrics) format.

    With ``bearer_tokens``, a scrape must send ``Authorization: Bearer <one of them>``
    (Prometheus: ``authorization: {credentials: ...}`` in the scrape config).

    Example::

        import uvicorn
        from gatewaykit.observability import GatewayMetrics, metrics_app

        metrics = GatewayMetrics()
        uvicorn.run(metrics_app(metrics.registry), port=9100)
    """
    return _MetricsApp(registry, bearer_tokens)


class _MetricsApp:
    """A class, not a function: Starlette's ``Route`` then calls it as a raw ASGI app."""

    def __init__(self, registry: CollectorRegistry, bearer_tokens: Sequence[str] | None) -> None:
        self._inner: ASGIApp = make_asgi_app(registry)
        self._tokens = [t.encode() for t in (bearer_tokens or ()) if t]

    def __repr__(self) -> str:  # never show the tokens
        return f"<metrics app, {len(self._tokens)} bearer token(s)>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            return
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed; scrape with GET\n")
            return
        if self._tokens and not _authorized(scope, self._tokens):
            await _plain(send, 401, b"missing or invalid bearer token\n")
            return
        await self._inner(scope, receive, send)


def mount_metrics(
    app: Any,
    registry: CollectorRegistry,
    path: str = "/metrics",
    *,
    bearer_tokens: Sequence[str] | None = None,
) -> Any:
    """Add ``GET path`` serving ``registry`` to a Starlette or FastAPI app; returns the app.

    Example::

        app = create_app({"smart": router})
        mount_metrics(app, metrics.registry)
    """
    from starlette.routing import Route

    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    router = getattr(app, "router", None)
    if router is None or not hasattr(router, "routes"):
        raise TypeError(f"mount_metrics() needs a Starlette or FastAPI app, got {type(app)!r}")
    route = Route(path, endpoint=metrics_app(registry, bearer_tokens=bearer_tokens))
    router.routes.insert(0, route)  # before any catch-all mount
    return app


def _authorized(scope: Scope, tokens: Sequence[bytes]) -> bool:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
            given = value[7:].strip()
            return any(hmac.compare_digest(given, t) for t in tokens)
    return False


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
