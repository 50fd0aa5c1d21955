"""A chat-completions request, read against the model it names.

Each OpenAI field is honoured (passed to the model), ignored (it cannot change what kind of
answer comes back: ``user``, ``store``, ``metadata``...), or the request is refused with an
OpenAI-shaped 400 naming the field and saying what to send instead. A field that would change
the answer (tool calls, JSON, several choices, logprobs) is never dropped behind a 200: the
table is in ``docs/serve.md``.

Example::

    call = prepare(target_of("smart", router), router, body, request.headers)
    answer = await call.runnable.ainvoke(call.messages, call.config)
    call.check(answer)   # a router that fell back to an agent deployment cannot keep the promise
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from starlette.responses import JSONResponse

from gatewaykit._redact import redact

__all__ = [
    "THREAD_ID_HEADER",
    "Call",
    "ServeError",
    "Target",
    "parse_messages",
    "prepare",
    "target_of",
]

THREAD_ID_HEADER = "x-gatewaykit-thread-id"
"""The request header that names an agent's conversation (``metadata.thread_id`` also works)."""
MAX_THREAD_ID = 256

# Sampling and length settings: passed to models; an agent's belong to the model inside it.
_SETTINGS = (
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "reasoning_effort",
)
# Fields whose answer this server never gives, whatever the model: why, and what to do instead.
_NEVER = {
    "logprobs": "serve does not return logprobs; leave out `logprobs` (or send false)",
    "top_logprobs": "serve does not return logprobs; leave out `top_logprobs`",
    "functions": "the legacy `functions` field is not served; send `tools` instead",
    "function_call": "the legacy `function_call` field is not served; send `tool_choice` instead",
    "audio": "serve answers in text; leave out `audio`",
    "web_search_options": (
        "serve runs no web search of its own; leave out `web_search_options` (an agent that "
        "searches can be served instead)"
    ),
}
_TOOL_CHOICES_WITHOUT_TOOLS = ("none", "auto")

Kind = Literal["openai", "agent", "other"]


class ServeError(Exception):
    """A request the server refuses, rendered as an OpenAI-shaped error body."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code if self.code is not None else str(self.status),
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


@dataclass(frozen=True)
class Target:
    """What a served model can honour.

    ``openai``: an OpenAI-compatible model (``GatewayChatModel``, ``ChatOpenAI``,
    ``RouterChatModel``, ``TaskChatModel``) takes every field serve passes; ``agent``: an agent
    model, or a router group whose deployments are all agents, answers in text and runs its own
    tools; ``other``: any other chat model gets the sampling settings and ``bind_tools``.
    """

    kind: Kind
    name: str
    what: str
    router: Any = None
    """The RouterChatModel behind the name, if any (its fallbacks may reach an agent)."""
    needs_thread: bool = False
    """A checkpointed local agent without a default thread: every call needs a thread id."""

    def refuse(self, param: str, why: str, code: str | None = None) -> ServeError:
        return ServeError(400, f"{self.name!r} is {self.what}{why}", param=param, code=code)


@dataclass
class Call:
    """What one request runs: the runnable, its input and run config, and the answer's check."""

    runnable: Runnable[Any, Any]
    messages: list[BaseMessage]
    config: RunnableConfig | None
    stream: bool
    include_usage: bool
    promised: list[str] = field(default_factory=list)
    """Fields only a model can honour (``tools``, ``response_format``); see :meth:`check`."""
    target: Target | None = None

    def check(self, answer: Any) -> None:
        """Refuse an answer that broke the request's promise: a router group that fell back to
        an agent deployment got prose where tool calls or JSON were asked for."""
        if not self.promised or self.target is None or self.target.router is None:
            return
        routing = (getattr(answer, "response_metadata", None) or {}).get("routing") or {}
        dep_id = routing.get("deployment")
        if not isinstance(dep_id, str):
            return
        from gatewaykit.config_errors import ConfigError

        try:
            dep = self.target.router.config.deployment(dep_id)
        except ConfigError:  # a deployment the config does not know: nothing to say about it
            return
        if not dep.is_agent:
            return
        param = self.promised[0]
        raise ServeError(
            502,
            f"{self.target.name!r} was answered by agent deployment {dep.id!r} ({dep.model}) "
            f"of group {routing.get('group')!r}, which cannot honour `{param}`: its text answer "
            "was dropped. Send the request without it, or drop `supports_function_calling` / "
            "`supports_response_schema: true` from that agent deployment's model_info: agent "
            "deployments declare neither by default, so the router does not pick them for "
            "such requests",
            type="upstream",
            code="fallback_cannot_honour",
            param=param,
        )


