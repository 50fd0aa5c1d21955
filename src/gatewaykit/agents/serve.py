"""Serve any LangChain chat model behind an OpenAI-compatible HTTP API.

:func:`create_app` builds a Starlette app exposing each model of a mapping under its name:

- ``POST /v1/chat/completions``: JSON answers and SSE streams (``stream_options.include_usage``
  adds a final usage chunk; every stream ends with ``data: [DONE]`` or, when the model fails
  mid-way, with an ``error`` event);
- ``GET /v1/models`` and ``GET /health/liveliness``;
- A2A (a2a-sdk's server): ``POST /a2a/{model}`` speaks JSON-RPC ``message/send``,
  ``message/stream`` (SSE), ``tasks/get``, ``tasks/cancel`` and their A2A 1.0 names; the agent
  card is at ``GET /.well-known/agent-card.json?model={model}`` (or
  ``/a2a/{model}/.well-known/agent-card.json``).

The models can be anything with ``ainvoke``/``astream``: a :class:`~gatewaykit.RouterChatModel`,
a :class:`~gatewaykit.GatewayChatModel`, or a custom ``BaseChatModel`` wrapping an agent. An
OpenAI SDK, LangChain's ``ChatOpenAI`` or a LiteLLM proxy (``model: openai/<name>``,
``api_base: http://host:port/v1``) can call them.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gatewaykit._redact import redact
from gatewaykit.agents._body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit, checked_limit
from gatewaykit.agents._serve_request import (
    THREAD_ID_HEADER,
    Call,
    ServeError,
    prepare,
    target_of,
)
from gatewaykit.errors import GatewayError

if TYPE_CHECKING:
    from gatewaykit.observability.metrics import GatewayMetrics

__all__ = ["DEFAULT_MAX_BODY_BYTES", "THREAD_ID_HEADER", "ServeError", "create_app", "serve"]

log = logging.getLogger(__name__)

_NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _from_exception(exc: BaseException) -> ServeError:
    """The error a model's exception becomes on the wire; never leaks secrets or internals."""
    if isinstance(exc, ServeError):
        return exc
    if isinstance(exc, GatewayError):
        status = exc.status if exc.status and 400 <= exc.status <= 599 else 502
        headers: dict[str, str] = {}
        retry_after: Any = (exc.headers or {}).get("retry-after") or exc.retry_after
        if retry_after:
            headers["retry-after"] = str(retry_after)
        return ServeError(status, redact(exc.message or str(exc)), exc.kind, headers=headers)
    log.error("model call failed: %s: %s", type(exc).__name__, redact(str(exc)))
    log.debug("model call failure", exc_info=exc)
    return ServeError(
        500, f"internal error ({type(exc).__name__})", "internal_server_error", "internal_error"
    )


# --- response rendering ----------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    return "" if content is None else str(content)


def _usage(msg: AIMessage | None) -> dict[str, Any] | None:
    um = getattr(msg, "usage_metadata", None) if msg is not None else None
    if not um:
        return None
    prompt = int(um.get("input_tokens", 0))
    completion = int(um.get("output_tokens", 0))
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(um.get("total_tokens", prompt + completion)),
    }
    cached = (um.get("input_token_details") or {}).get("cache_read")
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": int(cached)}
    reasoning = (um.get("output_token_details") or {}).get("reasoning")
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": int(reasoning)}
    return usage


def _tool_calls(msg: AIMessage) -> list[dict[str, Any]]:
    return [
        {
            "id": tc.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": tc["name"], "arguments": json.dumps(tc.get("args", {}))},
        }
        for tc in msg.tool_calls
    ]


def _finish_reason(msg: AIMessage, has_tools: bool) -> str:
    reason = msg.response_metadata.get("finish_reason") if msg.response_metadata else None
    if has_tools:
        return "tool_calls"
    if isinstance(reason, str) and reason in ("stop", "length", "content_filter", "tool_calls"):
        return reason
    return "stop"


def _completion(name: str, msg: Any) -> dict[str, Any]:
    if not isinstance(msg, BaseMessage):
        msg = AIMessage(content=_text(msg))
    if not isinstance(msg, AIMessage):
        msg = AIMessage(content=_text(msg.content))
    calls = _tool_calls(msg)
    message: dict[str, Any] = {"role": "assistant", "content": _text(msg.content) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    out: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_reason(msg, bool(calls)),
                "logprobs": None,
            }
        ],
    }
    usage = _usage(msg)
    out["usage"] = usage or dict(_NO_USAGE)
    return out


