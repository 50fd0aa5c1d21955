"""Structured output that is validated, repaired, and never wrong in silence.

``structured(model, Schema)`` is a Runnable that asks ``model`` for a ``Schema`` and returns the
validated object. Unlike ``with_structured_output`` it re-asks the model when the answer is not
valid JSON or breaks the schema, showing the model its own answer and the exact errors; it never
returns ``None`` for a malformed tool call or a prose answer; and every failure it cannot repair
ends in a typed error that carries every attempt::

    StructuredOutputError (gatewaykit.errors)   attempts
    ├── StructuredOutputInvalid                 no attempt was valid, repairs and fallbacks spent
    ├── StructuredOutputRefused                 the model refused (never re-asked)
    └── StructuredOutputTruncated               cut off by the token limit (raise max_tokens)

What happens to each kind of bad answer:

==========================================  ===============================================
answer                                      what ``structured()`` does
==========================================  ===============================================
valid JSON in a code fence, or with prose   parsed locally, no extra call (``salvaged``)
invalid JSON (also malformed tool args)     re-asked with the decoder's error
schema violation (missing field, wrong      re-asked with every validation error, one per
type, value outside an enum)                line, naming the field
prose instead of the tool call              re-asked ("call the tool"); JSON found in the
                                            prose is used as is
refusal                                     :class:`StructuredOutputRefused` at once
``finish_reason == "length"``               not re-asked on the same model (the same limit
                                            cuts it again); the next fallback model is tried,
                                            else :class:`StructuredOutputTruncated`
gateway / transport error                   raised unchanged (retries and failover belong to
                                            the model: GatewayChatModel, RouterChatModel)
==========================================  ===============================================

Example::

    from typing import Literal
    from pydantic import BaseModel
    from gatewaykit import GatewayChatModel
    from gatewaykit.structured import structured

    class CodeReview(BaseModel):
        score: int
        issues: list[str]
        recommendation: Literal["approve", "request_changes", "needs_work"]

    review = structured(GatewayChatModel.from_config("config.yaml", "smart"), CodeReview)
    review.invoke("Review this diff: ...")          # -> CodeReview(score=7, ...)
"""

from __future__ import annotations

