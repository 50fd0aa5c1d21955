"""A request body limit for every route of :func:`~gatewaykit.agents.serve.create_app`.

A body is refused with HTTP 413 (OpenAI's error shape) before it is read when its
``Content-Length`` says it is too big, and while it is read otherwise (a chunked body is counted
as it arrives), so an oversized request never sits in memory whole.

Example::

    app = BodyLimit(app, max_body_bytes=8 * 1024 * 1024)
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimit", "checked_limit"]

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""8 MiB: a 1M-token text prompt (about 4 MB) in its JSON, or a few inline images."""

Scope = dict[str, Any]
Message = dict[str, Any]


class _TooLarge(Exception):
    """Raised from ``receive`` once the body passed the limit (the app stops reading it)."""


class BodyLimit:
    """ASGI middleware answering 413 to bodies over ``max_body_bytes``.

    Once the limit trips, whatever the app tries to answer (its own error for a body it could not
    read) is dropped and the 413 is sent instead, with ``connection: close``: the rest of the body
    is never read.
    """

    def __init__(self, app: Any, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = checked_limit(max_body_bytes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send, f"declares {declared} bytes")
            return
        received = 0
        tripped = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, tripped
            if tripped:
                raise _TooLarge
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    tripped = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if tripped:
                return  # the app's answer to a body it could not finish reading
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            await self._refuse(send, f"passed {self.max_body_bytes} bytes while being read")

    async def _refuse(self, send: Any, what: str) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": (
                        f"the request body {what}; this server accepts at most "
                        f"{self.max_body_bytes} bytes (create_app(max_body_bytes=...), "
                        "`gatewaykit serve --max-body-bytes`)"
                    ),
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "request_too_large",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def checked_limit(max_body_bytes: Any) -> int:
    """``max_body_bytes`` if it is a positive int; else a ValueError saying what is expected."""
    if (
        not isinstance(max_body_bytes, int)
        or isinstance(max_body_bytes, bool)
        or max_body_bytes < 1
    ):
        raise ValueError(
            f"max_body_bytes must be a positive number of bytes, got {max_body_bytes!r} "
            f"(default {DEFAULT_MAX_BODY_BYTES}, 8 MiB)"
        )
    return max_body_bytes


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server's HTTP parser answers a malformed length itself
    return None
