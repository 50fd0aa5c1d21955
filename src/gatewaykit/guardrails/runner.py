"""Which guardrails run on a call, and running them: pre-call, post-call, streams.

A :class:`GuardrailSet` holds a model's local guardrails. Per request, the run option
``guardrails`` switches them: ``{"pii-masking": False}`` turns one off, ``{"name": True}`` or
``["name"]`` turns on one that is not ``default_on``. Names that are not local are left for the
gateway (see :meth:`GuardrailSet.select`).

Example::

    gs = GuardrailSet([PIIGuardrail(), ContentFilter(["forbidden"])])
    active = gs.select({"pii-masking": False})
    messages = active.pre(messages)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.outputs.chat_generation import ChatGeneration

from gatewaykit.guardrails.base import Block, Guardrail, blocked
from gatewaykit.guardrails.streaming import StreamGuardrails

__all__ = ["ActiveGuardrails", "GuardrailSet", "as_guardrail", "names_of"]

Toggles = Sequence[str] | Mapping[str, bool] | None


def as_guardrail(value: Any) -> Guardrail:
    """A :class:`Guardrail` as is; a plain function ``text -> text`` becomes a text hook."""
    if isinstance(value, Guardrail):
        return value
    if callable(value):
        from gatewaykit.guardrails.custom import FunctionGuardrail

        return FunctionGuardrail(value)
    raise TypeError(
        f"not a guardrail: {type(value).__name__}; pass a gatewaykit Guardrail or a function "
        "that takes a text and returns it (masked), raising Block(rule) to refuse"
    )


def names_of(toggles: Toggles) -> dict[str, bool]:
    """The request's ``guardrails`` option as ``{name: on}``."""
    if toggles is None:
        return {}
    if isinstance(toggles, Mapping):
        return {str(k): bool(v) for k, v in toggles.items()}
    if isinstance(toggles, str):
        return {toggles: True}
    return dict.fromkeys((str(t) for t in toggles), True)


class ActiveGuardrails:
    """The guardrails that run on one request, in order."""

    __slots__ = ("guardrails", "post_guardrails", "pre_guardrails")

    def __init__(self, guardrails: Sequence[Guardrail]) -> None:
        self.guardrails = list(guardrails)
        self.pre_guardrails = [g for g in guardrails if "pre_call" in g.stages]
        self.post_guardrails = [g for g in guardrails if "post_call" in g.stages]

    def __bool__(self) -> bool:
        return bool(self.guardrails)

    def pre(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """The messages after every pre-call hook (masked), or ``GuardrailBlocked``."""
        for g in self.pre_guardrails:
            messages = _call(g, "pre_call", lambda g=g, m=messages: g.pre_call(m))  # type: ignore[misc]
        return messages

    async def apre(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """Async twin of :meth:`pre`."""
        for g in self.pre_guardrails:
            try:
                messages = await g.apre_call(messages)
            except Block as b:
                raise blocked(g.name, b.rule, "pre_call", b.reason) from None
        return messages

    def post(self, message: AIMessage) -> AIMessage:
        """The answer after every post-call hook (masked), or ``GuardrailBlocked``."""
        for g in self.post_guardrails:
            message = _call(g, "post_call", lambda g=g, m=message: g.post_call(m))  # type: ignore[misc]
        return message

    async def apost(self, message: AIMessage) -> AIMessage:
        """Async twin of :meth:`post`."""
        for g in self.post_guardrails:
            try:
                message = await g.apost_call(message)
            except Block as b:
                raise blocked(g.name, b.rule, "post_call", b.reason) from None
        return message

    def post_result(self, result: ChatResult) -> ChatResult:
        """A ``ChatResult`` with every generation's message through :meth:`post`."""
        if not self.post_guardrails:
            return result
        gens = [_regen(g, self.post(g.message)) for g in result.generations]  # type: ignore[arg-type]
        return ChatResult(generations=gens, llm_output=result.llm_output)

    async def apost_result(self, result: ChatResult) -> ChatResult:
        """Async twin of :meth:`post_result`."""
        if not self.post_guardrails:
            return result
        gens = [_regen(g, await self.apost(g.message)) for g in result.generations]  # type: ignore[arg-type]
        return ChatResult(generations=gens, llm_output=result.llm_output)

    def stream(
        self, chunks: Iterable[ChatGenerationChunk], run_manager: Any = None
    ) -> Iterator[ChatGenerationChunk]:
        """Post-call guardrails over a sync stream (see :mod:`.streaming`). With the model's
        ``run_manager`` (the raw stream then runs without one), callbacks see masked tokens
        only."""
        if self.post_guardrails:
            chunks = StreamGuardrails(self.post_guardrails).run(iter(chunks))
        for chunk in chunks:
            if run_manager is not None and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def astream(
        self, chunks: AsyncIterator[ChatGenerationChunk], run_manager: Any = None
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Post-call guardrails over an async stream; async twin of :meth:`stream`."""
        if self.post_guardrails:
            chunks = StreamGuardrails(self.post_guardrails).arun(chunks)
        async for chunk in chunks:
            if run_manager is not None and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def _call(g: Guardrail, stage: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Block as b:
        raise blocked(g.name, b.rule, stage, b.reason) from None


def _regen(gen: ChatGeneration, message: AIMessage) -> ChatGeneration:
    if message is gen.message:
        return gen
    return ChatGeneration(message=message, generation_info=gen.generation_info)


class GuardrailSet:
    """A model's local guardrails, selectable per request.

    Example::

        gs = GuardrailSet([PIIGuardrail(), PromptInjectionGuardrail(default_on=False)])
        gs.select(["prompt-injection"]).pre(messages)   # both run
        gs.select({"pii-masking": False})               # nothing runs
    """

    def __init__(self, guardrails: Iterable[Any] = ()) -> None:
        self.guardrails: list[Guardrail] = [as_guardrail(g) for g in guardrails]
        seen: set[str] = set()
        for g in self.guardrails:
            if g.name in seen:
                raise ValueError(f"two local guardrails are named {g.name!r}; names must differ")
            seen.add(g.name)

    def __bool__(self) -> bool:
        return bool(self.guardrails)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.guardrails]

    def select(self, toggles: Toggles = None) -> ActiveGuardrails:
        """The guardrails on for a request: ``default_on`` ones unless switched off, plus the
        ones the request names."""
        wanted = names_of(toggles)
        return ActiveGuardrails([g for g in self.guardrails if wanted.get(g.name, g.default_on)])

    def remote(self, toggles: Toggles) -> dict[str, bool]:
        """The request's switches for names that are not local (left for a gateway)."""
        local = set(self.names)
        return {n: on for n, on in names_of(toggles).items() if n not in local}