def target_of(name: str, model: BaseChatModel) -> Target:
    """Classify a served model (a guardrails wrapper or a binding is looked through); done once
    per served name, when the app is built."""
    from langchain_openai.chat_models.base import BaseChatOpenAI

    from gatewaykit.agents._common import ThreadedAgentModel
    from gatewaykit.agents.local import AgentChatModel
    from gatewaykit.guardrails.wrapper import GuardedChatModel
    from gatewaykit.routing.model import RouterChatModel
    from gatewaykit.selector import TaskChatModel

    inner: Any = model
    for _ in range(8):  # a wrapper of a binding of a wrapper...
        if isinstance(inner, GuardedChatModel):
            inner = inner.model
        elif isinstance(inner, RunnableBinding):
            inner = inner.bound
        else:
            break
    if isinstance(inner, ThreadedAgentModel):
        checkpointer = getattr(getattr(inner, "graph", None), "checkpointer", None)
        needs_thread = (
            isinstance(inner, AgentChatModel)
            and inner.thread_id is None
            and checkpointer not in (None, False)
        )
        what = f"agent {inner.name_of_agent!r} ({type(inner).__name__})"
        return Target("agent", name, what, needs_thread=needs_thread)
    if isinstance(inner, RouterChatModel):
        deployments = inner.config.group(inner.model)
        if all(d.is_agent for d in deployments):
            served = ", ".join(d.model for d in deployments)
            what = f"model group {inner.model!r}, served by agent deployments ({served})"
            return Target("agent", name, what, router=inner)
        return Target("openai", name, f"model group {inner.model!r}", router=inner)
    if isinstance(inner, BaseChatOpenAI | TaskChatModel):
        return Target("openai", name, f"model {type(inner).__name__}")
    return Target("other", name, f"{type(inner).__name__} (a custom chat model)")


# --- messages and fields -----------------------------------------------------------------------


def parse_messages(raw: Any) -> list[BaseMessage]:
    """OpenAI ``messages`` as LangChain messages; a 400 names the faulty entry."""
    if not isinstance(raw, list) or not raw:
        raise ServeError(400, "'messages' must be a non-empty array", param="messages")
    for i, m in enumerate(raw):
        if not isinstance(m, Mapping):
            raise ServeError(400, f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise ServeError(
                400, f"messages[{i}].role is missing or invalid: {role!r}", param=f"messages[{i}]"
            )
        if role == "tool" and not m.get("tool_call_id"):
            raise ServeError(
                400, f"messages[{i}] has role 'tool' but no tool_call_id", param=f"messages[{i}]"
            )
        if "content" not in m and not m.get("tool_calls"):
            raise ServeError(400, f"messages[{i}] has no content", param=f"messages[{i}]")
    cleaned = []
    for m in raw:
        d = dict(m)
        if d.get("content") is None:
            d["content"] = ""
        if d.get("role") == "developer":
            d["role"] = "system"
        cleaned.append(d)
    try:
        return convert_to_messages(cleaned)
    except Exception as exc:  # langchain_core raises several types for bad shapes
        raise ServeError(
            400, f"malformed messages: {redact(str(exc))[:300]}", param="messages"
        ) from None


def thread_id_of(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The conversation a request continues: the header, or LiteLLM-style
    ``metadata.thread_id`` (both may be given when they agree)."""
    header = headers.get(THREAD_ID_HEADER)
    if header is not None and not header.strip():
        raise ServeError(
            400, f"the {THREAD_ID_HEADER} header is empty: send a thread id or no header"
        )
    meta = body.get("metadata")
    from_meta: str | None = None
    if isinstance(meta, Mapping) and meta.get("thread_id") is not None:
        value = meta["thread_id"]
        if not isinstance(value, str) or not value.strip():
            raise ServeError(
                400,
                f"`metadata.thread_id` must be a non-empty string, got {value!r}",
                param="metadata.thread_id",
            )
        from_meta = value
    if header and from_meta and header != from_meta:
        raise ServeError(
            400,
            f"two thread ids: the {THREAD_ID_HEADER} header says {header!r}, "
            f"`metadata.thread_id` says {from_meta!r}; send one of them",
            param="metadata.thread_id",
        )
    thread_id = header or from_meta
    if thread_id is not None and len(thread_id) > MAX_THREAD_ID:
        raise ServeError(
            400,
            f"the thread id is {len(thread_id)} characters long; at most {MAX_THREAD_ID} "
            "are accepted",
            param="metadata.thread_id",
        )
    return thread_id


def _refuse_never_served(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise ServeError(
            400, "only n=1 is supported: send the request n times for n answers", param="n"
        )
    for name, why in _NEVER.items():
        value = body.get(name)
        if value is None or (name == "logprobs" and value is False):
            continue
        raise ServeError(400, why, param=name)
    modalities = body.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or any(m != "text" for m in modalities)
    ):
        raise ServeError(
            400,
            f"serve answers in text only; `modalities` {modalities!r} asks for more",
            param="modalities",
        )
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools and choice is not None and choice not in _TOOL_CHOICES_WITHOUT_TOOLS:
        raise ServeError(
            400,
            f"`tool_choice` {choice!r} needs `tools`: send the tools to call, or leave out "
            "`tool_choice`",
            param="tool_choice",
        )
    if tools is not None and not isinstance(tools, list):
        raise ServeError(400, "'tools' must be an array", param="tools")


def _response_format(raw: Any) -> dict[str, Any] | None:
    """``response_format`` when it asks for JSON; None when absent or plain text."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ServeError(
            400,
            '`response_format` must be an object, e.g. {"type": "json_object"}',
            param="response_format",
        )
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(raw)
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if (
            not isinstance(spec, Mapping)
            or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("schema", {}), Mapping)
        ):
            raise ServeError(
                400,
                "`response_format.json_schema` must be an object with a `name` and a JSON `schema`",
                param="response_format",
            )
        return dict(raw)
    raise ServeError(
        400,
        f"`response_format.type` must be text, json_object or json_schema, got {kind!r}",
        param="response_format",
    )


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ServeError(400, "'max_tokens' must be a positive integer", param="max_tokens")
    return value


