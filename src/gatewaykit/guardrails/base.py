"""The guardrail contract: a pre-call hook on the messages, a post-call hook on the answer.

A :class:`Guardrail` sees the messages before they leave the process and the ``AIMessage``
that comes back; each hook returns the (maybe masked) value or blocks with
:class:`~gatewaykit.GuardrailBlocked`. :class:`TextGuardrail` is the common case: it only has to
find spans in a piece of text (:meth:`TextGuardrail.scan`), and gets message walking, masking,
tool-call arguments and streaming for free.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NoReturn

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from gatewaykit.errors import GuardrailBlocked

__all__ = [
    "Block",
    "Finding",
    "Guardrail",
    "Stage",
    "TextGuardrail",
    "apply_findings",
    "map_text",
]

Stage = Literal["pre_call", "post_call"]
STAGES: tuple[Stage, ...] = ("pre_call", "post_call")


class Block(Exception):
    """Raise from a custom hook to refuse; gatewaykit turns it into ``GuardrailBlocked``.

    Example::

        def no_secrets(text: str) -> str:
            if "BEGIN PRIVATE KEY" in text:
                raise Block("private_key")
            return text
    """

    def __init__(self, rule: str, reason: str | None = None) -> None:
        super().__init__(rule)
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Finding:
    """One span a guardrail found in a text: mask it with ``replacement`` or block the call."""

    start: int
    end: int
    rule: str
    action: Literal["mask", "block"] = "mask"
    replacement: str = ""


def apply_findings(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with every mask finding replaced (overlaps: the earlier, longer one wins)."""
    if not findings:
        return text
    out: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: (f.start, -(f.end - f.start))):
        if f.start < pos or f.action != "mask":
            continue
        out.append(text[pos : f.start])
        out.append(f.replacement)
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


