"""Guardrails around any LangChain chat model.

:func:`with_guardrails` returns a :class:`GuardedChatModel`: a real ``BaseChatModel`` that
runs the pre-call hooks on the messages, calls the wrapped model, and runs the post-call hooks
on the answer (window by window when streaming). It composes like the model it wraps: ``|``,
``bind_tools``, ``with_structured_output``, ``batch``, ``stream``/``astream`` and callbacks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, field_validator

from gatewaykit._run_config import RunConfigChatModel
from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.guardrails.runner import ActiveGuardrails, GuardrailSet, as_guardrail

__all__ = ["GuardedChatModel", "with_guardrails"]


def _accepts_gateway_guardrails(model: Any) -> bool:
    """True when the wrapped model sends a ``guardrails`` option on to a gateway."""
    from gatewaykit.chat_model import GatewayChatModel

    inner = getattr(model, "bound", model)
    if isinstance(inner, GatewayChatModel):
        return inner.dialect == "litellm"
    return type(inner).__name__ == "RouterChatModel"


class GuardedChatModel(RunConfigChatModel):
    """A chat model with local guardrails around another one.

    The wrapped model receives the masked messages; the caller receives the masked answer.
    Per request, ``guardrails={"pii-masking": False}`` (or a list of names to switch on)
    selects them; names that are not local are passed on when the wrapped model talks to a
    gateway (:class:`~gatewaykit.GatewayChatModel`, :class:`~gatewaykit.RouterChatModel`) and
    are a :class:`~gatewaykit.ConfigError` otherwise.

    Callback handlers see this model's run: the input as given, the answer masked. The wrapped
    model's own run is traced only with ``trace_inner=True`` (it would show the unmasked
    answer).

    Example::

        from gatewaykit.guardrails import PIIGuardrail, ContentFilter, with_guardrails

        llm = with_guardrails(ChatOpenAI(model="gpt-4o-mini"),
                              [PIIGuardrail(), ContentFilter(["project bluebird"])])
        chain = prompt | llm | StrOutputParser()
        chain.invoke({"q": "my card is 4242 4242 4242 4242"})   # the provider sees [CARD]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Runnable[LanguageModelInput, BaseMessage] = Field(exclude=True)
    """The wrapped chat model (or a ``bind``/``bind_tools`` of one)."""
    guardrails: list[Any] = Field(default_factory=list, exclude=True)
    """Guardrail objects (or plain ``text -> text`` functions)."""
    trace_inner: bool = False
    """Also trace the wrapped model's own run (its output is unmasked there)."""

    @field_validator("guardrails", mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> list[Any]:
        gs = GuardrailSet(list(value or []))  # validates types and unique names
        return gs.guardrails

    @property
    def _set(self) -> GuardrailSet:
        return GuardrailSet(self.guardrails)

    @property
    def _llm_type(self) -> str:
        return "gatewaykit-guarded"

    @property
    def model_name(self) -> str:
        """The wrapped model's name (ChatOpenAI's structured-output path reads it)."""
        inner = getattr(self.model, "bound", self.model)
        return str(getattr(inner, "model_name", None) or getattr(inner, "model", "") or "")

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def _identifying_params(self) -> dict[str, Any]:
        inner = getattr(self.model, "_identifying_params", {})
        return {**inner, "guardrails": [g.name for g in self.guardrails]}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        inner = getattr(self.model, "bound", self.model)
        if isinstance(inner, BaseChatModel):
            inner_params = inner._get_ls_params(stop=stop)
            for key in ("ls_provider", "ls_model_name"):
                if inner_params.get(key):
                    params[key] = inner_params[key]  # type: ignore[literal-required]
        return params

    # ------------------------------------------------------------------ composition

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The wrapped model's ``bind_tools``, still guarded (tool-call arguments are masked)."""
        bound = self.model.bind_tools(tools, **kwargs)  # type: ignore[attr-defined]
        return self.model_copy(update={"model": bound})  # type: ignore[return-value]

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] | None = None,
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output parsed from the *masked* answer.

        OpenAI-compatible wrapped models keep their methods (``json_schema``, ``json_mode``,
        function calling); others use tool calling through :meth:`bind_tools`.
        """
        from langchain_openai.chat_models.base import BaseChatOpenAI

        inner = getattr(self.model, "bound", self.model)
        openai_like = isinstance(inner, BaseChatOpenAI) or type(inner).__name__ == "RouterChatModel"
        if openai_like:
            return BaseChatOpenAI.with_structured_output(  # type: ignore[no-any-return]
                self,  # type: ignore[arg-type]
                schema,
                method=method or "function_calling",
                include_raw=include_raw,
                strict=strict,
                **kwargs,
            )
        if method not in (None, "function_calling"):
            raise ValueError(
                f"method={method!r} needs an OpenAI-compatible wrapped model; use the default "
                "(function calling)"
            )
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    def _filter_disabled_params(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    # ------------------------------------------------------------------ calls

    def _call_options(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> Any:
        # The caller's configurable values (a thread id, for one) and recursion limit are for
        # the wrapped model: an agent behind guardrails keeps its conversation.
        caller = {
            k: config[k] for k in ("configurable", "recursion_limit") if config and k in config
        }  # type: ignore[literal-required]
        return {**kwargs, "caller_config": caller} if caller else kwargs

    def _split(
        self, kwargs: dict[str, Any]
    ) -> tuple[ActiveGuardrails, dict[str, Any], dict[str, Any]]:
        caller: dict[str, Any] = kwargs.pop("caller_config", None) or {}
        toggles = kwargs.pop("guardrails", None)
        gs = self._set
        active = gs.select(toggles)
        remote = gs.remote(toggles)
        if remote:
            if not _accepts_gateway_guardrails(self.model):
                raise ConfigError(
                    ConfigProblem(
                        "guardrails",
                        f"guardrail(s) {sorted(remote)} are not local ({', '.join(gs.names)}) "
                        "and the wrapped model does not talk to a gateway that could run them",
                    )
                )
            kwargs["guardrails"] = remote
        return active, kwargs, caller

    def _config(self, run_manager: Any, caller: dict[str, Any]) -> RunnableConfig | None:
        cfg: RunnableConfig = {**caller}  # type: ignore[typeddict-item]
        if self.trace_inner and run_manager is not None:
            cfg["callbacks"] = run_manager.get_child()
        else:
            cfg["callbacks"] = []
        return cfg

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        active, kwargs, caller = self._split(kwargs)
        guarded = active.pre(messages)
        out = self.model.invoke(guarded, self._config(run_manager, caller), stop=stop, **kwargs)
        message = _as_ai(out)
        return ChatResult(generations=[ChatGeneration(message=active.post(message))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        active, kwargs, caller = self._split(kwargs)
        guarded = await active.apre(messages)
        out = await self.model.ainvoke(
            guarded, self._config(run_manager, caller), stop=stop, **kwargs
        )
        message = _as_ai(out)
        return ChatResult(generations=[ChatGeneration(message=await active.apost(message))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        active, kwargs, caller = self._split(kwargs)
        guarded = active.pre(messages)
        source = (
            ChatGenerationChunk(message=c)  # type: ignore[arg-type]
            for c in self.model.stream(
                guarded, self._config(run_manager, caller), stop=stop, **kwargs
            )
        )
        yield from active.stream(source, run_manager)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        active, kwargs, caller = self._split(kwargs)
        guarded = await active.apre(messages)

        async def source() -> AsyncIterator[ChatGenerationChunk]:
            async for c in self.model.astream(
                guarded, self._config(run_manager, caller), stop=stop, **kwargs
            ):
                yield ChatGenerationChunk(message=c)  # type: ignore[arg-type]

        async for chunk in active.astream(source(), run_manager):
            yield chunk


def _as_ai(out: Any) -> AIMessage:
    out = message_chunk_to_message(out) if isinstance(out, AIMessageChunk) else out
    if isinstance(out, AIMessage):
        return out
    raise TypeError(f"the wrapped model returned {type(out).__name__}, not an AIMessage")


def with_guardrails(
    model: Runnable[LanguageModelInput, BaseMessage],
    guardrails: Sequence[Any],
    *,
    trace_inner: bool = False,
) -> GuardedChatModel:
    """Wrap any chat model with local guardrails (objects or ``text -> text`` functions).

    Example::

        llm = with_guardrails(ChatAnthropic(model="claude-sonnet-4-6"), [PIIGuardrail()])
    """
    return GuardedChatModel(
        model=model, guardrails=[as_guardrail(g) for g in guardrails], trace_inner=trace_inner
    )
