"""A2AAgentChatModel: any agent that speaks the A2A protocol, served as a LangChain chat model.

The agent card is read once (from the agent's base URL or its card URL) and cached; calls then go
through the official ``a2a-sdk`` client: ``message/send`` for ``invoke``, ``message/stream`` for
``stream`` (falling back to ``message/send`` when the card says the agent cannot stream). A task
that does not complete (failed, rejected, canceled, or waiting for input or auth) raises
:class:`A2ATaskError` instead of returning an empty or partial answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
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
from gatewaykit.agents.a2a_parts import blocks_to_parts
from gatewaykit.errors import AuthenticationFailed, GatewayConnectionError, GatewayTimeout

__all__ = ["A2AAgentChatModel", "A2ATaskError"]

TaskOutcome = Literal["failed", "rejected", "canceled", "input-required", "auth-required"]

_CARD_PATH = "/.well-known/agent-card.json"
# TaskState enum values of a2a-sdk 1.x, named as the A2A spec spells them on the wire.
_STATE_NAMES = {
    0: "unspecified",
    1: "submitted",
    2: "working",
    3: "completed",
    4: "failed",
    5: "canceled",
    6: "input-required",
    7: "rejected",
    8: "auth-required",
}
_NOT_DONE = ("unspecified", "submitted", "working")
_STOPPED: tuple[TaskOutcome, ...] = (
    "failed",
    "rejected",
    "canceled",
    "input-required",
    "auth-required",
)


class A2ATaskError(AgentError):
    """An A2A task ended without an answer.

    ``state`` says how: ``"failed"``, ``"rejected"``, ``"canceled"`` (the agent gave up or
    refused), ``"input-required"`` or ``"auth-required"`` (the agent waits for the caller;
    answer in the same ``thread_id`` to continue). ``task_id``/``context_id`` name the task;
    the agent's own explanation, when it sent one, is in the message and in ``detail``.

    Example::

        try:
            answer = model.invoke("book a table", thread_id="t-1")
        except A2ATaskError as e:
            if e.state == "input-required":
                answer = model.invoke(ask_user(e.detail), thread_id="t-1")
    """

    def __init__(
        self,
        message: str,
        *,
        state: TaskOutcome,
        task_id: str | None = None,
        context_id: str | None = None,
        detail: str = "",
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.state = state
        self.task_id = task_id
        self.context_id = context_id
        self.detail = detail

    is_retryable = False
    """The task reached the agent, which may have run its tools: never retried (see
    :class:`~gatewaykit.agents.AgentError`)."""


class A2AAgentChatModel(ThreadedAgentModel):
    """An A2A agent as a chat model: messages in, the agent's answer out.

    Example::

        from gatewaykit.agents import A2AAgentChatModel

        model = A2AAgentChatModel(url="http://127.0.0.1:9999")
        print(model.invoke("What is 6 * 7?").content)
        for chunk in model.stream("Tell me a story", thread_id="t-1"):
            print(chunk.content, end="")

    ``url`` is the agent's base URL (its card is at ``<url>/.well-known/agent-card.json``) or the
    card URL itself (any URL whose path contains ``/.well-known/``, query string kept, e.g. a
    LangGraph server's ``/.well-known/agent-card.json?assistant_id=<uuid>``); ``card_url``
    overrides both. Calls go to the JSON-RPC interface the card names.

    Without a ``thread_id`` each call is a new A2A context that receives the whole conversation
    as one text message (one human message is sent as is; a longer conversation as a
    ``role: text`` transcript). With one (call kwarg, ``config["configurable"]["thread_id"]`` or
    the field) it is the A2A ``contextId``. Once this model has run a turn on a context, only
    the messages after the last AI message are sent (the agent keeps the rest); a context it
    has not run a turn on receives the whole history, system prompt included.

    A2A has no usage field: ``usage_metadata`` is what the agent reports under a ``usage`` key
    of its artifact, task, status or message metadata (``input_tokens``/``output_tokens`` or
    ``prompt_tokens``/``completion_tokens``; gatewaykit's own server does this), else None. With
    ``estimate_usage=True`` a missing usage is estimated at 4 characters per token and marked
    ``response_metadata["agent"]["usage_estimated"] = True``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    url: str
    """The agent's base URL, or its agent-card URL."""
    card_url: str | None = None
    """Where the agent card is, when it is neither ``url`` nor under it."""
    agent_name: str | None = None
    """Name used in errors and metadata; the card's name when None."""
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    """Sent on every request as ``api_key_header`` (``Authorization: Bearer <key>`` by default)."""
    api_key_header: str = "Authorization"
    """The header carrying ``api_key``; e.g. ``x-api-key`` for a LangGraph server."""
    headers: dict[str, str] | None = Field(default=None, exclude=True, repr=False)
    """Extra request headers."""
    thread_id: str | None = None
    """Default A2A context; None means a new context per call."""
    timeout: float | None = 60.0
    """Seconds to wait for a connection, an answer, or the next streamed event (None: no limit).
    Also caps the whole wait when a non-blocking agent has to be polled."""
    poll_interval: float = 0.5
    """Seconds between ``tasks/get`` calls while an agent's task is still running."""
    estimate_usage: bool = False
    """Estimate token usage when the agent reports none (see the class docs)."""

    _card: Any = PrivateAttr(default=None)
    _httpx: httpx.AsyncClient | None = PrivateAttr(default=None)
    _held: HeldThreads = PrivateAttr(default_factory=HeldThreads)

    # ------------------------------------------------------------------ LangChain surface

    @property
    def _llm_type(self) -> str:
        return "gatewaykit-a2a-agent"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"url": self.url, "card_url": self.card_url}

    @property
    def agent_card(self) -> Any:
        """The cached agent card (an ``a2a.types.AgentCard``), or None before the first call."""
        return self._card

    async def aget_agent_card(self, *, refresh: bool = False) -> Any:
        """Fetch (or return the cached) agent card; ``refresh=True`` reads it again."""
        if refresh:
            self._card = None
        async with self._http() as http:
            return await self._resolve_card(http)

    def get_agent_card(self, *, refresh: bool = False) -> Any:
        """Sync twin of :meth:`aget_agent_card`."""
        return run_sync(lambda: self.aget_agent_card(refresh=refresh))

    # ------------------------------------------------------------------ chat-model hooks

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = run_sync(lambda: self._send(messages, stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = await self._send(messages, stop, kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # langchain-core reports each chunk to the callbacks (on_llm_new_token) itself.
        yield from iterate_sync(lambda: self._stream_events(messages, stop, kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self._stream_events(messages, stop, kwargs):
            yield chunk

    # ------------------------------------------------------------------ A2A calls

    @property
    def name_of_agent(self) -> str:
        if self.agent_name:
            return self.agent_name
        card_name = getattr(self._card, "name", "")
        return str(card_name) if card_name else self.url

    def _card_location(self) -> str:
        if self.card_url:
            return self.card_url
        if "/.well-known/" in urlsplit(self.url).path:
            return self.url
        return self.url.rstrip("/") + _CARD_PATH

    @asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx.AsyncClient]:
        """This model's HTTP client, built once on the process's shared transport (a new
        client per call would load an SSL context on the event loop each time)."""
        client = self._httpx
        if client is None:
            from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, VERSION_HEADER

            headers = {VERSION_HEADER: PROTOCOL_VERSION_CURRENT, **(self.headers or {})}
            if self.api_key is not None:
                secret = self.api_key.get_secret_value()
                if self.api_key_header.lower() == "authorization":
                    headers["Authorization"] = f"Bearer {secret}"
                else:
                    headers[self.api_key_header] = secret
            client = self._httpx = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(self.timeout),
                transport=shared_async_transport(),
            )
        yield client

    async def _resolve_card(self, http: httpx.AsyncClient) -> Any:
        if self._card is not None:
            return self._card
        from a2a.client import A2ACardResolver, AgentCardResolutionError

        where = self._card_location()
        try:
            card = await A2ACardResolver(http, where, agent_card_path="").get_agent_card()
        except AgentCardResolutionError as exc:
            raise self._card_error(where, exc) from exc
        if not any(i.protocol_binding == "JSONRPC" for i in card.supported_interfaces):
            raise AgentError(
                f"the agent card at {where} names no JSON-RPC interface "
                f"(found: {[i.protocol_binding for i in card.supported_interfaces] or 'none'}); "
                "point `url` at an A2A agent that serves JSON-RPC",
                agent=self.agent_name or card.name or self.url,
            )
        self._card = card
        return card

    def _card_error(self, where: str, exc: Exception) -> Exception:
        name = self.agent_name or self.url
        cause = exc.__cause__
        status = getattr(exc, "status_code", None)
        if isinstance(cause, httpx.TimeoutException):
            return GatewayTimeout(
                f"A2A agent {name!r}: no agent card from {where} within {self.timeout} s",
                model_group=name,
            )
        if isinstance(cause, httpx.RequestError):
            return GatewayConnectionError(
                f"A2A agent {name!r} is unreachable at {where}: {type(cause).__name__}: {cause}",
                model_group=name,
            )
        if status in (401, 403):
            return AuthenticationFailed(
                f"A2A agent {name!r} refused the credentials for its card at {where}",
                status=status,
                model_group=name,
            )
        hint = (
            "set `url` to the agent's base URL (its card is at <url>"
            f"{_CARD_PATH}) or to the card URL itself, or set `card_url`"
        )
        what = f"HTTP {status}" if status else str(exc)
        return AgentError(
            f"could not read the agent card of A2A agent {name!r} at {where} ({what}); {hint}",
            agent=name,
            status=status if isinstance(status, int) else None,
        )

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> _A2ARun:
        from a2a.types import Message, Part, Role, SendMessageRequest

        thread_id = kwargs.get("thread_id") or self.thread_id
        # A context this model ran a turn on holds the conversation: send what is new. Any
        # other (new to the agent, or never seen here) gets the whole history.
        sent = new_messages(messages) if thread_id and thread_id in self._held else list(messages)
        text = _render(sent)
        files = [p for m in sent for p in blocks_to_parts(m.content)]
        if not text and not files:
            raise ValueError(
                "nothing to send to the A2A agent: the input has no text after the last AI "
                "message (with a thread_id, only the new messages are sent)"
            )
        parts = ([Part(text=text)] if text else []) + files
        message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=parts)
        if thread_id:
            message.context_id = str(thread_id)
        request = SendMessageRequest(message=message)
        return _A2ARun(
            self.name_of_agent,
            thread_id,
            request,
            text,
            self.estimate_usage,
            self.url,
            stop=stop if stop is not None else self.stop,
        )

    async def _client(self, http: httpx.AsyncClient, *, streaming: bool) -> Any:
        from a2a.client import ClientConfig, ClientFactory
        from a2a.utils.constants import TransportProtocol

        card = await self._resolve_card(http)
        config = ClientConfig(streaming=streaming, httpx_client=http)
        factory = ClientFactory(config)
        factory.register(TransportProtocol.JSONRPC, _jsonrpc_transport(http))
        try:
            return factory.create(card)
        except ValueError as exc:
            raise AgentError(
                f"cannot talk to A2A agent {self.name_of_agent!r}: {exc}", agent=self.name_of_agent
            ) from exc

    async def _send(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> AIMessage:
        run = self._request(messages, stop, kwargs)
        async with self._http() as http:
            client = await self._client(http, streaming=False)
            run.name = self.name_of_agent
            try:
                async for event in client.send_message(run.request):
                    run.on_event(event)
                await self._poll(client, run)
            except AgentError:
                raise
            except Exception as exc:
                raise self._call_error(run, exc) from exc
        answer = run.result()
        self._held.add(run.thread_id)
        return answer

    async def _stream_events(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> AsyncIterator[ChatGenerationChunk]:
        run = self._request(messages, stop, kwargs)
        cutter = StopCutter(run.stop)
        async with self._http() as http:
            client = await self._client(http, streaming=True)
            run.name = self.name_of_agent
            try:
                async for event in client.send_message(run.request):
                    delta = cutter.feed(run.on_event(event))
                    if delta:
                        yield ChatGenerationChunk(message=AIMessageChunk(content=delta))
                    if run.stopped():
                        break
                async for delta in self._poll_deltas(client, run):
                    if released := cutter.feed(delta):
                        yield ChatGenerationChunk(message=AIMessageChunk(content=released))
            except AgentError:
                raise
            except Exception as exc:
                raise self._call_error(run, exc) from exc
        final = run.result()
        self._held.add(run.thread_id)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=cutter.feed(run.closing_text()) + cutter.flush(),
                usage_metadata=final.usage_metadata,
                response_metadata=final.response_metadata,
            ),
            generation_info={"agent": final.response_metadata["agent"]},
        )

    async def _poll(self, client: Any, run: _A2ARun) -> None:
        async for _ in self._poll_deltas(client, run):
            pass

    async def _poll_deltas(self, client: Any, run: _A2ARun) -> AsyncIterator[str]:
        """Follow a task the agent left running (non-blocking agents) with ``tasks/get``."""
        from a2a.types import GetTaskRequest, StreamResponse

        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while run.pending() and run.task_id:
            if deadline is not None and time.monotonic() > deadline:
                raise GatewayTimeout(
                    f"A2A agent {run.name!r}: task {run.task_id} still {run.state} after "
                    f"{self.timeout} s",
                    model_group=run.name,
                )
            await asyncio.sleep(self.poll_interval)
            task = await client.get_task(GetTaskRequest(id=run.task_id))
            delta = run.on_event(StreamResponse(task=task))
            if delta:
                yield delta

    def _call_error(self, run: _A2ARun, exc: Exception) -> Exception:
        from a2a.client import A2AClientTimeoutError

        name = run.name
        partial = run.streamed
        if isinstance(exc, A2AClientTimeoutError | httpx.TimeoutException):
            return GatewayTimeout(
                f"A2A agent {name!r} did not answer within {self.timeout} s",
                model_group=name,
            )
        http_error = _find_cause(exc, httpx.HTTPStatusError)
        if isinstance(http_error, httpx.HTTPStatusError):
            status = http_error.response.status_code
            if status in (401, 403):
                return AuthenticationFailed(
                    f"A2A agent {name!r} refused the credentials (HTTP {status}); "
                    "check `api_key` and `api_key_header`",
                    status=status,
                    model_group=name,
                )
            return AgentError(
                f"A2A agent {name!r} failed: HTTP {status}",
                agent=name,
                thread_id=run.thread_id,
                partial_text=partial,
                status=status,
            )
        request_error = _find_cause(exc, httpx.RequestError)
        if isinstance(request_error, httpx.RequestError) and not partial:
            return GatewayConnectionError(
                f"A2A agent {name!r} is unreachable: {type(request_error).__name__}: "
                f"{request_error}",
                model_group=name,
            )
        return AgentError(
            f"A2A agent {name!r} failed: {type(exc).__name__}: {exc}",
            agent=name,
            thread_id=run.thread_id,
            partial_text=partial,
        )


class _A2ARun:
    """One A2A call: the events received, the text yielded so far, and the final answer."""

    def __init__(
        self,
        name: str,
        thread_id: str | None,
        request: Any,
        sent_text: str,
        estimate_usage: bool,
        url: str,
        *,
        stop: list[str] | None = None,
    ) -> None:
        self.name = name
        self.stop = stop
        self.thread_id = thread_id
        self.request = request
        self.sent_text = sent_text
        self.estimate_usage = estimate_usage
        self.url = url
        self.task_id: str | None = None
        self.context_id: str | None = thread_id
        self.state = "unspecified"
        self.artifacts: dict[str, str] = {}
        self.progress = ""
        self.segments: list[str] = []
        self.status_text = ""
        self.reply: str | None = None
        self.usage: UsageMetadata | None = None
        self.streamed = ""
        self.answer_sent = ""

    # ------------------------------------------------------------------ events

    def on_event(self, event: Any) -> str:
        """Record one ``StreamResponse``; return the answer text it adds (never repeated)."""
        kind = event.WhichOneof("payload")
        if kind == "task":
            self._on_task(event.task)
        elif kind == "message":
            self.reply = _parts_text(event.message.parts)
            self.state = "completed"
            self._ids(event.message.task_id, event.message.context_id)
            self._usage_from(event.message.metadata)
        elif kind == "status_update":
            update = event.status_update
            self._ids(update.task_id, update.context_id)
            self._on_status(update.status)
            self._usage_from(update.metadata)
        elif kind == "artifact_update":
            update = event.artifact_update
            self._ids(update.task_id, update.context_id)
            artifact = update.artifact
            text = _parts_text(artifact.parts)
            key = artifact.artifact_id or f"artifact-{len(self.artifacts)}"
            self.artifacts[key] = self.artifacts.get(key, "") + text if update.append else text
            self._usage_from(artifact.metadata)
        return self._delta()

    def _on_task(self, task: Any) -> None:
        self._ids(task.id, task.context_id)
        self._on_status(task.status, snapshot=True)
        if task.artifacts:
            self.artifacts = {
                (a.artifact_id or f"artifact-{i}"): _parts_text(a.parts)
                for i, a in enumerate(task.artifacts)
            }
            for a in task.artifacts:
                self._usage_from(a.metadata)
        self._usage_from(task.metadata)
        if self.state == "completed" and not self.artifacts and not self.status_text:
            from a2a.types import Role

            agent = [m for m in task.history if m.role == Role.ROLE_AGENT]
            if agent:
                self.reply = _parts_text(agent[-1].parts)

    def _on_status(self, status: Any, *, snapshot: bool = False) -> None:
        self.state = _STATE_NAMES.get(int(status.state), "unspecified")
        if not status.HasField("message"):
            return
        self._usage_from(status.message.metadata)
        if self.state == "working":
            # Streamed progress: only text counts (tool results arrive as data parts). Agents
            # send either the next piece or the message so far (a LangGraph server does the
            # latter); a text that extends the current segment replaces it.
            text = _parts_text(status.message.parts, data=False)
            if text and not snapshot:
                if self.segments and text.startswith(self.segments[-1]):
                    self.segments[-1] = text
                else:
                    self.segments.append(text)
                self.progress = "".join(self.segments)
        else:
            self.status_text = _parts_text(status.message.parts)

    def _ids(self, task_id: str, context_id: str) -> None:
        self.task_id = task_id or self.task_id
        self.context_id = context_id or self.context_id

    def _usage_from(self, metadata: Any) -> None:
        if not metadata:
            return
        from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

        usage = MessageToDict(metadata).get("usage")
        if isinstance(usage, Mapping):
            parsed = _usage(usage)
            if parsed is not None:
                self.usage = parsed

    # ------------------------------------------------------------------ answer

    def answer(self) -> str:
        texts = [t for t in self.artifacts.values() if t]
        if texts:
            return "\n".join(texts)
        if self.reply:
            return self.reply
        if self.status_text and self.state == "completed":
            return self.status_text
        return self.progress

    def _delta(self) -> str:
        answer = self.answer()
        last_segment = self.segments[-1] if self.segments else ""
        if answer.startswith(self.answer_sent):
            delta = answer[len(self.answer_sent) :]
        elif self.answer_sent.startswith(answer):
            return ""  # nothing new (a shorter snapshot of text already sent)
        elif last_segment and answer.startswith(last_segment):
            delta = answer[len(last_segment) :]  # the final answer continues the last message
        else:
            delta = answer  # the answer is not a continuation of the progress streamed so far
        self.answer_sent = answer
        self.streamed += delta
        return delta

    def closing_text(self) -> str:
        """Text not streamed yet (a peer that only sent a final snapshot after polling)."""
        return self._delta()

    def pending(self) -> bool:
        return self.state in _NOT_DONE and self.reply is None

    def stopped(self) -> bool:
        return self.state in _STOPPED or self.state == "completed" or self.reply is not None

    def result(self) -> AIMessage:
        if self.state in _STOPPED:
            detail = self.status_text or self.progress
            state: TaskOutcome = self.state  # type: ignore[assignment]
            why = {
                "failed": "failed",
                "rejected": "rejected the task",
                "canceled": "canceled the task",
                "input-required": "needs more input (reply in the same thread_id to continue)",
                "auth-required": "needs authorization before it can continue",
            }[state]
            raise A2ATaskError(
                f"A2A agent {self.name!r} {why}" + (f": {detail}" if detail else ""),
                agent=self.name,
                thread_id=self.thread_id,
                partial_text=self.streamed,
                state=state,
                task_id=self.task_id,
                context_id=self.context_id,
                detail=detail,
            )
        if self.pending():
            raise AgentError(
                f"A2A agent {self.name!r} stopped answering while task {self.task_id} was still "
                f"{self.state}",
                agent=self.name,
                thread_id=self.thread_id,
                partial_text=self.streamed,
            )
        answer = self.answer()
        if not answer:
            raise AgentError(
                f"A2A agent {self.name!r} completed task {self.task_id} without any text answer",
                agent=self.name,
                thread_id=self.thread_id,
            )
        info: dict[str, Any] = {
            "name": self.name,
            "protocol": "a2a",
            "url": self.url,
            "thread_id": self.thread_id,
            "context_id": self.context_id,
            "task_id": self.task_id,
            "state": self.state,
        }
        usage = self.usage
        if usage is None and self.estimate_usage:
            n_in = math.ceil(len(self.sent_text) / 4)
            n_out = math.ceil(len(answer) / 4)
            usage = UsageMetadata(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out)
            info["usage_estimated"] = True
        return AIMessage(
            content=StopCutter(self.stop).cut(answer),
            id=f"a2a-{self.task_id}" if self.task_id else None,
            response_metadata={
                "model_name": self.name,
                "finish_reason": "stop",
                "agent": info,
            },
            usage_metadata=usage,
        )


def _jsonrpc_transport(http: httpx.AsyncClient) -> Callable[[Any, str, Any], Any]:
    """The JSON-RPC transport for the interface the card names: A2A 0.3 agents get a2a-sdk's
    compatibility transport; 1.0 agents a transport that also reads stream events written in
    the 0.3 shape (``"kind": "status-update"``), as some 1.0 servers still send them."""
    from a2a.client.transports.jsonrpc import JsonRpcTransport
    from a2a.compat.v0_3.versions import is_legacy_version

    class LenientJsonRpcTransport(JsonRpcTransport):
        async def send_message_streaming(
            self, request: Any, *, context: Any = None
        ) -> AsyncGenerator[Any, None]:
            from a2a.client.transports.http_helpers import get_http_args, send_http_stream_request
            from a2a.types import StreamResponse
            from a2a.utils.proto_utils import parse_lenient
            from google.protobuf.json_format import (  # type: ignore[import-untyped]
                MessageToDict,
            )

            payload = {
                "jsonrpc": "2.0",
                "id": uuid.uuid4().hex,
                "method": "SendStreamingMessage",
                "params": MessageToDict(request),
            }
            async for data in send_http_stream_request(
                self.httpx_client,
                "POST",
                self.url,
                None,
                self._handle_sse_error,
                json=payload,
                **get_http_args(context),
            ):
                try:
                    body = json.loads(data)
                except json.JSONDecodeError as exc:
                    from a2a.client import A2AClientError

                    raise A2AClientError(f"invalid JSON in the SSE stream: {exc}") from exc
                result = self._check_jsonrpc_response(body)["result"]
                yield parse_lenient(_wrapped(result), StreamResponse())

    def produce(card: Any, url: str, config: Any) -> Any:
        versions = [
            i.protocol_version
            for i in card.supported_interfaces
            if i.protocol_binding == "JSONRPC" and i.url == url
        ]
        if versions and all(is_legacy_version(v) for v in versions):
            from a2a.compat.v0_3.jsonrpc_transport import CompatJsonRpcTransport

            return CompatJsonRpcTransport(http, card, url, is_shared_httpx=True)
        return LenientJsonRpcTransport(http, card, url, is_shared_httpx=True)

    return produce


_KIND_TO_FIELD = {
    "task": "task",
    "message": "message",
    "status-update": "statusUpdate",
    "artifact-update": "artifactUpdate",
}


def _wrapped(result: Any) -> Any:
    """A 0.3-shaped stream result (``{"kind": "status-update", ...}``) in the 1.0 shape."""
    if isinstance(result, dict) and isinstance(result.get("kind"), str):
        field = _KIND_TO_FIELD.get(result["kind"])
        if field is not None:
            return {field: result}
    return result


def _parts_text(parts: Sequence[Any], *, data: bool = True) -> str:
    """The text parts, joined; without any, data parts as JSON and file parts by their URL."""
    texts = [part.text for part in parts if part.WhichOneof("content") == "text"]
    if texts or not data:
        return "".join(texts)
    out: list[str] = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "data":
            from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

            out.append(json.dumps(MessageToDict(part.data), ensure_ascii=False))
        elif kind == "url":
            out.append(part.url)
    return "".join(out)


def _usage(raw: Mapping[str, Any]) -> UsageMetadata | None:
    def num(*keys: str) -> int | None:
        for key in keys:
            value = raw.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
        return None

    n_in = num("input_tokens", "prompt_tokens", "inputTokens", "promptTokens")
    n_out = num("output_tokens", "completion_tokens", "outputTokens", "completionTokens")
    if n_in is None and n_out is None:
        return None
    n_in, n_out = n_in or 0, n_out or 0
    total = num("total_tokens", "totalTokens")
    return UsageMetadata(
        input_tokens=n_in, output_tokens=n_out, total_tokens=total if total else n_in + n_out
    )


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _render(messages: Sequence[BaseMessage]) -> str:
    """One text for one A2A message: a lone human message as is, else a role-tagged transcript."""
    if len(messages) == 1 and isinstance(messages[0], HumanMessage):
        return text_of(messages[0].content)
    lines = []
    for m in messages:
        text = text_of(m.content)
        if text:
            lines.append(f"{_ROLES.get(m.type, m.type)}: {text}")
    return "\n\n".join(lines)


def _find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