import contextlib
import json
import operator
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config, patch_config
from langchain_core.runnables.config import (
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from langchain_core.utils.function_calling import convert_to_openai_function
from langchain_core.utils.json import parse_partial_json
from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import is_typeddict

from gatewaykit.errors import StructuredOutputError

__all__ = [
    "ATTEMPT_RUN_NAME",
    "FailureReason",
    "Method",
    "StructuredAttempt",
    "StructuredOutputInvalid",
    "StructuredOutputRefused",
    "StructuredOutputRunnable",
    "StructuredOutputTruncated",
    "choose_method",
    "structured",
]

Method = Literal["json_schema", "function_calling", "json_mode"]
"""How the schema is asked for: ``response_format`` json_schema, a forced tool call, or
``response_format`` json_object with the schema in a system message."""

FailureReason = Literal[
    "invalid_json",
    "schema_violation",
    "no_tool_call",
    "empty",
    "refusal",
    "truncated",
]
"""Why an attempt was rejected (``StructuredAttempt.reason``)."""

ATTEMPT_RUN_NAME = "structured_attempt"
"""Name of the child run of each model call (metadata: ``structured_attempt``,
``structured_repair``, ``structured_method``, ``structured_model``)."""

_METHODS: tuple[Method, ...] = ("json_schema", "function_calling", "json_mode")
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_SHOWN = 160


# --------------------------------------------------------------------------------------------
# Errors


class StructuredOutputInvalid(StructuredOutputError):
    """Every attempt answered, none with a valid object, and the repairs and fallbacks are spent.

    ``attempts[i].error`` says what was wrong with each answer (the same text the model was
    shown when it was re-asked).

    Example::

        try:
            review.invoke(diff)
        except StructuredOutputInvalid as e:
            log.warning("no CodeReview: %s", [a.as_dict() for a in e.attempts])
    """

    reason: ClassVar[str] = "invalid"


class StructuredOutputRefused(StructuredOutputError):
    """The model refused to answer (``refusal`` holds its words).

    Never re-asked and never sent to a fallback model: a refusal is the model declining the
    content, not a formatting mistake, so the caller decides what happens next.

    Example::

        try:
            review.invoke(diff)
        except StructuredOutputRefused as e:
            return f"The reviewer declined: {e.refusal}"
    """

    reason: ClassVar[str] = "refusal"

    def __init__(self, message: str, *, refusal: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.refusal = refusal


class StructuredOutputTruncated(StructuredOutputError):
    """The answer was cut off by the output token limit (``finish_reason == "length"``).

    Re-asking with the same limit would be cut off again, so it is not repaired; raise
    ``max_tokens`` (``max_tokens`` holds the limit in force when it is known).

    Example::

        try:
            review.invoke(diff)
        except StructuredOutputTruncated as e:
            review.invoke(diff, max_tokens=2 * (e.max_tokens or 1024))
    """

    reason: ClassVar[str] = "truncated"

    def __init__(
        self,
        message: str,
        *,
        max_tokens: int | None = None,
        partial: str = "",
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.max_tokens = max_tokens
        self.partial = partial


# --------------------------------------------------------------------------------------------
# Attempts


@dataclass(frozen=True, kw_only=True, slots=True)
class StructuredAttempt:
    """One model call made by :func:`structured`, and the verdict on its answer.

    Example::

        try:
            review.invoke("...")
        except StructuredOutputError as e:
            for a in e.attempts:
                print(a.number, a.model, a.method, a.reason, a.error, a.output[:80])
    """

    number: int
    """1-based, counted over every model tried."""
    model: str
    """Name of the model that answered (its alias)."""
    method: Method
    """How the schema was asked for."""
    ok: bool
    """The answer validated."""
    reason: FailureReason | None = None
    """Why the answer was rejected (None when ``ok``)."""
    error: str | None = None
    """The exact errors, as shown to the model when it was re-asked."""
    output: str = ""
    """The text that was parsed: the message content, or the tool call's arguments."""
    raw: BaseMessage | None = field(default=None, repr=False, compare=False)
    """The model's message."""
    finish_reason: str | None = None
    salvaged: str | None = None
    """How valid JSON was recovered without a new call: ``"fenced"`` (a code block),
    ``"extracted"`` (an object inside prose) or ``"content"`` (JSON in the text instead of the
    tool call)."""
    repair: int = 0
    """0 for a model's first attempt, then 1, 2... for each re-ask on the same model."""
    latency_ms: float = 0.0
    usage: Mapping[str, Any] | None = None
    """The message's ``usage_metadata``."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (the raw message left out)."""
        return {
            "number": self.number,
            "model": self.model,
            "method": self.method,
            "ok": self.ok,
            "reason": self.reason,
            "error": self.error,
            "output": self.output,
            "finish_reason": self.finish_reason,
            "salvaged": self.salvaged,
            "repair": self.repair,
            "latency_ms": self.latency_ms,
            "usage": dict(self.usage) if self.usage is not None else None,
        }


# --------------------------------------------------------------------------------------------
# Schemas


class _Reject(Exception):
    """An answer that is not a valid object (internal; becomes a StructuredAttempt)."""

    def __init__(self, reason: FailureReason, summary: str, details: Sequence[str] = ()) -> None:
        super().__init__(summary)
        self.reason: FailureReason = reason
        self.summary = summary
        self.details = list(details)

    @property
    def text(self) -> str:
        return "\n".join([self.summary, *self.details])


class _Schema:
    """A pydantic model, TypedDict or JSON-schema dict: its wire form and its validator."""

    def __init__(self, schema: Any) -> None:
        self.source = schema
        self.kind: Literal["pydantic", "typeddict", "dict"]
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            self.kind = "pydantic"
        elif is_typeddict(schema):
            self.kind = "typeddict"
        elif isinstance(schema, Mapping):
            self.kind = "dict"
        else:
            raise TypeError(
                "schema must be a pydantic model class, a TypedDict or a JSON schema dict, "
                f"got {schema!r}"
            )
        fn = convert_to_openai_function(schema)  # type: ignore[arg-type]
        self.name: str = fn["name"]
        self.description: str = fn.get("description") or ""
        self.parameters: dict[str, Any] = fn["parameters"]
        strict_fn = convert_to_openai_function(schema, strict=True)  # type: ignore[arg-type]
        self.strict_parameters: dict[str, Any] = strict_fn["parameters"]
        self.strict_compatible = _strict_compatible(self.parameters)
        self._adapter: TypeAdapter[Any] | None = (
            TypeAdapter(schema) if self.kind == "typeddict" else None
        )

    def validate(self, data: Any) -> Any:
        if self.kind == "pydantic":
            try:
                return self.source.model_validate(data)
            except ValidationError as exc:
                raise _violation(_pydantic_lines(exc)) from exc
        if self._adapter is not None:
            try:
                return self._adapter.validate_python(data)
            except ValidationError as exc:
                raise _violation(_pydantic_lines(exc)) from exc
        problems: list[str] = []
        _check(data, self.parameters, self.parameters, (), problems, 0)
        if problems:
            raise _violation(problems)
        return data

    def function(self, *, strict: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "parameters": self.strict_parameters if strict else self.parameters,
        }
        if self.description:
            out["description"] = self.description
        return out


def _violation(lines: list[str]) -> _Reject:
    return _Reject(
        "schema_violation",
        f"it does not match the schema ({len(lines)} error{'s' if len(lines) != 1 else ''}):",
        [f"- {line}" for line in lines],
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _pydantic_lines(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        line = f"{where}: {err['msg']}"
        if err["type"] != "missing":
            line += f" (got {_short(err.get('input'))})"
        lines.append(line)
    return lines


def _strict_compatible(node: Any) -> bool:
    """False when the schema has an open object (``dict[str, X]``, ``additionalProperties``),
    which OpenAI's strict mode cannot express. (Optional fields are fine: the strict form lists
    every property as required, and the model sends the default.)"""
    if isinstance(node, Mapping):
        extra = node.get("additionalProperties")
        if extra is True or isinstance(extra, Mapping):
            return False
        return all(_strict_compatible(v) for v in node.values())
    if isinstance(node, list):
        return all(_strict_compatible(v) for v in node)
    return True


_BOUNDS: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
    ("minimum", operator.ge, ">="),
    ("maximum", operator.le, "<="),
    ("exclusiveMinimum", operator.gt, ">"),
    ("exclusiveMaximum", operator.lt, "<"),
)
_JSON_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "null":
        return value is None
    return True


def _type_name(value: Any) -> str:
    for kind in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, kind):
            return kind
    return type(value).__name__


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    node: Any = root
    for raw in ref.lstrip("#").split("/"):
        if not raw:
            continue
        key = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            return {}
        node = node[key]
    return node


def _check(
    value: Any,
    node: Any,
    root: Mapping[str, Any],
    path: tuple[str, ...],
    problems: list[str],
    depth: int,
) -> None:
    """A JSON-schema subset for dict schemas: $ref, anyOf/oneOf/allOf, const, enum, type,
    properties, required, additionalProperties, items, and length / item-count / numeric
    bounds."""
    if not isinstance(node, Mapping) or depth > 32:
        return
    where = ".".join(path) or "(root)"
    if isinstance(node.get("$ref"), str):
        _check(value, _resolve(root, node["$ref"]), root, path, problems, depth + 1)
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and options:
            fits = False
            for option in options:
                trial: list[str] = []
                _check(value, option, root, path, trial, depth + 1)
                if not trial:
                    fits = True
                    break
            if not fits:
                problems.append(f"{where}: {_short(value)} matches none of the allowed shapes")
    for sub in node.get("allOf") or ():
        _check(value, sub, root, path, problems, depth + 1)
    if "const" in node and value != node["const"]:
        problems.append(f"{where}: must be {node['const']!r} (got {_short(value)})")
    enum = node.get("enum")
    if isinstance(enum, list) and value not in enum:
        problems.append(f"{where}: must be one of {enum} (got {_short(value)})")
    kinds = node.get("type")
    names = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []
    names = [n for n in names if n in _JSON_TYPES]
    if names and not any(_is_type(value, n) for n in names):
        problems.append(f"{where}: expected {' or '.join(names)}, got {_type_name(value)}")
        return
    if isinstance(value, dict):
        props = node.get("properties")
        props = props if isinstance(props, Mapping) else {}
        for name in node.get("required") or ():
            if name not in value:
                problems.append(f"{'.'.join((*path, str(name)))}: field required")
        extra = node.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                _check(item, props[key], root, (*path, str(key)), problems, depth + 1)
            elif extra is False:
                problems.append(f"{'.'.join((*path, str(key)))}: extra field not permitted")
            elif isinstance(extra, Mapping):
                _check(item, extra, root, (*path, str(key)), problems, depth + 1)
    elif isinstance(value, list):
        items = node.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                _check(item, items, root, (*path, str(i)), problems, depth + 1)
        low, high = node.get("minItems"), node.get("maxItems")
        if isinstance(low, int) and len(value) < low:
            problems.append(f"{where}: needs at least {low} item(s), got {len(value)}")
        if isinstance(high, int) and len(value) > high:
            problems.append(f"{where}: allows at most {high} item(s), got {len(value)}")
    elif isinstance(value, str):
        low, high = node.get("minLength"), node.get("maxLength")
        if isinstance(low, int) and len(value) < low:
            problems.append(f"{where}: needs at least {low} character(s)")
        if isinstance(high, int) and len(value) > high:
            problems.append(f"{where}: allows at most {high} character(s)")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        for key, holds, op in _BOUNDS:
            bound = node.get(key)
            if isinstance(bound, int | float) and not holds(value, bound):
                problems.append(f"{where}: must be {op} {bound} (got {value!r})")


# --------------------------------------------------------------------------------------------
# JSON from text


def _loads_object(text: str) -> tuple[Any, str | None]:
    """Strict JSON from an answer: as is, else inside a code fence, else the outermost
    ``{...}`` of the text. Returns ``(value, how)``; raises ``_Reject("invalid_json")``."""
    stripped = text.strip()
    if not stripped:
        raise _Reject("empty", "the answer was empty")
    try:
        return json.loads(stripped), None
    except json.JSONDecodeError as exc:
        first = exc
    fence = _FENCE.search(stripped)
    if fence:
        try:
            return json.loads(fence.group(1).strip()), "fenced"
        except json.JSONDecodeError as exc:
            first = exc
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end and (start, end) != (0, len(stripped) - 1):
        try:
            return json.loads(stripped[start : end + 1]), "extracted"
        except json.JSONDecodeError:
            pass
    raise _Reject("invalid_json", f"it is not valid JSON: {first}")


def _partial_object(text: str) -> Any:
    """Best-effort parse of an unfinished JSON object (streaming); None when nothing parses."""
    body = text.lstrip()
    if body.startswith("```"):
        newline = body.find("\n")
        body = "" if newline < 0 else body[newline + 1 :]
        body = body.split("```", 1)[0]
    elif not body.startswith("{"):
        start = body.find("{")
        if start < 0:
            return None
        body = body[start:]
    if not body.strip():
        return None
    try:
        return parse_partial_json(body)
    except (json.JSONDecodeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Capabilities


def _router_deployments(model: BaseChatModel) -> tuple[Any, ...] | None:
    router_mod = sys.modules.get("gatewaykit.routing.model")
    if router_mod is None or not isinstance(model, router_mod.RouterChatModel):
        return None
    group = model.config.resolve_group(model.model)
    return tuple(model.engine.group(group))


def _openai_like(model: BaseChatModel) -> bool:
    """Models that take OpenAI's ``response_format`` and ``parallel_tool_calls``."""
    oai = sys.modules.get("langchain_openai.chat_models.base")
    if oai is not None and isinstance(model, oai.BaseChatOpenAI):
        return True
    return _router_deployments(model) is not None


def _can_bind_tools(model: BaseChatModel) -> bool:
    return type(model).bind_tools is not BaseChatModel.bind_tools


def choose_method(model: BaseChatModel) -> Method:
    """The method :func:`structured` uses for ``model`` when none is given.

    * ``"json_schema"`` (strict when the schema allows) when the model declares native
      structured output: a RouterChatModel whose every deployment of the group has
      ``model_info.supports_response_schema``, or an OpenAI-compatible model (ChatOpenAI,
      GatewayChatModel) whose ``profile["structured_output"]`` is true
      (GatewayChatModel.from_config fills the profile from ``model_info``). Other providers'
      native formats differ from OpenAI's ``response_format``, so they get tool calling;
    * else ``"function_calling"`` when the model can bind tools and is not known to lack them
      (``profile["tool_calling"] is False``; for a router, when every deployment says
      ``supports_function_calling: false``);
    * else ``"json_mode"``.

    Example::

        choose_method(GatewayChatModel.from_config("config.yaml", "smart"))  # "json_schema"
    """
    deployments = _router_deployments(model)
    if deployments is not None:
        if deployments and all(d.supports_response_schema for d in deployments):
            return "json_schema"
        if not deployments or any(d.supports_function_calling is not False for d in deployments):
            return "function_calling"
        return "json_mode"
    profile: Mapping[str, Any] = getattr(model, "profile", None) or {}
    if profile.get("structured_output") and _openai_like(model):
        return "json_schema"
    if profile.get("tool_calling") is not False and _can_bind_tools(model):
        return "function_calling"
    return "json_mode"


def _model_name(model: BaseChatModel) -> str:
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def _max_tokens(model: BaseChatModel, kwargs: Mapping[str, Any]) -> int | None:
    for value in (
        kwargs.get("max_tokens"),
        kwargs.get("max_completion_tokens"),
        getattr(model, "max_tokens", None),
    ):
        if isinstance(value, int):
            return value
    return None


# --------------------------------------------------------------------------------------------
# Plans and sessions


@dataclass(frozen=True, slots=True)
class _Plan:
    """One model, its method, and the bound runnable that asks it for the schema."""

    model: BaseChatModel
    name: str
    method: Method
    runnable: Runnable[LanguageModelInput, BaseMessage]
    instructions: str | None

    def prepare(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        if not self.instructions:
            return list(messages)
        if messages and isinstance(messages[0], SystemMessage):
            first = messages[0]
            if isinstance(first.content, str):
                merged = SystemMessage(content=f"{first.content}\n\n{self.instructions}")
                return [merged, *messages[1:]]
        return [SystemMessage(content=self.instructions), *messages]


def _plan(model: BaseChatModel, schema: _Schema, method: Method, strict: bool | None) -> _Plan:
    name = _model_name(model)
    openai_like = _openai_like(model)
    if method == "json_schema":
        use_strict = schema.strict_compatible if strict is None else strict
        fmt: dict[str, Any] = {"name": schema.name}
        if schema.description:
            fmt["description"] = schema.description
        fmt["schema"] = schema.strict_parameters if use_strict else schema.parameters
        fmt["strict"] = use_strict
        bound: Runnable[Any, Any] = model.bind(
            response_format={"type": "json_schema", "json_schema": fmt},
            ls_structured_output_format={
                "kwargs": {"method": method, "strict": use_strict},
                "schema": schema.function(strict=use_strict),
            },
        )
        return _Plan(model, name, method, bound, None)
    if method == "function_calling":
        if not _can_bind_tools(model):
            raise ValueError(f"{name} cannot bind tools; use method='json_mode' or 'json_schema'")
        extra: dict[str, Any] = {}
        if strict is not None:
            extra["strict"] = strict
        if openai_like:
            extra["parallel_tool_calls"] = False
            extra["ls_structured_output_format"] = {
                "kwargs": {"method": method, "strict": strict},
                "schema": schema.function(strict=bool(strict)),
            }
        bound = model.bind_tools([schema.function(strict=False)], tool_choice=schema.name, **extra)
        return _Plan(model, name, method, bound, None)
    instructions = (
        "Answer with one JSON object and nothing else: no prose, no code fences. "
        f"It must match this JSON schema ({schema.name}):\n"
        + json.dumps(schema.parameters, separators=(",", ":"))
    )
    bound = model.bind(response_format={"type": "json_object"}) if openai_like else model
    return _Plan(model, name, method, bound, instructions)


@dataclass(slots=True)
class _Call:
    plan: _Plan
    messages: list[BaseMessage]
    number: int
    repair: int


@dataclass(slots=True)
class _Outcome:
    attempt: StructuredAttempt
    value: Any = None
    problem: _Reject | None = None
    feedback: list[BaseMessage] = field(default_factory=list)


@dataclass(slots=True)
class _Final:
    value: Any
    raw: BaseMessage | None
    attempts: list[StructuredAttempt]


class _Session:
    """The repair / fallback state machine for one input, free of any I/O."""

    __slots__ = (
        "attempts",
        "convo",
        "final",
        "index",
        "max_repairs",
        "messages",
        "plans",
        "repair",
    )

    def __init__(self, plans: list[_Plan], messages: list[BaseMessage], max_repairs: int) -> None:
        self.plans = plans
        self.messages = messages
        self.max_repairs = max_repairs
        self.index = 0
        self.repair = 0
        self.convo = plans[0].prepare(messages)
        self.attempts: list[StructuredAttempt] = []
        self.final: _Final | None = None

    def next_call(self) -> _Call | None:
        if self.final is not None:
            return None
        return _Call(self.plans[self.index], self.convo, len(self.attempts) + 1, self.repair)

    def record(self, outcome: _Outcome) -> None:
        attempt = outcome.attempt
        self.attempts.append(attempt)
        if attempt.ok:
            self.final = _Final(outcome.value, attempt.raw, self.attempts)
            return
        if attempt.reason == "refusal":
            self._fail()
            return
        if attempt.reason == "truncated" or self.repair >= self.max_repairs:
            self.index += 1
            if self.index >= len(self.plans):
                self._fail()
                return
            self.repair = 0
            self.convo = self.plans[self.index].prepare(self.messages)
            return
        self.repair += 1
        self.convo = [*self.convo, *outcome.feedback]

    def _fail(self) -> None:
        last = self.attempts[-1]
        self.final = _Final(None, last.raw, self.attempts)


# --------------------------------------------------------------------------------------------
# Judging one answer


def _tool_calls(message: BaseMessage) -> list[tuple[str | None, str, str]]:
    """``(id, name, arguments text)`` of each tool call, malformed ones included."""
    if isinstance(message, AIMessageChunk) and message.tool_call_chunks:
        return [
            (c.get("id"), c.get("name") or "", c.get("args") or "")
            for c in message.tool_call_chunks
        ]
    out: list[tuple[str | None, str, str]] = []
    for tc in getattr(message, "tool_calls", None) or ():
        out.append((tc.get("id"), tc["name"], json.dumps(tc["args"], ensure_ascii=False)))
    for bad in getattr(message, "invalid_tool_calls", None) or ():
        out.append((bad.get("id"), bad.get("name") or "", bad.get("args") or ""))
    return out


def _text(message: BaseMessage) -> str:
    return str(message.text)


def _locate(
    plan: _Plan, schema: _Schema, message: BaseMessage
) -> tuple[str, Any, str | None, list[tuple[str | None, str, str]]]:
    """``(text, data, salvaged, tool calls)`` of the answer; raises ``_Reject``."""
    if plan.method != "function_calling":
        text = _text(message)
        data, how = _loads_object(text)
        return text, data, how, []
    calls = _tool_calls(message)
    mine = [c for c in calls if c[1] == schema.name]
    if mine:
        text = mine[0][2]
        try:
            return text, json.loads(text or "{}"), None, calls
        except json.JSONDecodeError as exc:
            raise _Reject(
                "invalid_json", f"the `{schema.name}` arguments are not valid JSON: {exc}"
            ) from exc
    content = _text(message)
    if content.strip():
        try:
            data, _ = _loads_object(content)
        except _Reject:
            data = None
        if isinstance(data, dict):
            return content, data, "content", calls
    if calls:
        names = ", ".join(f"`{c[1]}`" for c in calls)
        raise _Reject("no_tool_call", f"you called {names} instead of `{schema.name}`")
    if content.strip():
        raise _Reject(
            "no_tool_call", f"you answered in text instead of calling the `{schema.name}` tool"
        )
    raise _Reject("empty", f"the answer was empty: no call to the `{schema.name}` tool")


def _feedback(
    plan: _Plan,
    schema: _Schema,
    message: BaseMessage,
    problem: _Reject,
    calls: list[tuple[str | None, str, str]],
) -> list[BaseMessage]:
    """The failed answer as an AI message, then the errors (a tool result and a human turn)."""
    content: Any = message.content if message.content is not None else ""
    good: list[Any] = []
    bad: list[Any] = []
    for call_id, name, text in calls:
        try:
            args = json.loads(text or "{}")
        except json.JSONDecodeError:
            args = None
        if isinstance(args, dict):
            good.append(tool_call(name=name, args=args, id=call_id))
        else:
            bad.append(invalid_tool_call(name=name, args=text, id=call_id, error=None))
    out: list[BaseMessage] = [AIMessage(content=content, tool_calls=good, invalid_tool_calls=bad)]
    for call_id, _, _ in calls:
        if call_id:
            out.append(ToolMessage(content=problem.text, tool_call_id=call_id, status="error"))
    if plan.method == "function_calling":
        ask = f"Call the `{schema.name}` tool again, with arguments that fix these errors."
    else:
        ask = (
            f"Answer again with only the corrected JSON object for `{schema.name}`, "
            "with no other text."
        )
    out.append(
        HumanMessage(content=f"Your previous answer could not be used: {problem.text}\n{ask}")
    )
    return out


def _judge(
    call: _Call, schema: _Schema, message: BaseMessage, started: float, kwargs: Mapping[str, Any]
) -> _Outcome:
    plan = call.plan
    finish = message.response_metadata.get("finish_reason")
    refusal = message.additional_kwargs.get("refusal")
    base: dict[str, Any] = {
        "number": call.number,
        "model": plan.name,
        "method": plan.method,
        "raw": message,
        "finish_reason": finish,
        "repair": call.repair,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "usage": getattr(message, "usage_metadata", None),
    }
    calls: list[tuple[str | None, str, str]] = []
    try:
        if refusal:
            raise _Reject("refusal", f"the model refused: {refusal}")
        if finish == "length":
            limit = _max_tokens(plan.model, kwargs)
            at = f" at max_tokens={limit}" if limit is not None else ""
            raise _Reject(
                "truncated",
                f"the answer was cut off by the output token limit{at} (finish_reason='length')",
            )
        text, data, salvaged, calls = _locate(plan, schema, message)
        base["output"] = text
        base["salvaged"] = salvaged
        value = schema.validate(data)
    except _Reject as problem:
        if "output" not in base:
            tool_text = [c[2] for c in _tool_calls(message) if c[1] == schema.name]
            base["output"] = tool_text[0] if tool_text else _text(message) or (refusal or "")
        if problem.reason in ("refusal", "truncated"):
            feedback: list[BaseMessage] = []
        else:
            feedback = _feedback(plan, schema, message, problem, calls or _tool_calls(message))
        attempt = StructuredAttempt(ok=False, reason=problem.reason, error=problem.text, **base)
        return _Outcome(attempt, problem=problem, feedback=feedback)
    return _Outcome(StructuredAttempt(ok=True, **base), value=value)


def _length_message(exc: BaseException, chunks: list[AIMessageChunk]) -> BaseMessage | None:
    """The answer behind an ``openai.LengthFinishReasonError`` (raised by the SDK's parse
    helpers when ``response_format`` is set), also when a stream wrapped it; else None."""
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if type(err).__name__ == "LengthFinishReasonError" and hasattr(err, "completion"):
            break
        err = err.__cause__ or err.__context__
    else:
        return None
    if chunks:
        merged = chunks[0] + chunks[1:] if len(chunks) > 1 else chunks[0]
        msg = message_chunk_to_message(merged)
        msg.response_metadata["finish_reason"] = "length"
        return msg
    completion = err.completion  # type: ignore[union-attr]
    content = ""
    with contextlib.suppress(AttributeError, IndexError):
        content = completion.choices[0].message.content or ""
    return AIMessage(
        content=content,
        response_metadata={
            "finish_reason": "length",
            "model_name": getattr(completion, "model", None),
        },
    )


def _merge(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    if not chunks:
        return AIMessageChunk(content="")
    return chunks[0] + chunks[1:] if len(chunks) > 1 else chunks[0]


class _Partials:
    """Turns streamed chunks into progressively more complete partial dicts."""

    __slots__ = ("content", "last", "tool_index", "tools", "use_tools")

    def __init__(self, method: Method) -> None:
        self.use_tools = method == "function_calling"
        self.tools = ""
        self.content = ""
        self.tool_index: int | None = None
        self.last: Any = None

    def feed(self, chunk: BaseMessage) -> dict[str, Any] | None:
        if self.use_tools and isinstance(chunk, AIMessageChunk):
            for piece in chunk.tool_call_chunks:
                index = piece.get("index")
                if self.tool_index is None:
                    self.tool_index = index if index is not None else 0
                if index is None or index == self.tool_index:
                    self.tools += piece.get("args") or ""
        self.content += _text(chunk)
        text = self.tools if self.tool_index is not None else self.content
        value = _partial_object(text)
        if isinstance(value, dict) and value and value != self.last:
            self.last = value
            return value
        return None


# --------------------------------------------------------------------------------------------
# The runnable


class StructuredOutputRunnable(Runnable[LanguageModelInput, Any]):
    """What :func:`structured` returns: a Runnable from chat input to a validated object.

    ``invoke``/``ainvoke``/``batch``/``abatch`` return the object (or, with ``include_raw``, a
    dict ``{"raw", "parsed", "parsing_error", "attempts"}``); ``stream``/``astream`` yield
    partial dicts while the answer arrives, then the same final value. Every model call is a
    child run named ``"structured_attempt"`` of this runnable's run (metadata: attempt number,
    repair, method, model), ended with the verdict, so tracers show each try and why it failed.

    Example::

        review = structured(llm, CodeReview, max_repairs=2, fallback=bigger_llm)
        for item in review.stream("Review: ..."):
            print(item)    # {'score': 7}, {'score': 7, 'issues': ['a']}, ..., CodeReview(...)
    """

    name: str | None = "structured_output"

    def __init__(
        self,
        model: BaseChatModel,
        schema: Any,
        *,
        method: Method | None = None,
        strict: bool | None = None,
        max_repairs: int = 2,
        fallback: BaseChatModel | Sequence[BaseChatModel] | None = None,
        include_raw: bool = False,
    ) -> None:
        if method is not None and method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if method == "json_mode" and strict:
            raise ValueError("strict=True needs method='json_schema' or 'function_calling'")
        if isinstance(max_repairs, bool) or not isinstance(max_repairs, int) or max_repairs < 0:
            raise ValueError(f"max_repairs must be an int >= 0, got {max_repairs!r}")
        if fallback is None:
            fallbacks: list[BaseChatModel] = []
        elif isinstance(fallback, BaseChatModel):
            fallbacks = [fallback]
        else:
            fallbacks = list(fallback)
        self.model = model
        self.fallbacks = fallbacks
        self.schema = schema
        self.max_repairs = max_repairs
        self.include_raw = include_raw
        self._schema = _Schema(schema)
        self.plans: list[_Plan] = [
            _plan(m, self._schema, method or choose_method(m), strict) for m in [model, *fallbacks]
        ]

    @property
    def method(self) -> Method:
        """The method used with the primary model."""
        return self.plans[0].method

    @property
    def OutputType(self) -> Any:
        if self.include_raw:
            return dict[str, Any]
        return self.schema if isinstance(self.schema, type) else dict[str, Any]

    def __repr__(self) -> str:
        chain = " -> ".join(f"{p.name}[{p.method}]" for p in self.plans)
        return (
            f"StructuredOutputRunnable({self._schema.name}, {chain}, "
            f"max_repairs={self.max_repairs})"
        )

    # ------------------------------------------------------------------ shared helpers

    def _messages(self, input: LanguageModelInput) -> list[BaseMessage]:
        if isinstance(input, PromptValue):
            return input.to_messages()
        if isinstance(input, str):
            return [HumanMessage(content=input)]
        return convert_to_messages(input)

    def _attempt_metadata(self, call: _Call) -> dict[str, Any]:
        return {
            "structured_attempt": call.number,
            "structured_repair": call.repair,
            "structured_method": call.plan.method,
            "structured_model": call.plan.name,
        }

    def _start_run(self, input: Any, config: RunnableConfig) -> CallbackManagerForChainRun:
        return get_callback_manager_for_config(config).on_chain_start(
            None,
            input,
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )

    async def _astart_run(
        self, input: Any, config: RunnableConfig
    ) -> AsyncCallbackManagerForChainRun:
        return await get_async_callback_manager_for_config(config).on_chain_start(
            None,
            input,
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )

    def _start_attempt(
        self, run: CallbackManagerForChainRun, call: _Call
    ) -> CallbackManagerForChainRun:
        manager = run.get_child()
        manager.add_metadata(self._attempt_metadata(call), inherit=False)
        return manager.on_chain_start(None, {"messages": call.messages}, name=ATTEMPT_RUN_NAME)

    async def _astart_attempt(
        self, run: AsyncCallbackManagerForChainRun, call: _Call
    ) -> AsyncCallbackManagerForChainRun:
        manager = run.get_child()
        manager.add_metadata(self._attempt_metadata(call), inherit=False)
        return await manager.on_chain_start(
            None, {"messages": call.messages}, name=ATTEMPT_RUN_NAME
        )

    @staticmethod
    def _attempt_end(outcome: _Outcome) -> dict[str, Any]:
        a = outcome.attempt
        return {"ok": a.ok, "reason": a.reason, "error": a.error, "salvaged": a.salvaged}

    def _result(self, session: _Session, kwargs: Mapping[str, Any]) -> Any:
        final = session.final
        assert final is not None
        attempts = final.attempts
        error = None if attempts[-1].ok else self._error(session, kwargs)
        if final.raw is not None:
            last = attempts[-1]
            final.raw.response_metadata["structured"] = {
                "attempts": len(attempts),
                "repairs": last.repair,
                "method": last.method,
                "model": last.model,
                "salvaged": last.salvaged,
                "fallback": min(session.index, len(self.plans) - 1) > 0,
            }
        if self.include_raw:
            return {
                "raw": final.raw,
                "parsed": final.value if error is None else None,
                "parsing_error": error,
                "attempts": attempts,
            }
        if error is not None:
            raise error
        return final.value

    def _error(self, session: _Session, kwargs: Mapping[str, Any]) -> StructuredOutputError:
        attempts = session.attempts
        last = attempts[-1]
        meta = last.raw.response_metadata if last.raw is not None else {}
        gw = meta.get("gateway") or {}
        routing = meta.get("routing") or {}
        kw: dict[str, Any] = {
            "attempts": list(attempts),
            "deployment": routing.get("deployment") or gw.get("deployment_id"),
            "model_group": routing.get("group") or gw.get("model_group"),
        }
        name = self._schema.name
        models = len({a.model for a in attempts})
        tried = f"{len(attempts)} attempt(s) on {models} model(s)"
        if last.reason == "refusal":
            refusal = ""
            if last.raw is not None:
                refusal = str(last.raw.additional_kwargs.get("refusal") or "")
            return StructuredOutputRefused(
                f"{last.model} refused to produce {name}: {refusal!r} (a refusal is not retried)",
                refusal=refusal,
                **kw,
            )
        if last.reason == "truncated":
            plan = self.plans[min(session.index, len(self.plans) - 1)]
            limit = _max_tokens(plan.model, kwargs)
            at = f"max_tokens={limit}" if limit is not None else "the model's max_tokens"
            return StructuredOutputTruncated(
                f"the {name} answer of {last.model} was cut off by the output token limit "
                f"({at}, finish_reason='length') after {tried}; raise max_tokens (e.g. "
                "model.bind(max_tokens=...)): re-asking with the same limit is cut off again",
                max_tokens=limit,
                partial=last.output,
                **kw,
            )
        return StructuredOutputInvalid(
            f"no valid {name} after {tried}; last error: {last.error}", **kw
        )

    # ------------------------------------------------------------------ sync

    def _attempt(
        self,
        call: _Call,
        run: CallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: dict[str, Any],
    ) -> _Outcome:
        attempt_run = self._start_attempt(run, call)
        started = time.perf_counter()
        try:
            message: BaseMessage = call.plan.runnable.invoke(
                call.messages, patch_config(config, callbacks=attempt_run.get_child()), **kwargs
            )
        except Exception as exc:
            recovered = _length_message(exc, [])
            if recovered is None:
                attempt_run.on_chain_error(exc)
                raise
            message = recovered
        outcome = _judge(call, self._schema, message, started, kwargs)
        if outcome.problem is not None:
            attempt_run.on_chain_error(outcome.problem)
        else:
            attempt_run.on_chain_end(self._attempt_end(outcome))
        return outcome

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        """The validated object (see the class docstring)."""
        config = ensure_config(config)
        run = self._start_run(input, config)
        try:
            session = _Session(self.plans, self._messages(input), self.max_repairs)
            while (call := session.next_call()) is not None:
                session.record(self._attempt(call, run, config, kwargs))
            result = self._result(session, kwargs)
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end(result)
        return result

    def _attempt_stream(
        self,
        call: _Call,
        run: CallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: dict[str, Any],
    ) -> Iterator[dict[str, Any] | _Outcome]:
        attempt_run = self._start_attempt(run, call)
        started = time.perf_counter()
        partials = _Partials(call.plan.method)
        chunks: list[AIMessageChunk] = []
        message: BaseMessage
        try:
            for chunk in call.plan.runnable.stream(
                call.messages, patch_config(config, callbacks=attempt_run.get_child()), **kwargs
            ):
                if isinstance(chunk, AIMessageChunk):
                    chunks.append(chunk)
                partial = partials.feed(chunk)
                if partial is not None:
                    yield partial
        except BaseException as exc:
            recovered = _length_message(exc, chunks) if isinstance(exc, Exception) else None
            if recovered is None:
                attempt_run.on_chain_error(exc)
                raise
            message = recovered
        else:
            message = _merge(chunks)
        outcome = _judge(call, self._schema, message, started, kwargs)
        if outcome.attempt.raw is not None and isinstance(outcome.attempt.raw, AIMessageChunk):
            outcome.attempt = _with_raw(outcome.attempt, message_chunk_to_message(message))
        if outcome.problem is not None:
            attempt_run.on_chain_error(outcome.problem)
        else:
            attempt_run.on_chain_end(self._attempt_end(outcome))
        yield outcome

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        **kwargs: Any | None,
    ) -> Iterator[Any]:
        """Partial dicts as the answer arrives, then the validated object.

        A rejected attempt's partials are followed by the next attempt's, which start over.
        """
        config = ensure_config(config)
        run = self._start_run(input, config)
        try:
            session = _Session(self.plans, self._messages(input), self.max_repairs)
            while (call := session.next_call()) is not None:
                for item in self._attempt_stream(call, run, config, dict(kwargs)):
                    if isinstance(item, _Outcome):
                        session.record(item)
                    else:
                        yield item
            result = self._result(session, kwargs)
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end(result)
        yield result

    # ------------------------------------------------------------------ async

    async def _aattempt(
        self,
        call: _Call,
        run: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: dict[str, Any],
    ) -> _Outcome:
        attempt_run = await self._astart_attempt(run, call)
        started = time.perf_counter()
        try:
            message: BaseMessage = await call.plan.runnable.ainvoke(
                call.messages, patch_config(config, callbacks=attempt_run.get_child()), **kwargs
            )
        except Exception as exc:
            recovered = _length_message(exc, [])
            if recovered is None:
                await attempt_run.on_chain_error(exc)
                raise
            message = recovered
        outcome = _judge(call, self._schema, message, started, kwargs)
        if outcome.problem is not None:
            await attempt_run.on_chain_error(outcome.problem)
        else:
            await attempt_run.on_chain_end(self._attempt_end(outcome))
        return outcome

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        """Async :meth:`invoke`."""
        config = ensure_config(config)
        run = await self._astart_run(input, config)
        try:
            session = _Session(self.plans, self._messages(input), self.max_repairs)
            while (call := session.next_call()) is not None:
                session.record(await self._aattempt(call, run, config, kwargs))
            result = self._result(session, kwargs)
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end(result)
        return result

    async def _aattempt_stream(
        self,
        call: _Call,
        run: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: dict[str, Any],
    ) -> AsyncIterator[dict[str, Any] | _Outcome]:
        attempt_run = await self._astart_attempt(run, call)
        started = time.perf_counter()
        partials = _Partials(call.plan.method)
        chunks: list[AIMessageChunk] = []
        message: BaseMessage
        try:
            async for chunk in call.plan.runnable.astream(
                call.messages, patch_config(config, callbacks=attempt_run.get_child()), **kwargs
            ):
                if isinstance(chunk, AIMessageChunk):
                    chunks.append(chunk)
                partial = partials.feed(chunk)
                if partial is not None:
                    yield partial
        except BaseException as exc:
            recovered = _length_message(exc, chunks) if isinstance(exc, Exception) else None
            if recovered is None:
                await attempt_run.on_chain_error(exc)
                raise
            message = recovered
        else:
            message = _merge(chunks)
        outcome = _judge(call, self._schema, message, started, kwargs)
        if isinstance(outcome.attempt.raw, AIMessageChunk):
            outcome.attempt = _with_raw(outcome.attempt, message_chunk_to_message(message))
        if outcome.problem is not None:
            await attempt_run.on_chain_error(outcome.problem)
        else:
            await attempt_run.on_chain_end(self._attempt_end(outcome))
        yield outcome

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        **kwargs: Any | None,
    ) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        config = ensure_config(config)
        run = await self._astart_run(input, config)
        try:
            session = _Session(self.plans, self._messages(input), self.max_repairs)
            while (call := session.next_call()) is not None:
                async for item in self._aattempt_stream(call, run, config, dict(kwargs)):
                    if isinstance(item, _Outcome):
                        session.record(item)
                    else:
                        yield item
            result = self._result(session, kwargs)
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end(result)
        yield result


def _with_raw(attempt: StructuredAttempt, raw: BaseMessage) -> StructuredAttempt:
    import dataclasses

    return dataclasses.replace(attempt, raw=raw)


def structured(
    model: BaseChatModel,
    schema: Any,
    *,
    method: Method | None = None,
    strict: bool | None = None,
    max_repairs: int = 2,
    fallback: BaseChatModel | Sequence[BaseChatModel] | None = None,
    include_raw: bool = False,
) -> StructuredOutputRunnable:
    """A Runnable that returns a validated ``schema`` object from ``model``, repairing bad answers.

    **model** - GatewayChatModel, RouterChatModel or any BaseChatModel.
    **schema** - a pydantic model class (returns instances), a TypedDict or a JSON-schema dict
    with a ``title`` (returns dicts; checked against a JSON-schema subset).
    **method** - ``"json_schema"``, ``"function_calling"`` or ``"json_mode"``; default: chosen
    per model from its declared capabilities (:func:`choose_method`).
    **strict** - json_schema: strict unless the schema has an open object (``dict[str, X]``),
    which strict mode cannot express; function_calling: sent only when set.
    **max_repairs** - re-asks per model after a bad answer (2: up to 3 calls per model).
    **fallback** - model(s) tried in turn, from the original input, once a model's repairs are
    spent or its answer was truncated; each gets its own ``max_repairs`` (and its own method).
    **include_raw** - return ``{"raw", "parsed", "parsing_error", "attempts"}`` instead of
    raising a :class:`~gatewaykit.StructuredOutputError`.

    Gateway errors (rate limits, budgets, 5xx) are raised unchanged: retries and failover belong
    to the model (GatewayChatModel's ``max_retries``, RouterChatModel's groups and fallbacks).

    Example::

        review = structured(llm, CodeReview, fallback=bigger_llm)
        result = review.invoke("Review this diff: ...")

        out = structured(llm, CodeReview, include_raw=True).invoke("...")
        out["parsed"], [a.reason for a in out["attempts"]]
    """
    return StructuredOutputRunnable(
        model,
        schema,
        method=method,
        strict=strict,
        max_repairs=max_repairs,
        fallback=fallback,
        include_raw=include_raw,
    )