class Guardrail:
    """Base of every guardrail: override :meth:`pre_call` and/or :meth:`post_call`.

    ``name`` is what a config, a per-request switch (``guardrails={"name": False}``) and
    :class:`~gatewaykit.GuardrailBlocked` call it; ``stages`` says which hooks run;
    ``default_on=False`` runs it only when a request names it. The async twins call the sync
    hooks unless overridden; a class that only defines the async ones still works on sync
    paths (the coroutine runs on a private loop).

    Example::

        class NoSqlDump(Guardrail):
            def pre_call(self, messages):
                if any("DROP TABLE" in m.text for m in messages):
                    self.block("sql", "pre_call")
                return messages

        llm = with_guardrails(ChatOpenAI(), [NoSqlDump(name="no-sql")])
    """

    name: str = "guardrail"
    stages: frozenset[Stage] = frozenset(STAGES)
    default_on: bool = True
    streams: ClassVar[bool] = False
    """True when :meth:`post_call` can run on a stream window by window (text guardrails)."""

    def __init__(
        self,
        *,
        name: str | None = None,
        stages: Collection[Stage] | None = None,
        default_on: bool | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        if stages is not None:
            bad = [s for s in stages if s not in STAGES]
            if bad:
                raise ValueError(f"stages: unknown stage(s) {bad}; use pre_call and/or post_call")
            self.stages = frozenset(stages)
        if default_on is not None:
            self.default_on = default_on

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, stages={sorted(self.stages)})"

    # ------------------------------------------------------------------ hooks

    def pre_call(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """The messages to send (maybe masked); raise via :meth:`block` to refuse."""
        if _overrides(self, "apre_call"):
            out: list[BaseMessage] = _run_sync(self.apre_call(messages))
            return out
        return messages

    def post_call(self, message: AIMessage) -> AIMessage:
        """The answer to return (maybe masked); raise via :meth:`block` to refuse."""
        if _overrides(self, "apost_call"):
            answer: AIMessage = _run_sync(self.apost_call(message))
            return answer
        return message

    async def apre_call(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """Async twin of :meth:`pre_call`."""
        return self.pre_call(messages)

    async def apost_call(self, message: AIMessage) -> AIMessage:
        """Async twin of :meth:`post_call`."""
        return self.post_call(message)

    def block(self, rule: str, stage: Stage, reason: str | None = None) -> NoReturn:
        """Refuse the call, naming this guardrail and ``rule`` (never the offending text)."""
        raise blocked(self.name, rule, stage, reason)


def blocked(name: str, rule: str, stage: str, reason: str | None = None) -> GuardrailBlocked:
    """The typed error for a local refusal; ``reason`` must not contain user text."""
    what = "input" if stage == "pre_call" else "answer"
    why = f": {reason}" if reason else ""
    return GuardrailBlocked(
        f"guardrail {name!r} blocked the {what} (rule {rule}){why}",
        guardrail=name,
        rule=rule,
        stage=stage,
        status=400,
        type="guardrail_blocked",
    )


def _overrides(obj: object, method: str) -> bool:
    return getattr(type(obj), method) is not getattr(Guardrail, method)


def _run_sync(coro: Awaitable[Any]) -> Any:
    """Run an async-only hook from sync code (in a worker thread when a loop is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(coro))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _await(coro)).result()


async def _await(aw: Awaitable[Any]) -> Any:
    return await aw


# ---------------------------------------------------------------------------- text guardrails


class TextGuardrail(Guardrail):
    """A guardrail that finds spans in text; message walking and streaming come with it.

    Subclasses implement :meth:`scan`. ``window`` is the longest text one finding can span: a
    stream holds back at most that much (see :mod:`gatewaykit.guardrails.streaming`).

    Example::

        class NoTicketIds(TextGuardrail):
            window = 12
            def scan(self, text, stage):
                return [Finding(m.start(), m.end(), "ticket", "mask", "[TICKET]")
                        for m in re.finditer(r"JIRA-\\d+", text)]
    """

    streams: ClassVar[bool] = True
    window: int = 64
    roles: frozenset[str] | None = None
    """Message types checked before the call (``human``, ``system``, ``ai``, ``tool``); all
    when None."""

    def scan(self, text: str, stage: Stage) -> list[Finding]:
        """Every span of ``text`` to mask or to block for."""
        raise NotImplementedError

    def hold_from(self, text: str) -> int:
        """Streaming: the earliest index of ``text`` that a finding could still grow from.

        The default holds the last ``window`` characters; detectors that know their shape hold
        back less.
        """
        return max(0, len(text) - self.window)

    def apply_text(self, text: str, stage: Stage) -> str:
        """``text`` masked, or :class:`GuardrailBlocked` when a blocking rule matches."""
        if not text:
            return text
        findings = self.scan(text, stage)
        for f in findings:
            if f.action == "block":
                self.block(f.rule, stage)
        return apply_findings(text, findings)

    def pre_call(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        out: list[BaseMessage] = []
        for m in messages:
            if self.roles is not None and m.type not in self.roles:
                out.append(m)
                continue
            out.append(map_message(m, lambda t: self.apply_text(t, "pre_call")))
        return out

    def post_call(self, message: AIMessage) -> AIMessage:
        return map_ai_message(message, lambda t: self.apply_text(t, "post_call"))


# ---------------------------------------------------------------------------- message walking


def map_text(value: Any, fn: Callable[[str], str]) -> Any:
    """Apply ``fn`` to every string leaf of a JSON-like value (dicts, lists, pydantic models)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, BaseModel):
        return map_text(value.model_dump(mode="json"), fn)
    if isinstance(value, dict):
        return {k: map_text(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_text(v, fn) for v in value]
    return value


def _map_content(content: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        out: list[Any] = []
        for block in content:
            if isinstance(block, str):
                out.append(fn(block))
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                out.append({**block, "text": fn(block["text"])})
            else:
                out.append(block)
        return out
    return content


def map_message(message: BaseMessage, fn: Callable[[str], str]) -> BaseMessage:
    """A copy of ``message`` with its text (and, for an AI message, tool calls) mapped."""
    if isinstance(message, AIMessage):
        return map_ai_message(message, fn)
    new = _map_content(message.content, fn)
    if new == message.content:
        return message
    return message.model_copy(update={"content": new})


def map_ai_message(message: AIMessage, fn: Callable[[str], str]) -> AIMessage:
    """Text, tool-call arguments (parsed and raw) and a structured ``parsed`` value, mapped."""
    update: dict[str, Any] = {}
    content = _map_content(message.content, fn)
    if content != message.content:
        update["content"] = content
    if message.tool_calls:
        update["tool_calls"] = [
            {**tc, "args": map_text(tc["args"], fn)} for tc in message.tool_calls
        ]
    if message.invalid_tool_calls:
        update["invalid_tool_calls"] = [
            {**tc, "args": fn(args) if isinstance(args := tc.get("args"), str) else args}
            for tc in message.invalid_tool_calls
        ]
    kwargs = message.additional_kwargs
    if kwargs.get("tool_calls") or kwargs.get("parsed") is not None:
        new_kwargs = dict(kwargs)
        raw_calls = kwargs.get("tool_calls")
        if isinstance(raw_calls, list):
            new_kwargs["tool_calls"] = [_map_raw_call(c, fn) for c in raw_calls]
        if kwargs.get("parsed") is not None:
            # Re-validated by the structured-output parser from the masked dict.
            new_kwargs["parsed"] = map_text(kwargs["parsed"], fn)
        update["additional_kwargs"] = new_kwargs
    if not update:
        return message
    return message.model_copy(update=update)


def _map_raw_call(call: Any, fn: Callable[[str], str]) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    args = call["function"].get("arguments")
    if not isinstance(args, str):
        return call
    try:
        mapped = json.dumps(map_text(json.loads(args), fn), ensure_ascii=False)
    except ValueError:
        mapped = fn(args)
    return {**call, "function": {**call["function"], "arguments": mapped}}


def is_async_callable(fn: Any) -> bool:
    """True for ``async def`` functions and objects whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )
