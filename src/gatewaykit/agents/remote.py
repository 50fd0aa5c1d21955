"""RemoteAgentChatModel: an assistant on a LangGraph server served as a LangChain chat model.

Runs go through ``langgraph_sdk``: stateless runs (``runs.wait``, ``runs.stream`` with
``stream_mode="messages-tuple"``), or a server thread when a ``thread_id`` is given. The answer is
the agent's final AI message as the server stored it: content untouched (text or content
blocks), ids kept, its usage when the server's model reported one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from gatewaykit._http import shared_async_transport
from gatewaykit.agents._common import (
    AgentError,
    HeldThreads,
    StopCutter,
    ThreadedAgentModel,
    new_messages,
    text_of,
)
from gatewaykit.agents._sync import iterate_sync, run_sync
from gatewaykit.errors import (
    AuthenticationFailed,
    GatewayConnectionError,
    GatewayError,
    GatewayTimeout,
    InvalidRequest,
    ModelAccessDenied,
    ModelNotFound,
    RateLimited,
    UpstreamError,
)

if TYPE_CHECKING:
    from langgraph_sdk.schema import StreamMode

__all__ = ["RemoteAgentChatModel"]

_STREAM_MODES: list[StreamMode] = ["messages-tuple", "values"]

# A 4xx is the caller's or the config's: typed by status, never an agent failure to retry.
_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: ModelAccessDenied,
    404: ModelNotFound,
    409: InvalidRequest,
    422: ModelNotFound,
    429: RateLimited,
}


class RemoteAgentChatModel(ThreadedAgentModel):
    """An assistant (or graph id) of a LangGraph server as a chat model.

    Example::

        from gatewaykit.agents import RemoteAgentChatModel

        model = RemoteAgentChatModel(url="http://127.0.0.1:2024", assistant_id="agent")
        msg = model.invoke("What is 6 * 7?")
        for chunk in model.stream("Tell me a story", thread_id="t-1"):
            print(chunk.content, end="")

    Without a ``thread_id`` every call is a stateless run that receives the whole conversation.
    With one (call kwarg, ``config["configurable"]["thread_id"]`` or the field), the run goes to
    that server thread (created on first use); a thread that already holds messages receives
    only those after the last AI message of the input, a new or empty one the whole history,
    system prompt included. Streaming forwards the tokens of the agent's model calls except
    those of turns that call tools; usage is reported once, on the closing chunk.

    The caller's run config reaches the server run: ``recursion_limit``, its own
    ``configurable`` values and ``tags`` (over :attr:`run_config`), and its ``metadata``.
    ``timeout`` bounds the whole call, invoke and stream alike
    (:class:`~gatewaykit.GatewayTimeout`); a server that is down fails at once
    (:class:`~gatewaykit.GatewayConnectionError`). Failures
    of a run that reached the server are :class:`AgentError` and never retryable (its tools may
    have run); a 4xx is the typed error of its status (an unknown assistant:
    :class:`~gatewaykit.ModelNotFound`). One HTTP client per model, on a process-wide pool.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    url: str
    """Base URL of the LangGraph server."""
    assistant_id: str
    """Assistant id or graph id on that server."""
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    """Sent as ``x-api-key``; when None, ``LANGGRAPH_API_KEY`` (then ``LANGSMITH_API_KEY``,
    ``LANGCHAIN_API_KEY``) from the environment, as langgraph_sdk reads them."""
    headers: dict[str, str] | None = Field(default=None, exclude=True, repr=False)
    """Extra request headers."""
    thread_id: str | None = None
    """Default server thread; None means stateless runs."""
    timeout: float | None = None
    """Longest wait for a whole call, seconds (None: langgraph_sdk's own limits, 5 s to
    connect, 300 s between reads)."""
    run_config: dict[str, Any] | None = None
    """Passed as the run's ``config`` (e.g. ``{"recursion_limit": 50}``); a call's own config
    wins key by key."""

    _http: Any = PrivateAttr(default=None)
    _held: HeldThreads = PrivateAttr(default_factory=HeldThreads)

    @property
    def name_of_agent(self) -> str:
        return self.assistant_id

    @property
    def _llm_type(self) -> str:
        return "gatewaykit-remote-agent"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"url": self.url, "assistant_id": self.assistant_id}

    # ------------------------------------------------------------------ the server

    def _client(self) -> Any:
        """This model's langgraph_sdk client, built once on the shared transport."""
        if self._http is None:
            import httpx
            from langgraph_sdk.client import LangGraphClient

            timeout = (
                httpx.Timeout(self.timeout)
                if self.timeout is not None
                else httpx.Timeout(connect=5, read=300, write=300, pool=5)
            )
            http = httpx.AsyncClient(
                base_url=self.url,
                transport=shared_async_transport(),
                timeout=timeout,
                headers=_headers(self.api_key, self.headers),
            )
            self._http = LangGraphClient(http)
        return self._http

    def _new_run(self, stop: list[str] | None, kwargs: dict[str, Any]) -> _RemoteRun:
        run = _RemoteRun(self.assistant_id, kwargs.get("thread_id") or self.thread_id, self.timeout)
        run.cutter = StopCutter(stop if stop is not None else self.stop)
        return run

    async def _run_kw(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], thread_id: str | None
    ) -> dict[str, Any]:
        """The run's arguments: the messages the thread does not hold yet, the run config."""
        sent = list(messages)
        if thread_id:
            trimmed = new_messages(messages)
            if len(trimmed) < len(sent) and await self._holds_history(str(thread_id)):
                sent = trimmed
        run_kw: dict[str, Any] = {"input": {"messages": [_to_dict(m) for m in sent]}}
        if thread_id:
            run_kw["if_not_exists"] = "create"
        caller = kwargs.get("inner_config") or {}
        config = dict(self.run_config or {})
        if "recursion_limit" in caller:
            config["recursion_limit"] = caller["recursion_limit"]
        if caller.get("configurable"):
            config["configurable"] = {
                **(config.get("configurable") or {}),
                **caller["configurable"],
            }
        if caller.get("tags"):
            config["tags"] = [*(config.get("tags") or []), *caller["tags"]]
        if config:
            run_kw["config"] = config
        if caller.get("metadata"):
            run_kw["metadata"] = caller["metadata"]
        return run_kw

    async def _holds_history(self, thread_id: str) -> bool:
        """Whether the server thread already holds messages (a new or empty one gets all)."""
        if thread_id in self._held:
            return True
        try:
            state = await self._client().threads.get_state(thread_id)
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status == 404:
                return False  # not created yet: this run creates it
            raise
        values = state.get("values") if isinstance(state, Mapping) else None
        held = bool(isinstance(values, Mapping) and values.get("messages"))
        if held:
            self._held.add(thread_id)
        return held

    async def _answer(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> AIMessage:
        run = self._new_run(stop, kwargs)
        try:
            async with asyncio.timeout(self.timeout):  # the history check included
                run.run_kw = await self._run_kw(messages, kwargs, run.thread_id)
                run.sent = True
                state = await self._client().runs.wait(run.thread, self.assistant_id, **run.run_kw)
        except AgentError:
            raise
        except Exception as exc:  # a cancellation is not a failure: it propagates as it is
            raise run.failed(exc) from exc
        run.on_values(state)
        answer = run.final_message()
        self._held.add(run.thread_id)
        return answer

    async def _chunks(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> AsyncIterator[ChatGenerationChunk]:
        run = self._new_run(stop, kwargs)
        try:
            async with asyncio.timeout(self.timeout):  # the history check included
                run.run_kw = await self._run_kw(messages, kwargs, run.thread_id)
                run.sent = True
                parts = self._client().runs.stream(
                    run.thread, self.assistant_id, stream_mode=_STREAM_MODES, **run.run_kw
                )
                async for part in parts:
                    out = run.on_part(part.event, part.data)
                    if out is not None:
                        yield out
        except AgentError:
            raise
        except Exception as exc:  # a cancellation or a closed stream propagates as it is
            raise run.failed(exc) from exc
        closing = run.closing_chunk()
        self._held.add(run.thread_id)
        yield closing

    # ------------------------------------------------------------------ chat-model hooks

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = run_sync(lambda: self._answer(messages, stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = await self._answer(messages, stop, kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from iterate_sync(lambda: self._chunks(messages, stop, kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self._chunks(messages, stop, kwargs):
            yield chunk


def _headers(api_key: SecretStr | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    """langgraph_sdk's request headers: its user agent, the extra ones, ``x-api-key``."""
    import os

    import langgraph_sdk

    headers = {"User-Agent": f"langgraph-sdk-py/{langgraph_sdk.__version__}", **(extra or {})}
    key = api_key.get_secret_value() if api_key is not None else None
    if key is None:
        for name in ("LANGGRAPH_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
            if os.environ.get(name):
                key = os.environ[name]
                break
    if key:
        headers["x-api-key"] = key
    return headers


class _RemoteRun:
    """One server run: what was streamed, and how the answer is read from the final state."""

    def __init__(self, assistant_id: str, thread_id: str | None, timeout: float | None) -> None:
        self.name = assistant_id
        self.thread_id = thread_id
        self.timeout = timeout
        self.thread: Any = thread_id  # langgraph_sdk's overloads spell "no thread" separately
        self.run_kw: dict[str, Any] = {}
        self.sent = False
        """Whether the run was sent (before: only the thread's history was asked for)."""
        self.state: Any = None
        self.forwarded: dict[str, str] = {}
        self.tool_turns: set[str] = set()
        self.cutter = StopCutter(None)

    def failed(self, exc: BaseException) -> GatewayError:
        """The typed error of a failed call. Only what surely never reached the server (no
        connection, a 429, a 5xx before the run) may be retried; a run that reached it may have
        run its tools, so its failure, a timeout included, is not retryable."""
        import httpx

        where = f"remote agent {self.name!r}"
        common: dict[str, Any] = {"model_group": self.name}
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            connect = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            limit = f" within {self.timeout:g} s" if self.timeout is not None else ""
            err: GatewayError = GatewayTimeout(f"{where} did not answer{limit}", **common)
            err.is_retryable = connect or not self.sent  # a sent run may still be running
            return err
        if isinstance(exc, httpx.ConnectError):
            return GatewayConnectionError(f"{where} is unreachable at its url: {exc}", **common)
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            # An HTTP answer from the server: its own explanation beats httpx's generic one.
            try:
                detail = str(response.text)[:500]  # type: ignore[union-attr]
            except Exception:
                detail = str(exc)
            message = f"{where} failed: HTTP {status}: {detail}"
            typed = _BY_STATUS.get(status)
            if typed is not None:
                return typed(message, status=status, **common)
            if status >= 500 and not self.sent:
                return UpstreamError(message, status=status, **common)
        elif type(exc) is Exception:
            message = f"{where} failed: {exc}"  # langgraph_sdk's run-error wrapper
        else:
            message = f"{where} failed: {type(exc).__name__}: {exc}"
        return AgentError(
            message,
            agent=self.name,
            thread_id=self.thread_id,
            partial_text="".join(self.forwarded.values()),
            status=status if isinstance(status, int) else None,
        )

    def on_values(self, state: Any) -> None:
        self.state = state

    def on_part(self, event: str, data: Any) -> ChatGenerationChunk | None:
        if event == "values":
            self.state = data
            return None
        if event == "error":
            detail = data.get("message", data) if isinstance(data, Mapping) else data
            error = data.get("error", "error") if isinstance(data, Mapping) else "error"
            raise AgentError(
                f"remote agent {self.name!r} failed: {error}: {detail}",
                agent=self.name,
                thread_id=self.thread_id,
                partial_text="".join(self.forwarded.values()),
            )
        if not event.startswith("messages") or not isinstance(data, list | tuple):
            return None
        message = data[0]
        if not isinstance(message, Mapping) or message.get("type") not in ("AIMessageChunk", "ai"):
            return None
        key = str(message.get("id") or "")
        if message.get("tool_call_chunks") or message.get("tool_calls"):
            self.tool_turns.add(key)
            return None
        content = message.get("content")
        if key in self.tool_turns or not content:
            return None
        text = content if isinstance(content, str) else ""
        self.forwarded[key] = self.forwarded.get(key, "") + text
        if self.cutter.stop:
            released = self.cutter.feed(text_of(content))
            if not released:
                return None
            return ChatGenerationChunk(message=AIMessageChunk(content=released))
        return ChatGenerationChunk(message=AIMessageChunk(content=content))

    def closing_chunk(self) -> ChatGenerationChunk:
        final = self.final_message()
        # Only a tail held back by the stop sequences is left of a streamed answer.
        content: Any = self.cutter.flush() if (final.id or "") in self.forwarded else final.content
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=content,
                usage_metadata=final.usage_metadata,
                response_metadata=final.response_metadata,
            ),
            generation_info={"agent": final.response_metadata["agent"]},
        )

    def final_message(self) -> AIMessage:
        state = self.state
        if isinstance(state, Mapping) and state.get("__error__"):
            raise AgentError(
                f"remote agent {self.name!r} failed: {state['__error__']}",
                agent=self.name,
                thread_id=self.thread_id,
            )
        if isinstance(state, Mapping) and state.get("__interrupt__"):
            raise AgentError(
                f"remote agent {self.name!r} stopped on an interrupt and awaits input",
                agent=self.name,
                thread_id=self.thread_id,
            )
        messages = state.get("messages") if isinstance(state, Mapping) else None
        last = messages[-1] if messages else None
        if not isinstance(last, Mapping) or last.get("type") not in ("ai", "AIMessageChunk"):
            what = last.get("type") if isinstance(last, Mapping) else "no message"
            raise AgentError(
                f"remote agent {self.name!r} ended without an AI message (last: {what})",
                agent=self.name,
                thread_id=self.thread_id,
            )
        if last.get("tool_calls"):
            names = ", ".join(str(tc.get("name")) for tc in last["tool_calls"])
            raise AgentError(
                f"remote agent {self.name!r} ended on tool calls ({names}) instead of an answer",
                agent=self.name,
                thread_id=self.thread_id,
            )
        turn = [m for m in _this_run(list(messages or [])) if m.get("type") == "ai"]
        info = {
            "name": self.name,
            "thread_id": self.thread_id,
            "steps": len(turn),
            "tool_calls": [str(tc.get("name")) for m in turn for tc in m.get("tool_calls") or []],
        }
        extra = {
            k: v for k, v in (last.get("additional_kwargs") or {}).items() if k != "tool_calls"
        }
        return AIMessage(
            content=StopCutter(self.cutter.stop).cut(last.get("content") or ""),
            id=last.get("id"),
            name=last.get("name"),
            additional_kwargs=extra,
            response_metadata={**(last.get("response_metadata") or {}), "agent": info},
            usage_metadata=last.get("usage_metadata") or None,
        )


def _this_run(messages: list[Any]) -> list[Mapping[str, Any]]:
    """The messages of the last turn: everything after the last human message."""
    start = 0
    for i, m in enumerate(messages):
        if isinstance(m, Mapping) and m.get("type") == "human":
            start = i
    return [m for m in messages[start:] if isinstance(m, Mapping)]


def _to_dict(message: BaseMessage) -> dict[str, Any]:
    """A message as the server's ``add_messages`` reads it (content left as is)."""
    out: dict[str, Any] = {"type": message.type, "content": message.content}
    if message.id:
        out["id"] = message.id
    if message.name:
        out["name"] = message.name
    if isinstance(message, AIMessage) and message.tool_calls:
        out["tool_calls"] = message.tool_calls
    tool_call_id = getattr(message, "tool_call_id", None)
    if tool_call_id:
        out["tool_call_id"] = tool_call_id
    return out
