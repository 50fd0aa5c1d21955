"""The mock as a plain ASGI app: one code path for thread mode, process mode and any ASGI server.

No framework on the hot path: a chat completion is one dict lookup to route, one JSON parse, the
synthesised answer, one JSON dump and a pre-built header list.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from gatewaykit.testing import _json
from gatewaykit.testing._errors import (
    ErrorContext,
    ErrorReply,
    build_error,
    default_status,
    kind_for_status,
    proxy_rate_limit,
)
from gatewaykit.testing._state import MockState, VirtualKey, key_from_spec
from gatewaykit.testing._synth import (
    Answer,
    completion_tokens,
    prompt_tokens,
    split_text,
    synthesize,
)
from gatewaykit.testing.behavior import Behavior

__all__ = ["CONTROL_TOKEN_HEADER", "LEGACY_VERSION", "MockApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LEGACY_VERSION = "1.55.8"
"""``x-litellm-version`` reported in ``litellm_version="legacy"`` mode."""
CONTROL_TOKEN_HEADER = "x-mock-control-token"
_INPUT_MICRO = 1  # $1e-6 per prompt token
_OUTPUT_MICRO = 2  # $2e-6 per completion token
INPUT_COST_PER_TOKEN = _INPUT_MICRO / 1_000_000
OUTPUT_COST_PER_TOKEN = _OUTPUT_MICRO / 1_000_000
_RATE_WINDOW_S = 60
_PROVIDER_REQUEST_LIMIT = 10_000
_PROVIDER_TOKEN_LIMIT = 1_000_000
_LONG_PAUSE_S = 0.5  # pauses at least this long wake up on client disconnect / server stop

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_JSON_CT = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"


class DropConnection(Exception):
    """Ends a request without a (complete) answer: the server closes the socket.

    Raised for ``stream_cut_after``, and when a pause ends because the client left or the server
    is stopping. uvicorn logs it as an application error; a filter keeps that log quiet.
    """


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DropConnection)


_quiet = _QuietDrops()
logging.getLogger("uvicorn.error").addFilter(_quiet)


def _num(value: float) -> bytes:
    return (str(int(value)) if float(value).is_integer() else repr(float(value))).encode()


def _enc(value: str) -> bytes:
    return value.encode("utf-8", "replace")


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def _api_key_of(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else auth.strip()
    for name in ("x-litellm-api-key", "api-key", "x-api-key"):
        value = headers.get(name)
        if value:
            return value.removeprefix("Bearer ").strip()
    return None


def _guardrail_names(body: dict[str, Any]) -> list[str]:
    """``guardrails: ["a"]`` or the Enterprise form ``{"a": {...}}``."""
    guardrails = body.get("guardrails")
    return [str(g) for g in guardrails] if isinstance(guardrails, list | dict) else []


class MockApp:
    """The ASGI application behind :class:`~gatewaykit.testing.MockGateway`.

    Usable on its own with any ASGI server (``uvicorn.run(MockApp())``); ``state`` holds the
    scripts, emulated keys and request log.
    """

    def __init__(
        self,
        *,
        litellm_version: str = "1.106.2",
        master_key: str | None = None,
        require_auth: bool = False,
        record: bool = True,
        control_token: str | None = None,
    ) -> None:
        self.state = MockState(record=record)
        self.legacy = litellm_version == "legacy"
        self.version = LEGACY_VERSION if self.legacy else litellm_version
        self.master_key = master_key
        self.require_auth = require_auth or master_key is not None
        self.control_token = control_token
        self._closing: asyncio.Event | None = None
        self._tool_ids = 0
        self._api_bases: dict[Any, str] = {}
        self._version_header = (b"x-litellm-version", _enc(self.version))

    # -- lifecycle -------------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """Wake every long pause (hangs, stalls) so the server can stop promptly.

        Call on the event loop's thread (``loop.call_soon_threadsafe``).
        """
        self._closing_event().set()

    def _closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    async def _pause(self, receive: Receive, seconds: float) -> bool:
        """Sleep ``seconds``; True if the client went away or the server is stopping first."""
        if seconds <= 0:
            return False
        if seconds < _LONG_PAUSE_S:
            await asyncio.sleep(seconds)
            return False
        closing = self._closing_event()
        if closing.is_set():
            return True
        recv = asyncio.ensure_future(receive())
        stop = asyncio.ensure_future(closing.wait())
        done, pending = await asyncio.wait(
            {recv, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if recv in done:
            return bool(recv.result().get("type") == "http.disconnect")
        return stop in done

    def _next_tool_id(self) -> str:
        self._tool_ids += 1
        return f"call_{self._tool_ids}"

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path in _CHAT_PATHS:
            if method == "POST":
                await self._chat(scope, receive, send)
            else:
                await _send_json(send, 405, {"detail": "Method Not Allowed"})
            return
        if path.startswith("/health/"):
            await _read_body(receive)
            if path in ("/health/liveliness", "/health/liveness"):
                await _send_json(send, 200, "I'm alive!")
            elif path == "/health/readiness":
                await _send_json(send, 200, self._readiness())
            else:
                await _send_json(send, 200, {"healthy_endpoints": [], "unhealthy_endpoints": []})
            return
        if path.startswith("/__mock__/"):
            await self._control(scope, receive, send)
            return
        raw = await _read_body(receive)
        headers = _headers_of(scope)
        body = _parse(raw)
        self.state.note(path, method, headers, body, None)
        if path in _MODELS_PATHS and method == "GET":
            await self._models(headers, send)
        elif path == "/key/info" and method == "GET":
            await self._key_info(scope, headers, send)
        else:
            await _send_json(send, 404, {"detail": "Not Found"})

    # -- chat completions ------------------------------------------------------------------
    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        raw = await _read_body(receive)
        headers = _headers_of(scope)
        body = _parse(raw)
        model_value = body.get("model") if body is not None else None
        model = model_value if isinstance(model_value, str) else None
        state = self.state
        state.note(scope["path"], "POST", headers, body, model)
        call_id = headers.get("x-litellm-call-id") or str(uuid.uuid4())

        if body is None:
            ctx = ErrorContext(detail="Request body must be a JSON object")
            await self._send_error(
                send, build_error("bad_request", 400, ctx, legacy=self.legacy), call_id
            )
            return
        model = model or ""

        key: VirtualKey | None = None
        if self.require_auth or state.keys:
            key, denied = self._authorize(headers, model)
            if denied is not None:
                await self._send_error(send, denied, call_id)
                return

        behavior, rng = state.pick(model)
        stream = bool(body.get("stream"))
        if behavior.fail_rate is not None:
            failing = rng is not None and rng.random() < behavior.fail_rate
        else:
            failing = behavior.status is not None or behavior.error is not None
            failing = failing or (stream and behavior.stream_error_after is not None)
        mid_stream_error = failing and stream and behavior.stream_error_after is not None

        if behavior.latency_ms and await self._pause(receive, behavior.latency_ms / 1000):
            raise DropConnection  # the client went away or the server is stopping
        if failing and not mid_stream_error:
            await self._fail(receive, send, body, behavior, call_id, key, _api_key_of(headers))
            return
        n = body.get("n")
        if n is not None and n != 1:
            detail = f"MockGateway does not support n > 1 (got n={n})"
            reply = build_error("bad_request", 400, ErrorContext(detail=detail), legacy=self.legacy)
            await self._send_error(send, reply, call_id)
            return

        answer = synthesize(body, behavior, self._next_tool_id)
        prompt = prompt_tokens(body.get("messages") or [])
        completion = completion_tokens(answer)
        usage: dict[str, int] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if behavior.usage:
            usage.update(behavior.usage)
            if "total_tokens" not in behavior.usage:
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if behavior.cost is not None:
            cost = behavior.cost
        else:
            # integer micro-dollars first, so 20 tokens cost 2e-05 and not 1.9999999999999998e-05
            micro = (
                usage["prompt_tokens"] * _INPUT_MICRO + usage["completion_tokens"] * _OUTPUT_MICRO
            )
            cost = micro / 1_000_000

        response_headers = self._success_headers(
            scope, body, behavior, model, call_id, cost, usage["total_tokens"], key, started
        )
        if stream:
            await self._stream(
                receive,
                send,
                body,
                behavior,
                model,
                call_id,
                answer,
                usage,
                response_headers,
                mid_stream_error,
            )
            return
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        message["refusal"] = answer.refusal
        payload = _json.dumps(
            {
                "id": f"chatcmpl-{call_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": answer.finish_reason,
                    }
                ],
                "usage": usage,
            }
        )
        response_headers.append(_JSON_CT)
        response_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    def _authorize(
        self, headers: dict[str, str], model: str
    ) -> tuple[VirtualKey | None, ErrorReply | None]:
        """Proxy key checks, in the proxy's order: key → model access → budget → rpm/tpm.

        Emulates the documented shapes; the real paths need the proxy's database.
        """
        legacy = self.legacy
        api_key = _api_key_of(headers)
        if api_key is None:
            return None, build_error("auth", None, ErrorContext(model=model), legacy=legacy)
        if self.master_key is not None and hmac.compare_digest(api_key, self.master_key):
            return None, None
        key = self.state.keys.get(api_key)
        if key is None:
            ctx = ErrorContext(model=model, api_key=api_key)
            return None, build_error("auth", None, ctx, legacy=legacy)
        if not key.allows(model):
            ctx = ErrorContext(model=model, api_key=api_key, allowed_models=key.models or ())
            return key, build_error("model_not_allowed", None, ctx, legacy=legacy)
        if key.max_budget is not None and key.spend >= key.max_budget:
            ctx = ErrorContext(
                model=model,
                api_key=api_key,
                spend=key.spend,
                max_budget=key.max_budget,
                key_alias=key.key_alias,
            )
            return key, build_error("budget_exceeded", None, ctx, legacy=legacy)
        now = time.monotonic()
        with self.state.lock:
            if key.rpm_limit is not None and key.requests_in_window(now) >= key.rpm_limit:
                reply = proxy_rate_limit(
                    api_key, "requests", key.rpm_limit, _RATE_WINDOW_S, legacy=legacy
                )
                return key, reply
            if key.tpm_limit is not None and key.tokens_in_window(now) >= key.tpm_limit:
                reply = proxy_rate_limit(
                    api_key, "tokens", key.tpm_limit, _RATE_WINDOW_S, legacy=legacy
                )
                return key, reply
            key.request_times.append(now)
        return key, None

    async def _fail(
        self,
        receive: Receive,
        send: Send,
        body: dict[str, Any],
        behavior: Behavior,
        call_id: str,
        key: VirtualKey | None,
        api_key: str | None,
    ) -> None:
        if behavior.error == "timeout" and await self._pause(receive, behavior.hang_s):
            raise DropConnection  # the client gave up (or the server is stopping)
        reply = self._error_reply(behavior, body, key, api_key)
        await self._send_error(send, reply, call_id, behavior)

    def _error_reply(
        self,
        behavior: Behavior,
        body: dict[str, Any],
        key: VirtualKey | None,
        api_key: str | None,
    ) -> ErrorReply:
        """The scripted error: ``error`` picks the body, else the ``status``; a bare
        ``fail_rate`` or ``stream_error_after`` fails as a 500."""
        kind = behavior.error or (
            kind_for_status(behavior.status) if behavior.status is not None else "server"
        )
        model = body.get("model") if isinstance(body.get("model"), str) else ""
        ctx = ErrorContext(
            model=str(model),
            path="/chat/completions",  # LiteLLM names the route, whatever the URL prefix
            api_key=key.key if key is not None else api_key,
            allowed_models=(key.models or ()) if key is not None else (),
            spend=key.spend if key is not None else None,
            max_budget=key.max_budget if key is not None else None,
            key_alias=key.key_alias if key is not None else None,
            prompt_tokens=prompt_tokens(body.get("messages") or []),
            guardrails=_guardrail_names(body),
            hang_s=behavior.hang_s,
        )
        status = behavior.status
        if status is None:
            status = default_status(kind, legacy=self.legacy)
        return build_error(kind, status, ctx, legacy=self.legacy)

    async def _send_error(
        self, send: Send, reply: ErrorReply, call_id: str, behavior: Behavior | None = None
    ) -> None:
        headers: list[tuple[bytes, bytes]] = [
            _JSON_CT,
            (b"x-litellm-call-id", _enc(call_id)),
            self._version_header,
            (b"x-litellm-response-cost", b"0"),
        ]
        extra = dict(reply.headers)
        if behavior is not None:
            if behavior.retry_after is not None:
                extra["retry-after"] = _num(behavior.retry_after).decode()
            if behavior.attempted_retries is not None:
                extra["x-litellm-attempted-retries"] = str(behavior.attempted_retries)
            if behavior.attempted_fallbacks is not None:
                extra["x-litellm-attempted-fallbacks"] = str(behavior.attempted_fallbacks)
            if behavior.headers:
                extra.update({k.lower(): str(v) for k, v in behavior.headers.items()})
        headers.extend((_enc(k), _enc(v)) for k, v in extra.items())
        payload = _json.dumps(reply.body)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _success_headers(
        self,
        scope: Scope,
        body: dict[str, Any],
        behavior: Behavior,
        model: str,
        call_id: str,
        cost: float,
        total_tokens: int,
        key: VirtualKey | None,
        started: float,
    ) -> list[tuple[bytes, bytes]]:
        key_spend = 0.0
        limit_requests = _PROVIDER_REQUEST_LIMIT
        remaining_requests = _PROVIDER_REQUEST_LIMIT - 1
        limit_tokens = _PROVIDER_TOKEN_LIMIT
        remaining_tokens = _PROVIDER_TOKEN_LIMIT - total_tokens
        reset_requests = b"1s"
        if key is not None:
            now = time.monotonic()
            with self.state.lock:
                key.spend += cost
                key_spend = key.spend
                key.token_log.append((now, total_tokens))
                if key.rpm_limit is not None:
                    limit_requests = key.rpm_limit
                    remaining_requests = max(0, key.rpm_limit - key.requests_in_window(now))
                    oldest = key.request_times[0] if key.request_times else now
                    reset_requests = f"{max(0, int(oldest + _RATE_WINDOW_S - now))}s".encode()
                if key.tpm_limit is not None:
                    limit_tokens = key.tpm_limit
                    remaining_tokens = max(0, key.tpm_limit - key.tokens_in_window(now))
        elapsed_ms = (time.perf_counter() - started) * 1000
        overhead_ms = max(0.0, elapsed_ms - behavior.latency_ms)
        headers = [
            (b"x-litellm-call-id", _enc(call_id)),
            (b"x-litellm-model-id", _enc(behavior.model_id or model)),
            (b"x-litellm-model-group", _enc(behavior.model_group or model)),
            (b"x-litellm-model-api-base", _enc(behavior.api_base or self._api_base(scope))),
            self._version_header,
            (b"x-litellm-response-cost", repr(float(cost)).encode()),
            (b"x-litellm-key-spend", repr(float(key_spend)).encode()),
            (b"x-litellm-response-duration-ms", f"{elapsed_ms:.3f}".encode()),
            (b"x-litellm-overhead-duration-ms", f"{overhead_ms:.3f}".encode()),
            (b"x-litellm-attempted-retries", str(behavior.attempted_retries or 0).encode()),
            (b"x-litellm-attempted-fallbacks", str(behavior.attempted_fallbacks or 0).encode()),
            (b"x-ratelimit-limit-requests", str(limit_requests).encode()),
            (b"x-ratelimit-remaining-requests", str(remaining_requests).encode()),
            (b"x-ratelimit-limit-tokens", str(limit_tokens).encode()),
            (b"x-ratelimit-remaining-tokens", str(max(0, remaining_tokens)).encode()),
            (b"x-ratelimit-reset-requests", reset_requests),
        ]
        if key is not None:
            if key.max_budget is not None:
                headers.append((b"x-litellm-key-max-budget", _num(key.max_budget)))
            if key.rpm_limit is not None:
                headers.append((b"x-litellm-key-rpm-limit", str(key.rpm_limit).encode()))
            if key.tpm_limit is not None:
                headers.append((b"x-litellm-key-tpm-limit", str(key.tpm_limit).encode()))
        if behavior.cache_key is not None:
            headers.append((b"x-litellm-cache-key", _enc(behavior.cache_key)))
        if "guardrails" in body:
            names = _guardrail_names(body)
            if names:
                headers.append((b"x-litellm-applied-guardrails", _enc(",".join(names))))
        if behavior.retry_after is not None:
            headers.append((b"retry-after", _num(behavior.retry_after)))
        if behavior.headers:
            headers.extend((_enc(k.lower()), _enc(str(v))) for k, v in behavior.headers.items())
        return headers

    def _api_base(self, scope: Scope) -> str:
        server = scope.get("server")
        base = self._api_bases.get(server)
        if base is None:
            host, port = server if server else ("127.0.0.1", 0)
            base = f"http://{host}:{port}/v1"
            self._api_bases[server] = base
        return base

    # -- streaming -------------------------------------------------------------------------
    async def _stream(
        self,
        receive: Receive,
        send: Send,
        body: dict[str, Any],
        behavior: Behavior,
        model: str,
        call_id: str,
        answer: Answer,
        usage: dict[str, int],
        headers: list[tuple[bytes, bytes]],
        mid_stream_error: bool,
    ) -> None:
        created = int(time.time())
        head = _json.dumps(
            {"id": f"chatcmpl-{call_id}", "object": "chat.completion.chunk", "created": created}
        )[:-1]
        head += b',"model":' + _json.dumps(model)
        prefix = b"data: " + head + b',"choices":[{"index":0,"delta":'
        suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'

        deltas = _deltas(answer)
        role: dict[str, Any] = {"role": "assistant", "content": "" if answer.content else None}
        frames = [prefix + _json.dumps(delta) + suffix for delta in deltas]
        finish = (
            prefix
            + b'{},"logprobs":null,"finish_reason":'
            + _json.dumps(answer.finish_reason)
            + b"}]}\n\n"
        )
        tail = [finish]
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            tail.append(
                b"data: " + head + b',"choices":[],"usage":' + _json.dumps(usage) + b"}\n\n"
            )
        tail.append(_DONE)

        n_frames = len(frames)
        cut_at = behavior.stream_cut_after
        error_at = behavior.stream_error_after if mid_stream_error else None
        stall_at = behavior.stall_after
        await send(
            {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + headers}
        )
        plain = (
            not behavior.ttft_ms
            and not behavior.chunk_delay_ms
            and cut_at is None
            and error_at is None
            and stall_at is None
        )
        role_frame = prefix + _json.dumps(role) + suffix
        if plain:  # the common case: the whole stream in one write
            whole = b"".join([role_frame, *frames, *tail])
            await send({"type": "http.response.body", "body": whole})
            return

        if behavior.ttft_ms and await self._pause(receive, behavior.ttft_ms / 1000):
            raise DropConnection
        pending: list[bytes] = [role_frame]
        delay = behavior.chunk_delay_ms / 1000
        for i in range(n_frames + 1):
            if cut_at is not None and i == min(cut_at, n_frames):
                await _flush(send, pending)
                raise DropConnection
            if error_at is not None and i == min(error_at, n_frames):
                pending.append(self._stream_error_frame(body, behavior))
                if not self.legacy:
                    pending.append(_DONE)
                await send({"type": "http.response.body", "body": b"".join(pending)})
                return
            if stall_at is not None and i == min(stall_at, n_frames):
                await _flush(send, pending)
                if await self._pause(receive, behavior.stall_s):
                    raise DropConnection
            if i == n_frames:
                break
            if delay and i > 0:
                await _flush(send, pending)
                if await self._pause(receive, delay):
                    raise DropConnection
            pending.append(frames[i])
        pending.extend(tail)
        await send({"type": "http.response.body", "body": b"".join(pending)})

    def _stream_error_frame(self, body: dict[str, Any], behavior: Behavior) -> bytes:
        reply = self._error_reply(behavior, body, None, None)
        return b"data: " + _json.dumps(reply.body) + b"\n\n"

    # -- other endpoints -------------------------------------------------------------------
    def _readiness(self) -> dict[str, Any]:
        return {
            "status": "healthy",
            "db": "Not connected",
            "cache": None,
            "litellm_version": self.version,
            "success_callbacks": [],
            "last_updated": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        }

    async def _models(self, headers: dict[str, str], send: Send) -> None:
        names = self.state.model_names()
        if self.require_auth or self.state.keys:
            api_key = _api_key_of(headers)
            is_master = (
                api_key is not None
                and self.master_key is not None
                and hmac.compare_digest(api_key, self.master_key)
            )
            key = self.state.keys.get(api_key) if api_key is not None else None
            if not is_master and key is None:
                reply = build_error("auth", None, ErrorContext(api_key=api_key), legacy=self.legacy)
                await self._send_error(send, reply, str(uuid.uuid4()))
                return
            if key is not None and key.models:
                names = [m for m in key.models if m not in ("*", "all-proxy-models")]
        data = [
            {"id": name, "object": "model", "created": 1677610602, "owned_by": "openai"}
            for name in names
        ]
        await _send_json(send, 200, {"object": "list", "data": data})

    async def _key_info(self, scope: Scope, headers: dict[str, str], send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        api_key = _api_key_of(headers)
        wanted = query.get("key", [api_key])[0]
        key = self.state.keys.get(wanted) if wanted else None
        is_master = (
            api_key is not None
            and self.master_key is not None
            and hmac.compare_digest(api_key, self.master_key)
        )
        if key is None or not (is_master or api_key == wanted):
            reply = build_error("auth", None, ErrorContext(api_key=api_key), legacy=self.legacy)
            await self._send_error(send, reply, str(uuid.uuid4()))
            return
        await _send_json(send, 200, {"key": wanted, "info": key.info()})

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        if self.control_token is not None:
            token = _headers_of(scope).get(CONTROL_TOKEN_HEADER, "")
            if not hmac.compare_digest(token, self.control_token):
                await _send_json(send, 403, {"detail": "bad control token"})
                return
        action = scope["path"].removeprefix("/__mock__/")
        query = parse_qs(scope.get("query_string", b"").decode())
        model = query.get("model", [None])[0]
        state = self.state
        try:
            data = _parse(raw) or {}
            result: Any = None
            if action == "script":
                behaviors = [Behavior.from_dict(b) for b in data["behaviors"]]
                state.script(str(data["model"]), behaviors)
            elif action == "reset":
                state.reset()
            elif action == "add_key":
                state.add_key(key_from_spec(data))
            elif action == "requests":
                result = [r.to_dict() for r in state.requests(model)]
            elif action == "count":
                result = state.count(model)
            elif action == "key_info":
                key = state.keys.get(query.get("key", [""])[0])
                result = key.info() if key is not None else None
            else:
                await _send_json(send, 404, {"detail": f"unknown control action {action!r}"})
                return
        except (KeyError, TypeError, ValueError) as exc:
            await _send_json(send, 400, {"detail": f"{type(exc).__name__}: {exc}"})
            return
        await _send_json(send, 200, {"ok": True, "result": result})


def _deltas(answer: Answer) -> list[dict[str, Any]]:
    if answer.refusal is not None:
        return [{"refusal": piece} for piece in split_text(answer.refusal)]
    out: list[dict[str, Any]] = [{"content": piece} for piece in split_text(answer.content or "")]
    for index, call in enumerate(answer.tool_calls):
        fn = call["function"]
        out.append(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": ""},
                    }
                ]
            }
        )
        arguments: str = fn["arguments"]
        step = max(1, -(-len(arguments) // 3))
        for start in range(0, len(arguments), step):
            piece = arguments[start : start + step]
            out.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return out


async def _flush(send: Send, pending: list[bytes]) -> None:
    if pending:
        await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
        pending.clear()


def _headers_of(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _parse(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = _json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def _send_json(send: Send, status: int, obj: Any) -> None:
    payload = _json.dumps(obj)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON_CT, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
