"""RemoteAgentChatModel: an assistant on a LangGraph server served as a LangChain chat model.

Runs go through ``langgraph_sdk``: stateless runs (``runs.wait``, ``runs.stream`` with
``stream_mode="messages-tuple"``), or a server thread when a ``thread_id`` is given. The answer is
the agent's final AI message as the server stored it: content untouched (text or content
blocks), ids kept, its usage when the server's model reported one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, SecretStr

from gatewaykit.agents._common import (
    AgentError,
    StopCutter,
    ThreadedAgentModel,
    new_messages,
    text_of,
)

if TYPE_CHECKING:
    from langgraph_sdk.schema import StreamMode

__all__ = ["RemoteAgentChatModel"]

_STREAM_MODES: list[StreamMode] = ["messages-tuple", "values"]


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
    that server thread (created on first use) and only the messages after the last AI message
    of the input are sent. Streaming forwards the tokens of the agent's model calls except those
    of turns that call tools; usage is reported once, on the closing chunk.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    url: str
    """Base URL of the LangGraph server."""
    assistant_id: str
    """Assistant id or graph id on that server."""
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    """Sent as ``x-api-key``; when None, langgraph_sdk reads its usual environment variables."""
    headers: dict[str, str] | None = Field(default=None, exclude=True, repr=False)
    """Extra request headers."""
    thread_id: str | None = None
    """Default server thread; None means stateless runs."""
    timeout: float | None = None
    """HTTP timeout in seconds (langgraph_sdk's default when None)."""
    run_config: dict[str, Any] | None = None
    """Passed as the run's ``config`` (e.g. ``{"recursion_limit": 50}``)."""

    @property
    def name_of_agent(self) -> str:
        return self.assistant_id

    @property
    def _llm_type(self) -> str:
        return "gatewaykit-remote-agent"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"url": self.url, "assistant_id": self.assistant_id}

    # ------------------------------------------------------------------ runs

    def _client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"url": self.url, "headers": self.headers}
        if self.api_key is not None:
            kw["api_key"] = self.api_key.get_secret_value()
        if self.timeout is not None:
            kw["timeout"] = self.timeout
        return kw

    def _run_args(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> _RemoteRun:
        thread_id = kwargs.get("thread_id") or self.thread_id
        sent = new_messages(messages) if thread_id else list(messages)
        run_kw: dict[str, Any] = {"input": {"messages": [_to_dict(m) for m in sent]}}
        if thread_id:
            run_kw["if_not_exists"] = "create"
        if self.run_config:
            run_kw["config"] = self.run_config
        return _RemoteRun(self.assistant_id, thread_id, run_kw)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        from langgraph_sdk import get_sync_client

        run = self._run_args(messages, kwargs)
        run.cutter = StopCutter(stop if stop is not None else self.stop)
        client = get_sync_client(**self._client_kwargs())
        try:
            state = client.runs.wait(run.thread, self.assistant_id, **run.run_kw)
        except Exception as exc:
            raise run.failed(exc) from exc
        finally:
            client.close()
        run.on_values(state)
        return ChatResult(generations=[ChatGeneration(message=run.final_message())])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        from langgraph_sdk import get_client

        run = self._run_args(messages, kwargs)
        run.cutter = StopCutter(stop if stop is not None else self.stop)
        client = get_client(**self._client_kwargs())
        try:
            state = await client.runs.wait(run.thread, self.assistant_id, **run.run_kw)
        except Exception as exc:
            raise run.failed(exc) from exc
        finally:
            await client.aclose()
        run.on_values(state)
        return ChatResult(generations=[ChatGeneration(message=run.final_message())])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        from langgraph_sdk import get_sync_client

        run = self._run_args(messages, kwargs)
        run.cutter = StopCutter(stop if stop is not None else self.stop)
        client = get_sync_client(**self._client_kwargs())
        try:
            parts = client.runs.stream(
                run.thread, self.assistant_id, stream_mode=_STREAM_MODES, **run.run_kw
            )
            for part in parts:
                out = run.on_part(part.event, part.data)
                if out is not None:
                    yield out
        except AgentError:
            raise
        except Exception as exc:
            raise run.failed(exc) from exc
        finally:
            client.close()
        yield run.closing_chunk()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        from langgraph_sdk import get_client

        run = self._run_args(messages, kwargs)
        run.cutter = StopCutter(stop if stop is not None else self.stop)
        client = get_client(**self._client_kwargs())
        try:
            parts = client.runs.stream(
                run.thread, self.assistant_id, stream_mode=_STREAM_MODES, **run.run_kw
            )
            async for part in parts:
                out = run.on_part(part.event, part.data)
                if out is not None:
                    yield out
        except AgentError:
            raise
        except Exception as exc:
            raise run.failed(exc) from exc
        finally:
            await client.aclose()
        yield run.closing_chunk()


class _RemoteRun:
    """One server run: what was streamed, and how the answer is read from the final state."""

    def __init__(self, assistant_id: str, thread_id: str | None, run_kw: dict[str, Any]) -> None:
        self.name = assistant_id
        self.thread_id = thread_id
        self.thread: Any = thread_id  # langgraph_sdk's overloads spell "no thread" separately
        self.run_kw = run_kw
        self.state: Any = None
        self.forwarded: dict[str, str] = {}
        self.tool_turns: set[str] = set()
        self.cutter = StopCutter(None)

    def failed(self, exc: BaseException) -> AgentError:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            # An HTTP answer from the server: its own explanation beats httpx's generic one.
            try:
                detail = str(response.text)[:500]  # type: ignore[union-attr]
            except Exception:
                detail = str(exc)
            message = f"HTTP {status}: {detail}"
        elif type(exc) is Exception:
            message = str(exc)  # langgraph_sdk's run-error wrapper: the text is the error
        else:
            message = f"{type(exc).__name__}: {exc}"
        return AgentError(
            f"remote agent {self.name!r} failed: {message}",
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
