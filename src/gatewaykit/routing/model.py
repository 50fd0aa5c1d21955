"""RouterChatModel: the routing graph as a LangChain chat model.

``ChatOpenAI.with_fallbacks`` returns a Runnable that agents refuse and that fails over only
before the first streamed chunk; LiteLLM's Router needs ``import litellm`` and keeps its verdicts
out of LangChain's metadata. RouterChatModel is a real ``BaseChatModel``: it composes with ``|``,
``bind_tools``, ``with_structured_output``, ``batch`` and agents, and every answer says which
deployment served it and what was tried first (``response_metadata["routing"]``).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from gatewaykit.cache import with_cache_controls
from gatewaykit.chat_model import NOT_IN_CACHE_KEY, _reliable_structured, with_gateway_tags
from gatewaykit.config import GatewayConfig, load_config
from gatewaykit.cost import Budget, BudgetManager
from gatewaykit.routing.engine import RouterEngine
from gatewaykit.routing.graph import build_router_graph
from gatewaykit.routing.health import CooldownPolicy, RetryPolicy
from gatewaykit.routing.state import RouterState
from gatewaykit.routing.store import StateStore

__all__ = ["RouterChatModel"]

_DONE = object()


class RouterChatModel(BaseChatModel):
    """A chat model that routes each call over a config's model groups, with retries,
    cooldowns and fallbacks, through a compiled LangGraph graph.

    Example::

        from gatewaykit import RouterChatModel

        llm = RouterChatModel.from_config("config.yaml", model="claude-sonnet")
        msg = llm.invoke("Review this diff")
        print(msg.response_metadata["routing"]["deployment"],
              msg.response_metadata["routing"]["attempts"])

        agent = create_agent(llm.bind_tools([search]), tools=[search])   # a real chat model
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    config: GatewayConfig = Field(exclude=True)
    """The LiteLLM-dialect config (model_list, router_settings, fallbacks...); a path or a
    mapping is loaded with :func:`~gatewaykit.load_config`."""
    model: str
    """The model alias (group or model_group_alias) this router serves."""
    gateway_tags: list[str] = Field(default_factory=list)
    """Request tags: used for tag routing and sent to the gateway."""
    deadline_s: float | None = None
    """Wall-clock budget for the whole request (all attempts and fallbacks); default
    ``router_settings.deadline``, else 300 s."""
    max_cooldown_wait: float | None = None
    """Longest wait for a recovery (a cooldown's end, a Retry-After, a backoff) when no fallback
    group remains; past it a call fails at once with ``retry_after``. Default
    ``router_settings.max_cooldown_wait``, else 2 s."""
    timeout: float | None = None
    """Longest single attempt, in seconds (never longer than what is left of ``deadline_s``);
    default the deployment's ``timeout``, else ``router_settings.timeout``, as in LiteLLM."""
    ttft_timeout: float | None = None
    """Per-attempt time to first streamed token; a slow start fails over."""
    idle_timeout: float | None = None
    """Longest silence allowed between two streamed chunks."""
    on_stream_interrupt: Literal["raise", "restart"] = "raise"
    """What a stream does when a deployment fails after its first token.

    ``"raise"`` (default): tokens flow as they arrive; a failure after the first one raises
    :class:`~gatewaykit.StreamInterrupted` carrying the partial text (never a silently
    truncated answer). ``"restart"``: each attempt's chunks are held until it completes, so a
    failure at any point restarts the answer from scratch on the next deployment; the caller
    sees only one complete answer, at the price of receiving it in one burst. A restart never
    continues from a prefix, so it is safe with tools and structured output."""
    streaming: bool = False
    """Stream every call, ``invoke`` included (so TTFT and idle timeouts apply to it too)."""
    temperature: float | None = None
    """Sent to whichever deployment serves (a per-call ``temperature`` wins)."""
    max_tokens: int | None = None
    """Sent to whichever deployment serves (a per-call ``max_tokens`` wins)."""
    stop: list[str] | None = None
    """Default stop sequences (per-call ``stop`` wins)."""
    max_retries: int | None = None
    """Retries per model group; overrides ``router_settings.num_retries`` when set."""
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    """One key for every deployment (e.g. a virtual key for a LiteLLM proxy); by default each
    deployment uses its own ``litellm_params.api_key``."""
    local_guardrails: list[Any] = Field(default_factory=list, exclude=True)
    """Guardrails run around the whole routed call, whichever deployment serves
    (:mod:`gatewaykit.guardrails`); each deployment's own ``model_info.guardrails`` run on top.
    A refusal is never retried or fallen back."""
    engine: RouterEngine = Field(default=None, exclude=True, validate_default=False)  # type: ignore[assignment]
    """Routing decisions and state; shared by every copy made by ``bind``. Built from
    ``config`` when not given."""

    _graph: Any = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        # Config problems surface as the typed ConfigError (naming the field), not wrapped in
        # pydantic's ValidationError.
        if "config" in kwargs:
            kwargs["config"] = load_config(kwargs["config"])
            if isinstance(kwargs.get("model"), str):
                kwargs["config"].resolve_group(kwargs["model"])
        super().__init__(**kwargs)

    @model_validator(mode="after")
    def _build_engine(self) -> RouterChatModel:
        if self.local_guardrails:
            from gatewaykit.guardrails.runner import GuardrailSet

            self.local_guardrails = GuardrailSet(self.local_guardrails).guardrails
        if self.engine is None:
            self.engine = RouterEngine(self.config)
        if self.max_retries is not None:
            self.engine.retry = dataclasses.replace(self.engine.retry, num_retries=self.max_retries)
        if self.api_key is not None:
            self.engine.model_overrides["api_key"] = self.api_key
        if self.cache is None:
            from gatewaykit.cache import cache_from_config

            # `cache_responses: true` (Router) or `cache: true` + `cache_params` (proxy dialect).
            self.cache = cache_from_config(self.engine.config)
        if self.callbacks is None:
            from gatewaykit.observability.callbacks import callbacks_from_config

            # `litellm_settings.success_callback: [langfuse, prometheus]` is the one switch.
            self.callbacks = callbacks_from_config(self.engine.config, engine=self.engine) or None
        return self

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig | str | os.PathLike[str] | Mapping[str, Any],
        model: str,
        *,
        store: StateStore | None = None,
        strategy: str | None = None,
        retry: RetryPolicy | None = None,
        cooldown: CooldownPolicy | None = None,
        max_attempts: int | None = None,
        lean: bool = True,
        seed: int | None = None,
        model_overrides: Mapping[str, Any] | None = None,
        budgets: BudgetManager | Sequence[Budget] | None = None,
        **fields: Any,
    ) -> RouterChatModel:
        """Build a router for alias ``model`` from a config file, dict or GatewayConfig.

        The keyword arguments before ``**fields`` tune the engine (state store, strategy,
        retry and cooldown policies, attempt budget, a seed for reproducible choices, and
        ``model_overrides`` applied to every deployment's chat model, ``budgets`` replacing the
        config's own); ``fields`` are this
        class's own fields (``gateway_tags``, ``deadline_s``, ``on_stream_interrupt``...).
        """
        cfg = load_config(config)
        cfg.resolve_group(model)
        engine = RouterEngine(
            cfg,
            store=store,
            strategy=strategy,
            retry=retry,
            cooldown=cooldown,
            max_attempts=max_attempts,
            lean=lean,
            seed=seed,
            model_overrides=model_overrides,
            budgets=budgets,
        )
        return cls(config=cfg, model=model, engine=engine, **fields)

    @property
    def graph(self) -> Any:
        """The compiled LangGraph graph behind this model."""
        if self._graph is None:
            self._graph = _graph_for(self.engine)
        return self._graph

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def _llm_type(self) -> str:
        return "gatewaykit-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "strategy": type(self.engine.strategy).__name__,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        # The response-cache key: what changes the answer, plus this request's cache controls.
        kept = {k: v for k, v in kwargs.items() if k not in NOT_IN_CACHE_KEY}
        base = super()._get_llm_string(stop=stop or self.stop, **kept)
        return with_cache_controls(base, kwargs.get("cache_control"))

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "gatewaykit"
        params["ls_model_name"] = kwargs.get("model", self.model)
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stop = stop or self.stop
        if stop:
            params["ls_stop"] = stop
        return with_gateway_tags(params, self.gateway_tags, kwargs.get("gateway_tags"))

    # ------------------------------------------------------------------ tools & structure

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in OpenAI format; whichever deployment serves receives them."""
        return super().bind(
            **openai_tool_binding(tools, tool_choice, strict, parallel_tool_calls), **kwargs
        )

    def _filter_disabled_params(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] | None = None,
        include_raw: bool = False,
        strict: bool | None = None,
        max_repairs: int | None = None,
        fallback: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Same contract as ChatOpenAI's. The default method is ``json_schema`` when every
        deployment of the group declares ``supports_response_schema``, else function calling.
        With ``max_repairs`` or ``fallback``, the reliable path of :func:`gatewaykit.structured`.
        """
        from langchain_openai.chat_models.base import BaseChatOpenAI

        if max_repairs is not None or fallback is not None:
            return _reliable_structured(  # type: ignore[no-any-return]
                self, schema, method, strict, include_raw, max_repairs, fallback, kwargs
            )
        if method is None:
            deps = self.engine.group(self.config.resolve_group(self.model))
            method = (
                "json_schema"
                if deps and all(d.supports_response_schema for d in deps)
                else "function_calling"
            )
        return BaseChatOpenAI.with_structured_output(  # type: ignore[no-any-return]
            self,  # type: ignore[arg-type]
            schema,
            method=method,
            include_raw=include_raw,
            strict=strict,
            **kwargs,
        )

    # ------------------------------------------------------------------ calls

    def _start(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        *,
        stream: bool,
        on_chunk: Callable[[Any], None] | None = None,
    ) -> RouterState:
        kwargs.pop("ls_structured_output_format", None)
        model = kwargs.pop("model", None)
        alias = model or self.model
        call_tags = kwargs.get("gateway_tags") or []
        tags = [*self.gateway_tags, *call_tags]
        if tags:
            kwargs["gateway_tags"] = tags
        for name in ("ttft_timeout", "idle_timeout", "temperature", "max_tokens", "timeout"):
            value = getattr(self, name)
            if value is not None:
                kwargs.setdefault(name, value)
        stop = stop or self.stop
        state = self.engine.start(
            alias,
            messages,
            stop,
            kwargs,
            stream=stream,
            tags=tags,
            deadline_s=self.deadline_s,
            max_cooldown_wait=self.max_cooldown_wait,
            on_chunk=on_chunk,
            buffer_attempts=stream and self.on_stream_interrupt == "restart",
        )
        # Nothing can serve (a total outage, no fallback left): fail now, without a graph run.
        self.engine.first_step(state)
        return state

    def _graph_config(self, run_manager: Any, callbacks_cls: type) -> RunnableConfig:
        cfg: RunnableConfig = {
            # A fresh root config: never inherit a parent graph's checkpointer or metadata.
            "configurable": {},
            "metadata": {},
            "tags": [],
            "recursion_limit": self.engine.max_attempts + 10,
            "callbacks": [],
        }
        if run_manager is not None and run_manager.handlers:
            cfg["callbacks"] = callbacks_cls(
                handlers=run_manager.handlers,
                inheritable_handlers=run_manager.inheritable_handlers,
                parent_run_id=run_manager.run_id,
                tags=run_manager.inheritable_tags,
                inheritable_tags=run_manager.inheritable_tags,
                metadata=run_manager.inheritable_metadata,
                inheritable_metadata=run_manager.inheritable_metadata,
            )
        return cfg

    def _guard(self, kwargs: dict[str, Any]) -> Any:
        """This request's router-level guardrails; their names leave the deployments' switches."""
        if not self.local_guardrails:
            return None
        from gatewaykit.guardrails.runner import GuardrailSet

        gs = GuardrailSet(self.local_guardrails)
        toggles = kwargs.get("guardrails")
        active = gs.select(toggles)
        rest = gs.remote(toggles)
        if toggles is not None:
            if rest:
                kwargs["guardrails"] = rest
            else:
                kwargs.pop("guardrails")
        return active

    def _finish(self, state: RouterState) -> ChatResult:
        result = state.get("result")
        if result is None:
            raise self.engine.finish_error(state)
        routing = self.engine.routing_metadata(state)
        for gen in result.generations:
            gen.message.response_metadata["routing"] = routing
            if gen.generation_info is not None:
                gen.generation_info["routing"] = routing
        return result

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        guard = self._guard(kwargs)
        if guard is not None:
            messages = guard.pre(messages)
        state = self._start(messages, stop, kwargs, stream=False)
        out = self.graph.invoke(state, self._graph_config(run_manager, CallbackManager))
        result = self._finish(out)
        return guard.post_result(result) if guard is not None else result

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
        guard = self._guard(kwargs)
        if guard is not None:
            messages = await guard.apre(messages)
        state = self._start(messages, stop, kwargs, stream=False)
        out = await self.graph.ainvoke(state, self._graph_config(run_manager, AsyncCallbackManager))
        result = self._finish(out)
        return await guard.apost_result(result) if guard is not None else result

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        guard = self._guard(kwargs)
        if guard is None:
            yield from self._stream_routed(messages, stop, run_manager, **kwargs)
            return
        source = self._stream_routed(guard.pre(messages), stop, None, **kwargs)
        yield from guard.stream(source, run_manager)

    def _stream_routed(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # The graph runs in a worker thread and hands chunks over a queue, so tokens reach
        # the caller as they arrive while the graph keeps owning retries and fallbacks.
        chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        state = self._start(messages, stop, kwargs, stream=True, on_chunk=chunks.put)
        cfg = self._graph_config(run_manager, CallbackManager)
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["state"] = self.graph.invoke(state, cfg)
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc
            finally:
                chunks.put(_DONE)

        import contextvars

        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(run,), daemon=True)
        worker.start()
        while True:
            item = chunks.get()
            if item is _DONE:
                break
            yield item
        worker.join()
        if "error" in box:
            raise box["error"]
        yield self._final_chunk(box["state"])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        guard = self._guard(kwargs)
        if guard is None:
            async for chunk in self._astream_routed(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        source = self._astream_routed(await guard.apre(messages), stop, None, **kwargs)
        async for chunk in guard.astream(source, run_manager):
            yield chunk

    async def _astream_routed(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        import asyncio

        chunks: asyncio.Queue[Any] = asyncio.Queue()
        state = self._start(messages, stop, kwargs, stream=True, on_chunk=chunks.put_nowait)
        cfg = self._graph_config(run_manager, AsyncCallbackManager)

        async def run() -> RouterState:
            try:
                return await self.graph.ainvoke(state, cfg)  # type: ignore[no-any-return]
            finally:
                chunks.put_nowait(_DONE)

        task = asyncio.ensure_future(run())
        try:
            while True:
                item = await chunks.get()
                if item is _DONE:
                    break
                yield item
            out = await task
        finally:
            if not task.done():
                task.cancel()
        yield self._final_chunk(out)

    def _final_chunk(self, state: RouterState) -> ChatGenerationChunk:
        """An empty closing chunk that carries ``response_metadata["routing"]``."""
        if state.get("result") is None:
            raise self.engine.finish_error(state)
        routing = self.engine.routing_metadata(state)
        return ChatGenerationChunk(
            message=AIMessageChunk(content=""), generation_info={"routing": routing}
        )


def openai_tool_binding(
    tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
    tool_choice: dict[str, Any] | str | bool | None,
    strict: bool | None,
    parallel_tool_calls: bool | None,
) -> dict[str, Any]:
    """``bind`` kwargs for tools in OpenAI format, with ChatOpenAI's ``tool_choice`` mapping
    (``"any"``/``True`` -> ``"required"``, a tool name -> that function)."""
    out: dict[str, Any] = {"tools": [convert_to_openai_tool(t, strict=strict) for t in tools]}
    if tool_choice is not None and tool_choice is not False:
        if tool_choice in ("any", True, "required"):
            tool_choice = "required"
        elif isinstance(tool_choice, str) and tool_choice not in ("auto", "none"):
            tool_choice = {"type": "function", "function": {"name": tool_choice}}
        out["tool_choice"] = tool_choice
    if parallel_tool_calls is not None:
        out["parallel_tool_calls"] = parallel_tool_calls
    return out


def _graph_for(engine: RouterEngine) -> Any:
    graph = getattr(engine, "_graph", None)
    if graph is None:
        graph = build_router_graph(engine)
        engine._graph = graph  # type: ignore[attr-defined]
    return graph
