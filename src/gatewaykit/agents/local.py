"""AgentChatModel: a compiled LangGraph agent served as a LangChain chat model.

Messages go in, the agent's final AI message comes out. The agent's own tool calls stay inside
the run; the answer carries the usage of every model call the agent made, and
``response_metadata["agent"]`` says which agent answered, on which thread, in how many steps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from pydantic import ConfigDict, Field

from gatewaykit.agents._common import (
    AgentError,
    StopCutter,
    ThreadedAgentModel,
    UsageCollector,
    new_messages,
    strip_usage,
    text_of,
)
from gatewaykit.errors import GatewayError

__all__ = ["AgentChatModel"]


def _has_messages(snapshot: Any) -> bool:
    values = getattr(snapshot, "values", None)
    return bool(isinstance(values, dict) and values.get("messages"))


# "updates" carries interrupts; "values" the state the answer is read from.
_RESULT_MODES = ["values", "updates"]
_STREAM_MODES = ["messages", "values", "updates"]


class AgentChatModel(ThreadedAgentModel):
    """A compiled LangGraph graph (an agent) as a chat model.

    A graph whose state has a ``messages`` channel is used as is: the input is
    ``{"messages": [...]}`` and the answer is the last AI message of the final state. Any other
    graph needs ``input_mapper`` (messages -> graph input) and ``output_mapper`` (final state ->
    ``AIMessage`` or ``str``).

    Example::

        from langchain.agents import create_agent
        from gatewaykit.agents import AgentChatModel

        agent = create_agent(llm, tools=[calculator])
        model = AgentChatModel(graph=agent, agent_name="math")
        msg = model.invoke("What is 6 * 7?")
        print(msg.content, msg.usage_metadata, msg.response_metadata["agent"]["steps"])

    Streaming forwards the tokens of the agent's model calls, except those of turns that call
    tools: those turns stay inside the agent, like their tool calls. Text a model writes *before*
    a tool call in the same turn is forwarded as it arrives (a token cannot be taken back), so
    for agents whose models do that, set ``stream_tokens=False`` to receive the final answer as
    one chunk. Usage is reported once, on the closing chunk.

    Threads: with a checkpointer compiled into the graph, a ``thread_id`` (call kwarg, or
    ``config["configurable"]["thread_id"]``, or the ``thread_id`` field) selects the
    conversation. A thread that already holds messages receives only those after the last AI
    message of the input (it holds the rest); a new or empty one receives the whole history,
    system prompt included.

    The caller's run config reaches the agent's run: ``recursion_limit`` (the field is the
    default), its own ``configurable`` values, ``tags`` and ``metadata``, and its callbacks.
    A failure is an :class:`AgentError`, never retryable: the agent ran, and its tools may have.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    graph: Any = Field(exclude=True)
    """The compiled graph (``CompiledStateGraph`` or any Pregel)."""
    agent_name: str | None = None
    """Name used in errors and ``response_metadata["agent"]``; default the graph's name."""
    input_mapper: Callable[[list[BaseMessage]], Any] | None = Field(default=None, exclude=True)
    """Messages -> graph input, for graphs without a ``messages`` channel."""
    output_mapper: Callable[[Any], AIMessage | str] | None = Field(default=None, exclude=True)
    """Final graph state -> the answer, for graphs without a ``messages`` channel."""
    thread_id: str | None = None
    """Default thread (used only when the graph has a checkpointer)."""
    recursion_limit: int | None = None
    """Passed to the graph run (LangGraph's default when None); a call's
    ``config["recursion_limit"]`` wins."""
    stream_tokens: bool | None = None
    """Forward inner model tokens while streaming. Default: True for messages graphs, False
    with an ``output_mapper`` (the answer is then built after the run and sent as one chunk)."""

    @property
    def name_of_agent(self) -> str:
        return self.agent_name or getattr(self.graph, "name", None) or "agent"

    @property
    def _llm_type(self) -> str:
        return "gatewaykit-agent"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"agent": self.name_of_agent}

    # ------------------------------------------------------------------ runs

    def _thread(self, kwargs: dict[str, Any]) -> str | None:
        """The run's thread, when the graph can keep one (it has a checkpointer)."""
        thread_id = kwargs.get("thread_id") or self.thread_id
        if thread_id is None or getattr(self.graph, "checkpointer", None) is None:
            return None
        return str(thread_id)

    def _holds_history(self, thread_id: str | None) -> bool:
        if thread_id is None or self.input_mapper is not None:
            return False
        try:
            snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        except (ValueError, NotImplementedError):  # a checkpointer that cannot be read here
            return True  # then trust the thread to hold what came before
        return _has_messages(snapshot)

    async def _aholds_history(self, thread_id: str | None) -> bool:
        if thread_id is None or self.input_mapper is not None:
            return False
        try:
            snapshot = await self.graph.aget_state({"configurable": {"thread_id": thread_id}})
        except (ValueError, NotImplementedError):
            return True
        return _has_messages(snapshot)

    def _begin(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        thread_id: str | None,
        holds_history: bool,
    ) -> _Run:
        if self.input_mapper is not None:
            graph_input = self.input_mapper(messages)
        else:
            # A thread that already holds the conversation gets only what is new; a new or
            # empty one gets all of it, system prompt included.
            sent = new_messages(messages) if holds_history else list(messages)
            graph_input = {"messages": sent}
        stream_tokens = self.stream_tokens
        if stream_tokens is None:
            stream_tokens = self.output_mapper is None
        return _Run(
            self,
            graph_input,
            thread_id,
            stream_tokens=stream_tokens,
            stop=stop if stop is not None else self.stop,
            caller=kwargs.get("inner_config") or {},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        thread_id = self._thread(kwargs)
        run = self._begin(messages, stop, kwargs, thread_id, self._holds_history(thread_id))
        cfg = run.config(run_manager, CallbackManager)
        try:
            for mode, data in self.graph.stream(run.graph_input, cfg, stream_mode=_RESULT_MODES):
                run.on_event(mode, data)
        except Exception as exc:
            raise run.failed(exc) from exc
        message = run.final_message()
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        thread_id = self._thread(kwargs)
        held = await self._aholds_history(thread_id)
        run = self._begin(messages, stop, kwargs, thread_id, held)
        cfg = run.config(run_manager, AsyncCallbackManager)
        try:
            async for mode, data in self.graph.astream(
                run.graph_input, cfg, stream_mode=_RESULT_MODES
            ):
                run.on_event(mode, data)
        except Exception as exc:
            raise run.failed(exc) from exc
        message = run.final_message()
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        thread_id = self._thread(kwargs)
        run = self._begin(messages, stop, kwargs, thread_id, self._holds_history(thread_id))
        cfg = run.config(run_manager, CallbackManager)
        try:
            for mode, data in self.graph.stream(run.graph_input, cfg, stream_mode=_STREAM_MODES):
                out = run.on_event(mode, data)
                if out is not None:
                    yield out
        except Exception as exc:
            raise run.failed(exc) from exc
        yield from run.closing_chunks()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        thread_id = self._thread(kwargs)
        held = await self._aholds_history(thread_id)
        run = self._begin(messages, stop, kwargs, thread_id, held)
        cfg = run.config(run_manager, AsyncCallbackManager)
        try:
            async for mode, data in self.graph.astream(
                run.graph_input, cfg, stream_mode=_STREAM_MODES
            ):
                out = run.on_event(mode, data)
                if out is not None:
                    yield out
        except Exception as exc:
            raise run.failed(exc) from exc
        for chunk in run.closing_chunks():
            yield chunk


class _Run:
    """One agent run: its config, what was streamed, and how the answer is built."""

    def __init__(
        self,
        model: AgentChatModel,
        graph_input: Any,
        thread_id: str | None,
        *,
        stream_tokens: bool,
        stop: list[str] | None,
        caller: dict[str, Any],
    ) -> None:
        self.model = model
        self.caller = caller
        self.stop = stop
        self.cutter = StopCutter(stop)
        self.name = model.name_of_agent
        self.graph_input = graph_input
        self.thread_id = thread_id
        self.stream_tokens = stream_tokens
        self.usage = UsageCollector()
        self.state: Any = None
        self.forwarded: dict[str, str] = {}  # message id -> text forwarded so far
        self.tool_turns: set[str] = set()  # ids of inner messages that called tools
        self.tool_calls: list[str] = []
        self.interrupted = False

    def config(self, run_manager: Any, manager_cls: type) -> RunnableConfig:
        # A fresh root config: the agent never inherits a parent graph's checkpointer, stream
        # or callbacks, so its inner tokens are not streamed a second time by a parent graph.
        # The caller's own configurable values, tags, metadata and recursion_limit reach the
        # agent (its recursion_limit wins over the field, which is the default).
        caller = self.caller
        configurable: dict[str, Any] = dict(caller.get("configurable") or {})
        if self.thread_id is not None:
            configurable["thread_id"] = self.thread_id
        callbacks: Any = [self.usage]
        if run_manager is not None and run_manager.handlers:
            callbacks = manager_cls(
                handlers=[*run_manager.handlers, self.usage],
                inheritable_handlers=[*run_manager.inheritable_handlers, self.usage],
                parent_run_id=run_manager.run_id,
                tags=run_manager.inheritable_tags,
                inheritable_tags=run_manager.inheritable_tags,
                metadata=run_manager.inheritable_metadata,
                inheritable_metadata=run_manager.inheritable_metadata,
            )
        cfg: RunnableConfig = {
            "configurable": configurable,
            "metadata": dict(caller.get("metadata") or {}),
            "tags": list(caller.get("tags") or []),
            "callbacks": callbacks,
        }
        limit = caller.get("recursion_limit", self.model.recursion_limit)
        if limit is not None:
            cfg["recursion_limit"] = limit
        return cfg

    # -- streaming

    def on_event(self, mode: str, data: Any) -> ChatGenerationChunk | None:
        if mode == "values":
            self.state = data
            return None
        if mode == "updates":
            if isinstance(data, dict) and data.get("__interrupt__"):
                self.interrupted = True
            return None
        if mode != "messages" or not self.stream_tokens:
            return None
        message, _metadata = data
        if isinstance(message, ToolMessage) or not isinstance(message, AIMessage):
            return None
        key = message.id or ""
        if message.tool_calls or getattr(message, "tool_call_chunks", None):
            self.tool_turns.add(key)
            return None
        if key in self.tool_turns:
            return None
        text = text_of(message.content)
        if not message.content:
            return None
        self.forwarded[key] = self.forwarded.get(key, "") + text
        if self.cutter.stop:
            released = self.cutter.feed(text)
            return (
                ChatGenerationChunk(message=AIMessageChunk(content=released)) if released else None
            )
        chunk = (
            strip_usage(message)
            if isinstance(message, AIMessageChunk)
            else AIMessageChunk(content=message.content)
        )
        return ChatGenerationChunk(message=chunk)

    def closing_chunks(self) -> Iterator[ChatGenerationChunk]:
        final = self.final_message()
        # The answer's tokens were streamed already when its message id was forwarded (only a
        # tail held back by the stop sequences is left); otherwise (a mapper built it, or its
        # model did not stream) it goes out whole here.
        content: Any = self.cutter.flush() if (final.id or "") in self.forwarded else final.content
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=content,
                usage_metadata=final.usage_metadata,
                response_metadata=final.response_metadata,
            ),
            generation_info={"agent": final.response_metadata["agent"]},
        )

    # -- results

    def failed(self, exc: BaseException) -> AgentError:
        """The run raised: an AgentError, never retryable (the graph ran, its tools may have)."""
        if isinstance(exc, AgentError):
            return exc
        partial = "".join(self.forwarded.values())
        status = exc.status if isinstance(exc, GatewayError) else None
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, GraphRecursionError):
            detail += " (raise recursion_limit in the call's config, or the field, if needed)"
        return AgentError(
            f"agent {self.name!r} failed: {detail}",
            agent=self.name,
            thread_id=self.thread_id,
            partial_text=partial,
            status=status,
        )

    def final_message(self) -> AIMessage:
        state = self.state
        if state is None:
            raise AgentError(
                f"agent {self.name!r} produced no state",
                agent=self.name,
                thread_id=self.thread_id,
            )
        if self.interrupted or (isinstance(state, dict) and state.get("__interrupt__")):
            raise AgentError(
                f"agent {self.name!r} stopped on an interrupt and awaits input",
                agent=self.name,
                thread_id=self.thread_id,
            )
        if self.model.output_mapper is not None:
            try:
                mapped = self.model.output_mapper(state)
            except Exception as exc:
                raise AgentError(
                    f"agent {self.name!r}: output_mapper failed: {type(exc).__name__}: {exc}",
                    agent=self.name,
                    thread_id=self.thread_id,
                ) from exc
            answer = AIMessage(content=mapped) if isinstance(mapped, str) else mapped
            if not isinstance(answer, AIMessage):
                raise AgentError(
                    f"agent {self.name!r}: output_mapper returned {type(mapped).__name__}, "
                    "expected AIMessage or str",
                    agent=self.name,
                    thread_id=self.thread_id,
                )
        else:
            messages = state.get("messages") if isinstance(state, dict) else None
            last = messages[-1] if messages else None
            if not isinstance(last, AIMessage):
                what = type(last).__name__ if last is not None else "no message"
                raise AgentError(
                    f"agent {self.name!r} ended without an AI message (last: {what})",
                    agent=self.name,
                    thread_id=self.thread_id,
                )
            answer = last
            for m in messages or []:
                if isinstance(m, AIMessage):
                    self.tool_calls.extend(tc["name"] for tc in m.tool_calls)
        if answer.tool_calls:
            names = ", ".join(tc["name"] for tc in answer.tool_calls)
            raise AgentError(
                f"agent {self.name!r} ended on tool calls ({names}) instead of an answer",
                agent=self.name,
                thread_id=self.thread_id,
            )
        if self.thread_id is not None and self.model.output_mapper is None:
            # A thread's state holds earlier turns: count only this run's tool calls.
            self.tool_calls = self._tool_calls_this_run(state["messages"])
        info = {
            "name": self.name,
            "thread_id": self.thread_id,
            "steps": self.usage.calls,
            "tool_calls": list(self.tool_calls),
        }
        usage = self.usage.usage if self.usage.calls else answer.usage_metadata
        return AIMessage(
            content=StopCutter(self.stop).cut(answer.content),
            id=answer.id,
            name=answer.name,
            additional_kwargs={
                k: v for k, v in answer.additional_kwargs.items() if k != "tool_calls"
            },
            response_metadata={**answer.response_metadata, "agent": info},
            usage_metadata=usage,
        )

    @staticmethod
    def _tool_calls_this_run(messages: list[BaseMessage]) -> list[str]:
        # This run's messages follow the last human message.
        start = 0
        for i, m in enumerate(messages):
            if m.type == "human":
                start = i
        return [
            tc["name"] for m in messages[start:] if isinstance(m, AIMessage) for tc in m.tool_calls
        ]