def _sse(data: Mapping[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _ChunkWriter:
    """Turns LangChain message chunks into OpenAI ``chat.completion.chunk`` events."""

    def __init__(self, name: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.name = name
        self.role_sent = False
        self.total: AIMessageChunk | None = None
        self.tool_index: dict[Any, int] = {}
        self.finish: str | None = None

    def event(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return _sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.name,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
                **extra,
            }
        )

    def chunk(self, chunk: Any) -> bytes | None:
        if not isinstance(chunk, AIMessageChunk):
            chunk = AIMessageChunk(content=_text(getattr(chunk, "content", chunk)))
        self.total = chunk if self.total is None else self.total + chunk
        reason = (chunk.response_metadata or {}).get("finish_reason")
        if isinstance(reason, str):
            self.finish = reason
        delta: dict[str, Any] = {}
        if not self.role_sent:
            delta["role"] = "assistant"
            self.role_sent = True
        text = _text(chunk.content)
        if text:
            delta["content"] = text
        calls = []
        for tcc in chunk.tool_call_chunks:
            key = tcc.get("index")
            if key is None:
                key = tcc.get("id") or len(self.tool_index)
            if key not in self.tool_index:
                self.tool_index[key] = len(self.tool_index)
                call: dict[str, Any] = {
                    "index": self.tool_index[key],
                    "id": tcc.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": tcc.get("name") or "", "arguments": tcc.get("args") or ""},
                }
            else:
                call = {
                    "index": self.tool_index[key],
                    "function": {"arguments": tcc.get("args") or ""},
                }
            calls.append(call)
        if calls:
            delta["tool_calls"] = calls
        if not delta:
            return None
        if "role" in delta and "content" not in delta and "tool_calls" not in delta:
            delta["content"] = ""
        return self.event(delta)

    def finish_event(self) -> bytes:
        has_tools = bool(self.tool_index)
        reason = "tool_calls" if has_tools else (self.finish or "stop")
        if reason not in ("stop", "length", "content_filter", "tool_calls"):
            reason = "stop"
        delta: dict[str, Any] = {} if self.role_sent else {"role": "assistant", "content": ""}
        return self.event(delta, reason)

    def usage_event(self) -> bytes:
        usage = _usage(self.total) or {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
        }
        return _sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.name,
                "choices": [],
                "usage": usage,
            }
        )


# --- the app ---------------------------------------------------------------------------------


