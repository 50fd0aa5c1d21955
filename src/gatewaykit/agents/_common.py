"""Pieces shared by the local and the remote agent chat models."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import model_validator

from gatewaykit._run_config import RunConfigChatModel
from gatewaykit.errors import ErrorKind, UpstreamError

__all__ = ["AgentError", "StopCutter", "inner_config", "new_messages", "thread_id_from"]

# Chat-model settings that belong to the model inside an agent, never to the agent itself.
_INNER_MODEL_SETTINGS = {
    "temperature": "set it on the model inside the agent",
    "max_tokens": "set it on the model inside the agent",
    "max_completion_tokens": "set it on the model inside the agent",
    "top_p": "set it on the model inside the agent",
    "seed": "set it on the model inside the agent",
    "max_retries": (
        "set it on the model inside the agent, or wrap the agent model in `.with_retry()` "
        "(a retry runs the whole agent again, tools included)"
    ),
    "timeout": "set it on the model inside the agent",
    "api_key": "the model inside the agent holds its own credentials",
}


class AgentError(UpstreamError):
    """An agent served as a chat model failed, or ended without a final answer.

    ``agent`` names the agent, ``thread_id`` the conversation (None for a stateless run),
    ``partial_text`` holds what a stream had already delivered before the failure (tokens cannot
    be taken back, so the stream raises instead of ending on a truncated answer). The original
    exception, when there is one, is chained as ``__cause__``.

    Not retryable (``is_retryable`` False, kind ``agent``): the agent ran, and may have run its
    tools; running it again would run them again. The router neither retries it nor cools the
    deployment down for it, unless the deployment opts in with ``retry_agent_runs: true``.
    """

    kind: ClassVar[ErrorKind] = "agent"
    is_retryable = False

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


# configurable keys that belong to the run that called the agent, not to the agent's own run.
_CALLER_ONLY = frozenset(
    {"thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map", "task_id"}
)


def inner_config(config: RunnableConfig | None) -> dict[str, Any]:
    """What of the caller's run config the agent's own run receives: ``recursion_limit``, the
    caller's own ``configurable`` values, ``tags`` and ``metadata`` (LangGraph's internal keys of
    a parent graph left out: the agent never joins the caller's checkpoint or stream)."""
    if not config:
        return {}
    out: dict[str, Any] = {}
    if config.get("recursion_limit") is not None:
        out["recursion_limit"] = int(config["recursion_limit"])
    configurable = {
        k: v
        for k, v in (config.get("configurable") or {}).items()
        if k not in _CALLER_ONLY and not k.startswith("__")
    }
    if configurable:
        out["configurable"] = configurable
    if config.get("tags"):
        out["tags"] = list(config["tags"])
    metadata = {
        k: v
        for k, v in (config.get("metadata") or {}).items()
        if not k.startswith(("langgraph_", "checkpoint_", "__", "ls_"))
    }
    if metadata:
        out["metadata"] = metadata
    return out


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


class HeldThreads:
    """The threads a model knows to hold a conversation already (it ran a turn on them), so
    a call on any other thread sends the whole history. Bounded: the oldest are forgotten
    first (a forgotten thread is asked again, or sent everything).

    Example::

        held = HeldThreads()
        sent = new_messages(messages) if thread_id in held else messages
        ...  # the turn succeeded
        held.add(thread_id)
    """

    def __init__(self, size: int = 4096) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __contains__(self, thread_id: object) -> bool:
        with self._lock:
            return thread_id in self._ids

    def add(self, thread_id: str | None) -> None:
        if thread_id is None:
            return
        with self._lock:
            self._ids[thread_id] = None
            self._ids.move_to_end(thread_id)
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)


def strip_usage(chunk: AIMessageChunk) -> AIMessageChunk:
    """A forwarded inner chunk without its usage (reported once, on the closing chunk) nor its
    id (every chunk of the answer belongs to the agent's own run)."""
    return AIMessageChunk(
        content=chunk.content,
        response_metadata={},
        additional_kwargs={},
    )


class StopCutter:
    """Ends an answer before the first stop sequence, also when it arrives in pieces.

    ``feed`` returns the text that can be released; only a tail that could still be the start
    of a stop sequence is held back, and ``flush`` releases it when the answer ends.
    """

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stop = [s for s in stop or [] if s]
        self.held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self.stop:
            return text
        buffer = self.held + text
        hits = [i for i in (buffer.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            self.held = ""
            return buffer[: min(hits)]
        keep = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(buffer)), keep, -1):
                if s.startswith(buffer[-k:]):
                    keep = k
                    break
        self.held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        rest, self.held = ("" if self.stopped else self.held), ""
        return rest

    def cut(self, content: str | list[str | dict[str, Any]]) -> str | list[str | dict[str, Any]]:
        """A whole answer's content, ended before the first stop sequence."""
        if not self.stop:
            return content
        if isinstance(content, str):
            return self.feed(content) + self.flush()
        out: list[str | dict[str, Any]] = []
        for block in content:
            if self.stopped:
                break
            if isinstance(block, str):
                out.append(self.feed(block) + self.flush())
            elif isinstance(block, dict) and block.get("type") == "text":
                text = self.feed(str(block.get("text", ""))) + self.flush()
                out.append({**block, "text": text})
            else:
                out.append(block)
        return out


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


class ThreadedAgentModel(RunConfigChatModel):
    """What every agent model shares: thread-carrying entry points, tracing names, no tools.

    The thread id may live in the call's config, and chat-model internals never see the config,
    so each entry point moves it into the call's kwargs. An agent runs its own tools, so tools
    cannot be bound to it, and it answers in text (parse the answer for structured output).
    Sampling settings (``temperature``, ``max_tokens``...) belong to the model inside the agent
    and are refused here with a message saying so, rather than silently ignored.
    """

    stop: list[str] | None = None
    """Stop sequences: the answer ends before the first one (a call's ``stop`` wins). The
    agent still runs to its end; only its answer is cut."""
    streaming: bool = False
    """Run ``invoke`` through the stream, so callbacks see the answer's tokens as they come."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_inner_model_settings(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, fix in _INNER_MODEL_SETTINGS.items():
                if key in data and key not in cls.model_fields:
                    raise ValueError(
                        f"{cls.__name__} has no `{key}`: an agent's model settings belong to "
                        f"its own model; {fix}"
                    )
        return data

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
        if stop is None and self.stop:
            params["ls_stop"] = list(self.stop)
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

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Not supported: an agent answers in text and shapes it itself."""
        raise NotImplementedError(
            f"agent {self.name_of_agent!r} answers in text and runs its own tools; parse its "
            "answer with an output parser instead, e.g. "
            "`model | PydanticOutputParser(pydantic_object=Schema)`"
        )

    def _call_options(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> Any:
        for key, fix in _INNER_MODEL_SETTINGS.items():
            if key in kwargs:
                raise ValueError(
                    f"{type(self).__name__} takes no `{key}` per call: an agent's model "
                    f"settings belong to its own model; {fix}"
                )
        options = {**kwargs, "thread_id": thread_id_from(config, kwargs)}
        caller = inner_config(config)
        if caller:
            options["inner_config"] = caller
        return options