def _stop(body: Mapping[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ServeError(400, "'stop' must be a string or an array of strings", param="stop")
    return stop


def _bind_tools(
    target: Target, model: BaseChatModel, body: Mapping[str, Any]
) -> Runnable[Any, Any]:
    extra: dict[str, Any] = {}
    if body.get("parallel_tool_calls") is not None:
        extra["parallel_tool_calls"] = body["parallel_tool_calls"]
    try:
        return model.bind_tools(body["tools"], tool_choice=body.get("tool_choice"), **extra)
    except NotImplementedError as exc:
        detail = str(exc) or "it has no bind_tools"
        raise target.refuse("tools", f", which does not take tools ({detail})") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise ServeError(400, f"invalid tools: {exc}", param="tools") from None


def _refuse_for_agent(target: Target, body: Mapping[str, Any], fmt: Any) -> None:
    if body.get("tools"):
        raise target.refuse(
            "tools",
            ", which runs its own tools and never returns tool calls; leave out `tools` (give "
            "the tools to the agent itself), or send tool calls to a model group",
        )
    if fmt is not None:
        raise target.refuse(
            "response_format",
            ", which answers in text: it cannot honour `response_format`; leave out "
            "`response_format` and parse the text answer, or ask a model group for JSON",
        )
    for name in (*_SETTINGS, "max_tokens", "max_completion_tokens"):
        if body.get(name) is not None:
            raise target.refuse(
                name,
                f": an agent's model settings belong to the model inside it; leave out "
                f"`{name}` and set it on the agent's own model",
            )


def prepare(
    target: Target, model: BaseChatModel, body: Mapping[str, Any], headers: Mapping[str, str]
) -> Call:
    """Everything the request asks of ``model`` (served as ``target``), or the
    :class:`ServeError` refusing it."""
    messages = parse_messages(body.get("messages"))
    _refuse_never_served(body)
    fmt = _response_format(body.get("response_format"))
    thread_id = thread_id_of(headers, body)
    if target.kind == "agent":
        _refuse_for_agent(target, body, fmt)
    elif fmt is not None and target.kind == "other":
        raise target.refuse(
            "response_format",
            ", which has no way to honour `response_format`; leave it out, or serve an "
            "OpenAI-compatible model (GatewayChatModel, RouterChatModel) for JSON answers",
        )
    if target.needs_thread and thread_id is None:
        raise target.refuse(
            "metadata.thread_id",
            ", which keeps its conversation in a checkpointer and needs a thread id: send it "
            f"in the `{THREAD_ID_HEADER}` header or as `metadata.thread_id` (the same id "
            "continues the conversation)",
            code="thread_id_required",
        )
    runnable: Runnable[Any, Any] = _bind_tools(target, model, body) if body.get("tools") else model
    kwargs: dict[str, Any] = {k: body[k] for k in _SETTINGS if body.get(k) is not None}
    max_tokens = _max_tokens(body)
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    stop = _stop(body)
    if stop is not None:
        kwargs["stop"] = stop
    if fmt is not None:
        kwargs["response_format"] = fmt
    if kwargs:
        runnable = runnable.bind(**kwargs)
    opts = body.get("stream_options")
    promised = [p for p, used in (("tools", body.get("tools")), ("response_format", fmt)) if used]
    return Call(
        runnable=runnable,
        messages=messages,
        config={"configurable": {"thread_id": thread_id}} if thread_id else None,
        stream=bool(body.get("stream")),
        include_usage=isinstance(opts, Mapping) and bool(opts.get("include_usage")),
        promised=promised,
        target=target,
    )