def create_app(
    models: Mapping[str, BaseChatModel],
    *,
    api_keys: Sequence[str] | None = None,
    a2a: bool = True,
    metrics: GatewayMetrics | bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """An OpenAI-compatible app serving each of ``models`` under its name.

    With ``api_keys``, every route but ``/health/liveliness`` and the agent card wants
    ``Authorization: Bearer <one of them>`` (or ``x-api-key``); Prometheus sends it as a bearer
    token. ``a2a=False`` leaves out the A2A routes. ``metrics`` (default: the process-wide
    :func:`~gatewaykit.observability.default_metrics`) records every served call and is scraped
    at ``GET /metrics``; ``metrics=False`` leaves both out. A request body over
    ``max_body_bytes`` (default 8 MiB) is answered 413 without being read whole.

    A field a model cannot honour (``tools`` or ``response_format`` for an agent, ``n > 1``,
    ``logprobs``...) is refused with 400 rather than dropped; a checkpointed agent takes its
    thread id from the ``x-gatewaykit-thread-id`` header or ``metadata.thread_id``
    (``docs/serve.md`` has the whole table).
    """
    if not models:
        raise ValueError("create_app() needs at least one model")
    # A bad limit fails here, not on the first request.
    limit = Middleware(BodyLimit, max_body_bytes=checked_limit(max_body_bytes))
    recorder: GatewayMetrics | None = None
    if metrics is True:
        from gatewaykit.observability.metrics import default_metrics

        recorder = default_metrics()
    elif metrics is not False:
        recorder = metrics
    served = dict(models)
    if recorder is not None:
        served = {name: recorder.instrument(model) for name, model in served.items()}
    targets = {name: target_of(name, model) for name, model in served.items()}
    keys = [k.encode() for k in (api_keys or []) if k]

    def check_auth(request: Request) -> None:
        if not keys:
            return
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        token = token or request.headers.get("x-api-key", "")
        given = token.encode()
        if not any(hmac.compare_digest(given, k) for k in keys):
            raise ServeError(
                401,
                "invalid or missing API key" if token else "missing API key",
                "authentication_error",
                "invalid_api_key",
            )

    def lookup(name: Any) -> BaseChatModel:
        if not isinstance(name, str) or not name:
            raise ServeError(400, "'model' must be a non-empty string", param="model")
        if name not in served:
            raise ServeError(
                404,
                f"model {name!r} is not served here; available: {sorted(served)}",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        return served[name]

    async def read_json(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise ServeError(400, "request body must be JSON") from None
        if not isinstance(body, dict):
            raise ServeError(400, "request body must be a JSON object")
        return body

    async def health(request: Request) -> Response:
        return JSONResponse("I'm alive!")

    async def list_models(request: Request) -> Response:
        try:
            check_auth(request)
        except ServeError as e:
            return e.response()
        created = int(time.time())
        data = [
            {"id": n, "object": "model", "created": created, "owned_by": "gatewaykit"}
            for n in served
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(request: Request) -> Response:
        try:
            check_auth(request)
            body = await read_json(request)
            name = body.get("model")
            model = lookup(name)
            assert isinstance(name, str)
            call = prepare(targets[name], model, body, request.headers)
            if not call.stream:
                try:
                    result = await call.runnable.ainvoke(call.messages, call.config)
                except Exception as exc:
                    raise _from_exception(exc) from None
                call.check(result)
                return JSONResponse(_completion(name, result))
            return await _stream(name, call)
        except ServeError as e:
            return e.response()

    async def _stream(name: str, call: Call) -> Response:
        it = call.runnable.astream(call.messages, call.config).__aiter__()
        # The first chunk is awaited before answering, so an up-front failure keeps its status.
        try:
            first: Any = await it.__anext__()
            done = False
        except StopAsyncIteration:
            first, done = None, True
        except Exception as exc:
            raise _from_exception(exc) from None

        async def events() -> AsyncIterator[bytes]:
            writer = _ChunkWriter(name)
            try:
                if not done:
                    ev = writer.chunk(first)
                    if ev:
                        yield ev
                    async for chunk in it:
                        ev = writer.chunk(chunk)
                        if ev:
                            yield ev
                call.check(writer.total)
            except Exception as exc:
                err = _from_exception(exc)
                yield _sse(err.body())
                return
            finally:
                aclose = getattr(it, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()
            yield writer.finish_event()
            if call.include_usage:
                yield writer.usage_event()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    # --- A2A (a2a-sdk server: JSON-RPC message/send, message/stream, tasks/get; the card) -----

    def a2a_denied(request: Request) -> Response | None:
        try:
            check_auth(request)
        except ServeError as e:
            return JSONResponse(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": e.message}},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        return None

    def unknown_model(name: str | None) -> Response | None:
        try:
            lookup(name)
        except ServeError as e:
            return e.response()
        return None

    def describe_error(exc: BaseException) -> str:
        err = _from_exception(exc)
        return f"{err.type}: {err.message}"

    routes = [
        Route("/health/liveliness", health, methods=["GET"]),
        Route("/health/readiness", health, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/models", list_models, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
    ]
    if a2a:
        from gatewaykit.agents.a2a_serve import a2a_routes

        routes += a2a_routes(
            served,
            authorize=a2a_denied,
            lookup_error=unknown_model,
            describe_error=describe_error,
            secured=bool(keys),
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        # The agent models' connections live in the process-wide pool: close this loop's.
        from gatewaykit._http import aclose_shared_transport

        await aclose_shared_transport()

    app = Starlette(routes=routes, middleware=[limit], lifespan=lifespan)
    if recorder is not None:
        from gatewaykit.observability.asgi import mount_metrics

        mount_metrics(app, recorder.registry, bearer_tokens=api_keys or None)
    return app


def serve(
    models: Mapping[str, BaseChatModel],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: Sequence[str] | None = None,
    *,
    log_level: str = "info",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Run :func:`create_app` on uvicorn until interrupted."""
    import uvicorn

    app = create_app(models, api_keys=api_keys, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
