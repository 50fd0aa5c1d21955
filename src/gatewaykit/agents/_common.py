"""Pieces shared by the local and the remote agent chat models."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool

from gatewaykit.errors import ErrorKind, UpstreamError

__all__ = ["AgentError", "new_messages", "thread_id_from"]


class AgentError(UpstreamError):
    """An agent served as a chat model failed, or ended without a final answer.

    ``agent`` names the agent, ``thread_id`` the conversation (None for a stateless run),
    ``partial_text`` holds what a stream had already delivered before the failure (tokens cannot
    be taken back, so the stream raises instead of ending on a truncated answer). The original
    exception, when there is one, is chained as ``__cause__``.
    """

    kind: ClassVar[ErrorKind] = "upstream"

    def __init__(
        self,
        message: str,
        *,
        agent: str,
        thread_id: str | None = None,
        partial_text: str = "",
        **kw: Any,
    ) -> None:
        kw.setdefault("model_group", agent)
        super().__init__(message, **kw)
        self.agent = agent
        self.thread_id = thread_id
        self.partial_text = partial_text


class UsageCollector(BaseCallbackHandler):
    """Sums ``usage_metadata`` over every model call made inside an agent run."""

    raise_error = False

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.usage: UsageMetadata | None = None
        self.calls = 0

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for gen in generations:
                if isinstance(gen, ChatGeneration) and isinstance(gen.message, AIMessage):
                    usage = gen.message.usage_metadata
                    with self._lock:
                        self.calls += 1
                        if usage:
                            self.usage = add_usage(self.usage, usage)


def thread_id_from(config: RunnableConfig | None, kwargs: Mapping[str, Any]) -> str | None:
    """A ``thread_id`` kwarg wins over ``config["configurable"]["thread_id"]``."""
    if kwargs.get("thread_id") is not None:
        return str(kwargs["thread_id"])
    configurable = (config or {}).get("configurable") or {}
    value = configurable.get("thread_id")
    return None if value is None else str(value)


def new_messages(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """What a stateful thread has not seen yet: the messages after the last AI message.

    A chat model receives the whole conversation on each call; a thread already holds
    everything up to (and including) its own last answer.
    """
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], AIMessage):
            return list(messages[i + 1 :])
    return list(messages)


def strip_usage(chunk: AIMessageChunk) -> AIMessageChunk:
    """A forwarded inner chunk without its usage (reported once, on the closing chunk) nor its
    id (every chunk of the answer belongs to the agent's own run)."""
    return AIMessageChunk(
        content=chunk.content,
        response_metadata={},
        additional_kwargs={},
    )


def text_of(content: str | list[str | dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    out = []
    for block in content:
        if isinstance(block, str):
            out.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            out.append(str(block.get("text", "")))
    return "".join(out)


class ThreadedAgentModel(BaseChatModel):
    """What every agent model shares: thread-carrying entry points, tracing names, no tools.

    The thread id may live in the call's config, and chat-model internals never see the config,
    so each entry point moves it into the call's kwargs. An agent runs its own tools, so tools
    cannot be bound to it.
    """

    @property
    def name_of_agent(self) -> str:
        """The agent's name in traces, errors and ``ls_model_name``."""
        raise NotImplementedError

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "gatewaykit"
        params["ls_model_name"] = kwargs.get("model", self.name_of_agent)
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Not supported: an agent brings its own tools and never returns tool calls."""
        raise NotImplementedError(
            f"agent {self.name_of_agent!r} runs its own tools; add tools to the agent itself "
            f"instead of binding them to {type(self).__name__}"
        )

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        kwargs["thread_id"] = thread_id_from(config, kwargs)
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        kwargs["thread_id"] = thread_id_from(config, kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        kwargs["thread_id"] = thread_id_from(config, kwargs)
        return super().stream(input, config, stop=stop, **kwargs)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        kwargs["thread_id"] = thread_id_from(config, kwargs)
        return super().astream(input, config, stop=stop, **kwargs)
