"""TaskSelector: named tasks mapped to the right model, chosen per request, with the reason.

A config's ``tasks:`` section names the jobs an application does (``code_review``,
``summarize``...) and the model alias that serves each, with per-task parameters. The selector
turns that table into chat models and applies four rules on every request, each one recorded in
``response_metadata["task"]``:

1. **capabilities**: the task's ``requires`` (``tools``, ``vision``, ``json_schema``,
   ``reasoning``) plus what the request itself needs (bound tools, a JSON-schema
   ``response_format``, image parts, ``reasoning_effort``). A model known to lack one is replaced
   by the first alternative that is not (``fallback_model``, ``long_context_model``,
   ``cheaper_model``, the config's fallbacks, then any group that declares it);
2. **input length**: an estimated prompt longer than the model's ``max_input_tokens`` (or the
   task's ``long_context_threshold``) moves to ``long_context_model``;
3. **cost ceiling**: an estimated call cost above ``max_cost_per_call`` moves to
   ``cheaper_model``, or fails with :class:`TaskSelectionError` before anything is sent;
4. **budget**: when the task's ``budget`` (USD per UTC day by default) is 80 % spent, calls move to
   ``cheaper_model``; when it is spent, calls fail with :class:`~gatewaykit.BudgetExceeded`.

Capabilities, context windows and prices come from each deployment's ``model_info`` and, in
front of a LiteLLM proxy, from its ``GET /model_group/info`` (cached; see
:class:`ProxyModelInfo`). Where both say something, the config wins.

Example::

    from gatewaykit.selector import TaskSelector

    selector = TaskSelector.from_config("config.yaml")
    review = selector.for_task("code_review")          # a chat model: bind_tools, structured output
    msg = review.invoke("Review this diff: ...")
    msg.response_metadata["task"]    # {'task': 'code_review', 'model': 'smart', 'reason': ...}

    auto = selector.as_runnable()                      # the task comes per call, or is detected
    auto.invoke("tl;dr of this thread: ...")           # keyword classifier -> summarize
    auto.invoke("...", config={"configurable": {"task": "code_review"}})
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, SecretStr

from gatewaykit._run_config import RunConfigChatModel
from gatewaykit.config import CAPABILITIES, GatewayConfig, TaskSpec, load_config
from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.cost import Budget, BudgetManager, Reservation, SpendContext, Window, call_cost
from gatewaykit.errors import GatewayError

if TYPE_CHECKING:
    import os

__all__ = [
    "DEFAULT_BUDGET_WINDOW",
    "DEFAULT_DOWNGRADE_AT",
    "ModelCapabilities",
    "ProxyModelInfo",
    "RuleResult",
    "TaskChatModel",
    "TaskDetection",
    "TaskSelection",
    "TaskSelectionError",
    "TaskSelector",
    "task_budgets",
]

logger = logging.getLogger("gatewaykit.selector")

Capability = Literal["tools", "vision", "json_schema", "reasoning"]
SelectorMode = Literal["router", "proxy", "direct"]
DetectionMethod = Literal["fixed", "call", "configurable", "keywords", "llm"]

DEFAULT_BUDGET_WINDOW: Final = "1d"
"""Window of a task's ``budget`` unless the task sets ``budget_window``: one UTC day."""
DEFAULT_DOWNGRADE_AT: Final = 0.8
"""Share of a task budget spent (reserved calls included) from which calls use cheaper_model."""
TASK_TAG_PREFIX: Final = "task:"
"""Spend of task ``x`` is counted under the tag ``task:x`` (and sent as a gateway tag)."""
CLASSIFIER_TAG: Final = "gatewaykit:task-classifier"

_CAP_FIELD: Final[Mapping[str, str]] = MappingProxyType(
    {
        "tools": "supports_function_calling",
        "vision": "supports_vision",
        "json_schema": "supports_response_schema",
        "reasoning": "supports_reasoning",
    }
)
# Error kinds that another model may well not have: the task's fallback_model is tried.
_FALLBACK_KINDS: Final = frozenset(
    {
        "rate_limited",
        "no_deployment",
        "upstream",
        "timeout",
        "connection",
        "not_found",
        "access_denied",
        "authentication",
        "context_window",
        "content_policy",
    }
)
_CALLER_BUDGET_SCOPES: Final = frozenset({"key", "team", "user", "end_user", "global", "tag", None})
_NON_CHAT_MODES: Final = frozenset(
    {"embedding", "image_generation", "audio_transcription", "audio_speech", "rerank", "moderation"}
)


# --------------------------------------------------------------------------- errors


class TaskSelectionError(ValueError):
    """No model of a task can take this request under one of the selector's rules.

    Raised before anything is sent. ``rule`` is ``"task"`` (unknown task name),
    ``"capability"`` or ``"cost"``; ``checked`` maps each model alias considered to why it was
    turned down.

    Example::

        try:
            selector.for_task("describe_image").invoke(messages_with_an_image)
        except TaskSelectionError as e:
            print(e.rule, e.task, e.checked)  # capability describe_image {'smart': ...}
    """

    def __init__(
        self,
        message: str,
        *,
        task: str | None = None,
        rule: str = "task",
        checked: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.task = task
        self.rule = rule
        self.checked: dict[str, str] = dict(checked or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (str(self), self.task, self.rule, self.checked))


def _rebuild_error(
    message: str, task: str | None, rule: str, checked: dict[str, str]
) -> TaskSelectionError:
    return TaskSelectionError(message, task=task, rule=rule, checked=checked)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ModelCapabilities:
    """What the selector knows about one model alias: capabilities, context window, prices.

    Each capability is ``True``, ``False`` or ``None`` (nobody said). ``sources`` tells, per
    field, where the value came from: ``"config"`` (``model_info`` / ``litellm_params``) or
    ``"proxy"`` (``/model_group/info``).

    Example::

        caps = selector.capabilities("smart")
        caps.tools, caps.max_input_tokens, caps.sources["tools"]   # True, 128000, 'config'
        caps.estimate_cost(1_000, 200)                             # 0.0042
    """

    alias: str
    group: str
    tools: bool | None = None
    vision: bool | None = None
    json_schema: bool | None = None
    reasoning: bool | None = None
    max_input_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    mode: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)

    def supports(self, capability: str) -> bool | None:
        """``True``/``False`` when known, ``None`` when neither config nor proxy says."""
        if capability not in _CAP_FIELD:
            raise ValueError(f"unknown capability {capability!r}; use {', '.join(CAPABILITIES)}")
        value: bool | None = getattr(self, capability)
        return value

    def lacks(self, needs: Sequence[str]) -> list[str]:
        """The needed capabilities this model is known not to have."""
        return [c for c in needs if self.supports(c) is False]

    def declares(self, needs: Sequence[str]) -> bool:
        """Whether every needed capability is explicitly supported."""
        return all(self.supports(c) is True for c in needs)

    def fits(self, input_tokens: int) -> bool:
        """Whether ``input_tokens`` fits the known context window (unknown: it fits)."""
        return self.max_input_tokens is None or input_tokens <= self.max_input_tokens

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float | None:
        """Prompt tokens at the input price plus ``output_tokens`` at the output price; None
        when neither price is known."""
        if self.input_cost_per_token is None and self.output_cost_per_token is None:
            return None
        return input_tokens * (self.input_cost_per_token or 0.0) + output_tokens * (
            self.output_cost_per_token or 0.0
        )

    def describe(self, capability: str) -> str:
        """``supports_vision: false (config)``: the evidence behind one capability."""
        value = self.supports(capability)
        shown = "unknown" if value is None else str(value).lower()
        source = self.sources.get(capability)
        return f"{_CAP_FIELD[capability]}: {shown}" + (f" ({source})" if source else "")


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's verdict for one request: whether it changed the model, and why.

    ``rule`` is ``capability``, ``context``, ``cost``, ``budget``, ``fallback`` or ``pinned``.

    Example::

        for r in selector.select("code_review", long_diff).rules:
            print(r.rule, "->" if r.applied else "  ", r.detail)
        # context -> ~52000 input tokens > max_input_tokens 8192 of smart; using ... big
    """

    rule: str
    applied: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "applied": self.applied, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class TaskDetection:
    """Which task a request belongs to and how that was decided.

    ``method``: ``"fixed"`` (a model from :meth:`TaskSelector.for_task`), ``"call"`` (a
    ``task=`` keyword), ``"configurable"`` (``config["configurable"]["task"]``), ``"keywords"``
    or ``"llm"`` (automatic detection). ``cached`` is True when the LLM classifier's answer came
    from its cache.

    Example::

        d = selector.detect("Please review this diff")
        d.task, d.method, d.reason   # ('code_review', 'keywords', "keywords: code_review ...")
    """

    task: str
    method: DetectionMethod
    reason: str
    cached: bool = False
    scores: Mapping[str, int] = field(default_factory=dict)
    """Keyword classifier only: each task's score."""


@dataclass(frozen=True)
class TaskSelection:
    """The selector's decision for one request: the model alias, the parameters, and why.

    ``metadata()`` is what answers carry in ``response_metadata["task"]``.

    Example::

        sel = selector.select("code_review", "Review this diff ...")
        sel.model, sel.reason          # ('smart', "default model for task 'code_review'")
        [r.rule for r in sel.rules if r.applied]
    """

    task: str
    model: str
    group: str
    mode: SelectorMode
    reason: str
    rules: tuple[RuleResult, ...]
    needs: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    estimated_cost: float | None
    budget_used: float | None
    params: Mapping[str, Any]
    detection: TaskDetection | None = None
    fallback_from: str | None = None

    def metadata(self) -> dict[str, Any]:
        """A JSON-ready summary, as put in ``response_metadata["task"]``."""
        out: dict[str, Any] = {
            "task": self.task,
            "model": self.model,
            "group": self.group,
            "reason": self.reason,
            "rules": [r.as_dict() for r in self.rules],
            "needs": list(self.needs),
            "estimated_input_tokens": self.input_tokens,
            "estimated_cost": self.estimated_cost,
            "budget_used": self.budget_used,
            "mode": self.mode,
        }
        if self.detection is not None:
            out["detected_by"] = self.detection.method
            out["detection"] = self.detection.reason
            if self.detection.cached:
                out["detection_cached"] = True
        if self.fallback_from is not None:
            out["fallback_from"] = self.fallback_from
        return out


@dataclass(frozen=True, slots=True)
class _TaskOptions:
    long_context_threshold: int | None
    budget_window: Window
    downgrade_at: float


# --------------------------------------------------------------------------- proxy info


class ProxyModelInfo:
    """A LiteLLM proxy's ``GET /model_group/info``, fetched with httpx and cached for ``ttl_s``.

    Each entry is LiteLLM's ``ModelGroupInfo`` (``model_group``, ``max_input_tokens``,
    ``input_cost_per_token``, ``output_cost_per_token``, ``mode``, ``supports_function_calling``,
    ``supports_vision``, ``supports_reasoning``, ``supported_openai_params``...). A failed fetch
    keeps the last good answer (or none) and is not retried for ``retry_after_failure_s``, so a
    proxy without the endpoint costs one request per period, not one per call.

    ``base_url`` and ``api_key`` may be callables, resolved at the first fetch (so a config whose
    key lives in an unset environment variable still loads).

    Example::

        info = ProxyModelInfo("http://localhost:4000", api_key="sk-virtual-key", ttl_s=600)
        info.groups()["claude-sonnet"]["max_input_tokens"]      # 200000.0
        selector = TaskSelector.from_config("config.yaml", proxy_info=info)
    """

    def __init__(
        self,
        base_url: str | Callable[[], str],
        *,
        api_key: str | Callable[[], str | None] | None = None,
        ttl_s: float = 300.0,
        timeout_s: float = 5.0,
        retry_after_failure_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.retry_after_failure_s = retry_after_failure_s
        self._transport = transport
        self._clock = clock
        self._groups: Mapping[str, Mapping[str, Any]] = MappingProxyType({})
        self._next_fetch = 0.0
        self._lock = threading.Lock()
        self.fetched_at: float | None = None
        """Clock time of the last successful fetch."""
        self.last_error: str | None = None
        """Why the last fetch failed (None after a success)."""
        self.fetches = 0
        """HTTP requests made so far."""

    @classmethod
    def from_config(cls, config: GatewayConfig, **kwargs: Any) -> ProxyModelInfo:
        """For the proxy of the config's ``gateway:`` section (its base_url and virtual key,
        ``os.environ/`` references resolved at the first fetch)."""
        gw = config.gateway
        if gw is None or gw.base_url is None:
            raise ConfigError(
                ConfigProblem(
                    "gateway.base_url",
                    "proxy model info needs the LiteLLM proxy's URL: add a gateway: section "
                    "with base_url",
                ),
                source=config.source,
            )
        env = config.environment_variables

        def base_url() -> str:
            return gw.resolved_base_url(extra=env) or ""

        def api_key() -> str | None:
            return gw.resolved_api_key(extra=env)

        kwargs.setdefault("api_key", api_key)
        return cls(base_url, **kwargs)

    @property
    def url(self) -> str:
        """``<proxy root>/model_group/info`` (a trailing ``/v1`` of the base URL is dropped)."""
        base = self._base_url if isinstance(self._base_url, str) else self._base_url()
        root = base.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        return f"{root}/model_group/info"

    def _key(self) -> str | None:
        return self._api_key() if callable(self._api_key) else self._api_key

    def snapshot(self) -> Mapping[str, Mapping[str, Any]]:
        """The cached groups, without any network call."""
        return self._groups

    def stale(self) -> bool:
        """Whether the next :meth:`groups` call will fetch."""
        return self._clock() >= self._next_fetch

    def invalidate(self) -> None:
        """Fetch again on the next use."""
        self._next_fetch = 0.0

    def groups(self) -> Mapping[str, Mapping[str, Any]]:
        """Model group name -> its info; fetched when the cache is older than ``ttl_s``."""
        if not self.stale():
            return self._groups
        with self._lock:
            if self.stale():
                self._fetch()
        return self._groups

    async def agroups(self) -> Mapping[str, Mapping[str, Any]]:
        """:meth:`groups` without blocking the event loop (the fetch runs in a thread)."""
        if not self.stale():
            return self._groups
        return await asyncio.to_thread(self.groups)

    def _fetch(self) -> None:
        self.fetches += 1
        try:
            url, key = self.url, self._key()
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            with httpx.Client(transport=self._transport, timeout=self.timeout_s) as client:
                response = client.get(url, headers=headers)
            if response.status_code != 200:
                raise _FetchError(f"HTTP {response.status_code} from {url}")
            self._groups = MappingProxyType(_parse_group_info(response.json()))
        except (httpx.HTTPError, ValueError, _FetchError) as exc:
            level = logging.INFO if "HTTP 404" in str(exc) else logging.WARNING
            if self.last_error is None:
                logger.log(
                    level,
                    "model group info unavailable (%s); selecting on the config alone",
                    exc,
                )
            self.last_error = str(exc)
            self._next_fetch = self._clock() + self.retry_after_failure_s
            return
        self.last_error = None
        self.fetched_at = self._clock()
        self._next_fetch = self.fetched_at + self.ttl_s

    def __repr__(self) -> str:
        where = self._base_url if isinstance(self._base_url, str) else "<from config>"
        return f"ProxyModelInfo(base_url={where!r}, ttl_s={self.ttl_s}, groups={len(self._groups)})"


class _FetchError(Exception):
    pass


def _parse_group_info(body: Any) -> dict[str, Mapping[str, Any]]:
    rows = body.get("data") if isinstance(body, Mapping) else body
    if not isinstance(rows, list):
        raise ValueError("model group info: expected {'data': [...]}")
    out: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if isinstance(row, Mapping) and isinstance(row.get("model_group"), str):
            out[row["model_group"]] = MappingProxyType(dict(row))
    return out


def _proxy_caps(row: Mapping[str, Any]) -> dict[str, Any]:
    """Selector fields from one ``ModelGroupInfo`` row (None where it says nothing)."""
    out: dict[str, Any] = {}
    for cap in ("tools", "vision", "reasoning", "json_schema"):
        value = row.get(_CAP_FIELD[cap])
        out[cap] = value if isinstance(value, bool) else None
    if out["json_schema"] is None:
        # ModelGroupInfo has no supports_response_schema: read the params the proxy accepts.
        params = row.get("supported_openai_params")
        if isinstance(params, list) and params:
            out["json_schema"] = "response_format" in params
    out["max_input_tokens"] = _int_or_none(row.get("max_input_tokens"))
    out["input_cost_per_token"] = _float_or_none(row.get("input_cost_per_token"))
    out["output_cost_per_token"] = _float_or_none(row.get("output_cost_per_token"))
    mode = row.get("mode")
    out["mode"] = mode if isinstance(mode, str) else None
    return out


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --------------------------------------------------------------------------- budgets


def task_budgets(
    config: GatewayConfig | str | os.PathLike[str] | Mapping[str, Any],
    *,
    window: str | Window = DEFAULT_BUDGET_WINDOW,
) -> list[Budget]:
    """One ``Budget(scope="tag", key="task:<name>")`` per task with a ``budget``.

    The window is the task's ``budget_window`` when it sets one, else ``window`` (one UTC day).
    Build your own :class:`~gatewaykit.BudgetManager` from these to share spend across processes
    (a ``RedisLedger``) or to test with a fake clock.

    Example::

        manager = BudgetManager(task_budgets(cfg), ledger=RedisLedger(url="redis://..."))
        selector = TaskSelector.from_config(cfg, budgets=manager)
    """
    cfg = load_config(config)
    default = window if isinstance(window, Window) else Window.parse(window)
    out: list[Budget] = []
    for name, spec in cfg.tasks.items():
        if spec.budget is None:
            continue
        raw = spec.extra.get("budget_window")
        w = Window.parse(raw) if raw is not None else default
        out.append(Budget(spec.budget, w, scope="tag", key=f"{TASK_TAG_PREFIX}{name}"))
    return out


# --------------------------------------------------------------------------- request features


def _to_messages(value: LanguageModelInput) -> list[BaseMessage]:
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(value)]
    return list(convert_to_messages(value))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
    return " ".join(parts)


def _estimate_tokens(messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> int:
    """Rough prompt size, the router's rule: 4 characters a token, 4 tokens a message; bound
    tool schemas count too."""
    chars = sum(len(_content_text(m.content)) for m in messages)
    tools = kwargs.get("tools")
    if tools:
        chars += len(json.dumps(tools, default=str))
    return chars // 4 + 4 * len(messages)


def _request_needs(messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> set[str]:
    needs: set[str] = set()
    if kwargs.get("tools"):
        needs.add("tools")
    rf = kwargs.get("response_format")
    if isinstance(rf, Mapping) and rf.get("type") == "json_schema":
        needs.add("json_schema")
    if kwargs.get("reasoning_effort") or kwargs.get("reasoning"):
        needs.add("reasoning")
    for m in messages:
        if isinstance(m.content, list) and any(
            isinstance(b, Mapping) and b.get("type") in ("image_url", "image") for b in m.content
        ):
            needs.add("vision")
            break
    return needs


def _last_human_text(messages: Sequence[BaseMessage]) -> str:
    for m in reversed(messages):
        if isinstance(m, HumanMessage) or m.type == "human":
            return _content_text(m.content)
    return _content_text(messages[-1].content) if messages else ""


# --------------------------------------------------------------------------- keyword classifier


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: Final = _wordset(
    "a an and are as at be but by can could do does for from has have how i in into is it its "
    "me my of on or our please should so that the their them then there these this those to "
    "was we what when which who will with would you your about any all also some"
)
_WORD: Final = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=16_384)
def _stem(word: str) -> str:
    """Light suffix stripping so 'reviews', 'reviewed' and 'reviewing' meet 'review'."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _stems(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower())]


@dataclass(frozen=True, slots=True)
class _TaskTerms:
    keywords: tuple[tuple[str, tuple[str, ...]], ...]  # (as written, stems)
    name_words: frozenset[str]
    description_words: frozenset[str]


def _terms(spec: TaskSpec) -> _TaskTerms:
    keywords = tuple((k, tuple(_stems(k))) for k in spec.keywords if _stems(k))
    name = frozenset(_stem(w) for w in _WORD.findall(spec.name.lower()) if w not in _STOPWORDS)
    described = frozenset(
        _stem(w)
        for w in _WORD.findall((spec.description or "").lower())
        if len(w) >= 4 and w not in _STOPWORDS
    )
    return _TaskTerms(keywords, name, described)


def _contains(seq: Sequence[str], stem_set: set[str], phrase: tuple[str, ...]) -> bool:
    if not all(w in stem_set for w in phrase):
        return False
    n = len(phrase)
    if n == 1:
        return True
    return any(
        tuple(seq[i : i + n]) == phrase for i in range(len(seq) - n + 1) if seq[i] == phrase[0]
    )


def _score(terms: _TaskTerms, stems: list[str], stem_set: set[str]) -> tuple[int, list[str]]:
    """3 points per keyword, 2 per word of the task's name, 1 per description word."""
    score, hits = 0, []
    for written, phrase in terms.keywords:
        if _contains(stems, stem_set, phrase):
            score += 3
            hits.append(repr(written))
    for w in sorted(terms.name_words & stem_set):
        score += 2
        hits.append(f"name:{w}")
    for w in sorted(terms.description_words & stem_set - terms.name_words):
        score += 1
        hits.append(f"description:{w}")
    return score, hits


# --------------------------------------------------------------------------- the selector


@dataclass(slots=True)
class _Plan:
    selection: TaskSelection
    call_kwargs: dict[str, Any]
    attempts: list[str]
    reservation: Reservation | None


class TaskSelector:
    """Named tasks from a config's ``tasks:`` section, served by the right model per request.

    Build it with :meth:`from_config`; get a chat model per task with :meth:`for_task`, or one
    that picks the task per call with :meth:`as_runnable`; :meth:`select` explains a decision
    without calling anything.

    How calls are made (``router``):

    * ``router=True``: a :class:`~gatewaykit.RouterChatModel` calls the deployments directly,
      with retries, cooldowns and the config's fallbacks (one router shared by every task);
    * ``router=False``: a :class:`~gatewaykit.GatewayChatModel` per alias, through the proxy of
      the ``gateway:`` section, or straight to the alias's first deployment when there is none;
    * ``router=None`` (default): the proxy when the config has ``gateway.base_url``, else the
      router.

    Options (all keyword-only):

    * ``budgets``: the task budgets (default: :func:`task_budgets` of the config, one UTC day);
      a :class:`~gatewaykit.BudgetManager` is used as is;
    * ``proxy_info``: ``None`` fetches ``/model_group/info`` in proxy mode only, ``True`` always,
      ``False`` never, or a :class:`ProxyModelInfo` to share;
    * ``classifier``: ``"keywords"`` (default) or ``"llm"`` for automatic task detection;
      ``classifier_model`` names the alias (or gives the chat model) the LLM classifier uses,
      the cheapest priced model by default;
    * ``default_task``: what detection falls back to (default: the first task);
    * ``downgrade_at`` (0.8), ``budget_window`` (``"1d"``), ``long_context_threshold``: defaults
      for the tasks' own ``downgrade_at``, ``budget_window``, ``long_context_threshold``;
    * ``default_output_tokens`` (256): the answer length assumed in cost estimates when no
      ``max_tokens`` is set;
    * ``send_task_tag`` (True): also send ``task:<name>`` as a gateway tag, so the proxy's spend
      logs split by task;
    * ``strict_capabilities`` (False): treat a capability nobody declared as missing, instead
      of giving the model the benefit of the doubt;
    * ``model_kwargs``: passed to ``RouterChatModel.from_config`` or
      ``GatewayChatModel.from_config`` (retry policies, a state store, ``max_retries``...).

    Example::

        selector = TaskSelector.from_config("config.yaml", router=True)
        selector.select("code_review", "Review: ...").reason
        chain = prompt | selector.for_task("summarize")
        graph_node_model = selector.as_runnable()
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        router: bool | None = None,
        budgets: BudgetManager | Sequence[Budget] | None = None,
        proxy_info: ProxyModelInfo | bool | None = None,
        classifier: Literal["keywords", "llm"] = "keywords",
        classifier_model: str | BaseChatModel | None = None,
        classifier_cache_size: int = 1024,
        default_task: str | None = None,
        budget_window: str | Window = DEFAULT_BUDGET_WINDOW,
        downgrade_at: float = DEFAULT_DOWNGRADE_AT,
        long_context_threshold: int | None = None,
        default_output_tokens: int = 256,
        send_task_tag: bool = True,
        strict_capabilities: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self._config_caps: dict[str, ModelCapabilities] = {}
        problems: list[ConfigProblem] = []
        if not config.tasks:
            problems.append(
                ConfigProblem(
                    "tasks",
                    "no tasks: add a tasks: section, e.g. tasks: {summarize: {model: cheap-chat}}",
                )
            )
        gw = config.gateway
        has_proxy = gw is not None and gw.base_url is not None
        self.mode: SelectorMode
        if router or (router is None and not has_proxy):
            self.mode = "router"
        else:
            self.mode = "proxy" if has_proxy else "direct"
        self.send_task_tag = send_task_tag
        self.strict_capabilities = strict_capabilities
        self.default_output_tokens = default_output_tokens
        self.model_kwargs: dict[str, Any] = dict(model_kwargs or {})
        if classifier not in ("keywords", "llm"):
            problems.append(
                ConfigProblem("classifier", f"must be 'keywords' or 'llm', got {classifier!r}")
            )
        self.classifier = classifier
        if not 0.0 < downgrade_at <= 1.0:
            problems.append(
                ConfigProblem("downgrade_at", f"must be in (0, 1], got {downgrade_at!r}")
            )
        try:
            self._window = (
                budget_window if isinstance(budget_window, Window) else Window.parse(budget_window)
            )
        except ValueError as e:
            problems.append(ConfigProblem("budget_window", str(e)))
            self._window = Window.parse(DEFAULT_BUDGET_WINDOW)
        self._options: dict[str, _TaskOptions] = {}
        for name, spec in config.tasks.items():
            self._options[name] = self._task_options(
                spec, long_context_threshold, downgrade_at, problems
            )

        if proxy_info is None:
            proxy_info = self.mode == "proxy" and has_proxy
        self.proxy_info: ProxyModelInfo | None
        if isinstance(proxy_info, ProxyModelInfo):
            self.proxy_info = proxy_info
        elif proxy_info:
            if not has_proxy:
                problems.append(
                    ConfigProblem(
                        "gateway.base_url",
                        "proxy_info=True needs the LiteLLM proxy's URL in the gateway: section",
                    )
                )
                self.proxy_info = None
            else:
                self.proxy_info = ProxyModelInfo.from_config(config)
        else:
            self.proxy_info = None

        if default_task is not None and default_task not in config.tasks:
            problems.append(
                ConfigProblem(
                    "default_task",
                    f"unknown task {default_task!r}; tasks: {', '.join(config.tasks)}",
                )
            )
        self.default_task = default_task or next(iter(config.tasks), "")
        self._classifier_model = classifier_model
        if isinstance(classifier_model, str):
            try:
                config.resolve_group(classifier_model)
            except ConfigError:
                problems.append(
                    ConfigProblem(
                        "classifier_model",
                        f"unknown model alias {classifier_model!r}; known: "
                        f"{', '.join(config.public_models())}",
                    )
                )
        elif (
            classifier == "llm"
            and classifier_model is None
            and self.proxy_info is None
            and self.cheapest_model() is None
        ):
            problems.append(
                ConfigProblem(
                    "classifier_model",
                    "classifier='llm' uses the cheapest model, but no model declares "
                    "input_cost_per_token/output_cost_per_token; set classifier_model",
                )
            )
        for spec in config.tasks.values():
            problem = self._static_capability_problem(spec)
            if problem is not None:
                problems.append(problem)
        if problems:
            raise ConfigError(problems, source=config.source)

        if isinstance(budgets, BudgetManager):
            self.budgets: BudgetManager | None = budgets
        else:
            chosen = (
                list(budgets) if budgets is not None else task_budgets(config, window=self._window)
            )
            self.budgets = BudgetManager(chosen) if chosen else None

        self._terms = {name: _terms(spec) for name, spec in config.tasks.items()}
        self._models: dict[tuple[str, tuple[tuple[str, str], ...]], BaseChatModel] = {}
        self._build_lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._cache_size = classifier_cache_size
        self._cache_lock = threading.Lock()
        self.classifier_calls = 0
        """LLM classifier calls actually sent (cache hits excluded)."""

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig | str | os.PathLike[str] | Mapping[str, Any],
        *,
        router: bool | None = None,
        budgets: BudgetManager | Sequence[Budget] | None = None,
        proxy_info: ProxyModelInfo | bool | None = None,
        **options: Any,
    ) -> TaskSelector:
        """A selector for a config file, YAML text, mapping or :class:`~gatewaykit.GatewayConfig`.

        Every problem (unknown default task, a task whose every candidate lacks a required
        capability, a bad ``downgrade_at``...) is reported at once in one
        :class:`~gatewaykit.ConfigError`. Nothing is called and no key is read here: models are
        built on first use.
        """
        return cls(
            load_config(config), router=router, budgets=budgets, proxy_info=proxy_info, **options
        )

    # ------------------------------------------------------------------ setup helpers

    def _task_options(
        self,
        spec: TaskSpec,
        threshold: int | None,
        downgrade_at: float,
        problems: list[ConfigProblem],
    ) -> _TaskOptions:
        path = f"tasks.{spec.name}"
        extra = spec.extra
        window = self._window
        raw_window = extra.get("budget_window")
        if raw_window is not None:
            try:
                window = Window.parse(raw_window)
            except ValueError as e:
                problems.append(ConfigProblem(f"{path}.budget_window", str(e)))
        raw_threshold = extra.get("long_context_threshold", threshold)
        if raw_threshold is not None and (
            isinstance(raw_threshold, bool)
            or not isinstance(raw_threshold, int)
            or raw_threshold <= 0
        ):
            problems.append(
                ConfigProblem(
                    f"{path}.long_context_threshold",
                    f"must be a positive number of tokens, got {raw_threshold!r}",
                )
            )
            raw_threshold = None
        raw_downgrade = extra.get("downgrade_at", downgrade_at)
        if (
            isinstance(raw_downgrade, bool)
            or not isinstance(raw_downgrade, int | float)
            or not 0.0 < float(raw_downgrade) <= 1.0
        ):
            problems.append(
                ConfigProblem(
                    f"{path}.downgrade_at",
                    f"must be a share of the budget in (0, 1], e.g. 0.8, got {raw_downgrade!r}",
                )
            )
            raw_downgrade = downgrade_at
        return _TaskOptions(raw_threshold, window, float(raw_downgrade))

    def _static_capability_problem(self, spec: TaskSpec) -> ConfigProblem | None:
        """The capability rule run on the config alone, at load: a task no model can serve is
        a config error, not a surprise on the first call."""
        if not spec.requires:
            return None
        # With a proxy still to be asked, an undeclared capability may yet be declared there.
        strict = self.strict_capabilities and self.proxy_info is None
        try:
            self._capability_rule(spec, spec.requires, strict=strict)
        except TaskSelectionError as e:
            return ConfigProblem(
                f"tasks.{spec.name}.requires",
                f"{e}. Point the task (or its fallback_model) at a model with the capability, "
                "or correct model_info",
            )
        return None

    # ------------------------------------------------------------------ knowledge

    @property
    def tasks(self) -> Mapping[str, TaskSpec]:
        """The config's tasks, by name."""
        return self.config.tasks

    def task(self, name: str) -> TaskSpec:
        """The task called ``name`` (a :class:`TaskSelectionError` names the known ones)."""
        spec = self.config.tasks.get(name)
        if spec is None:
            raise TaskSelectionError(
                f"unknown task {name!r}; tasks: {', '.join(self.config.tasks)}",
                task=name,
                rule="task",
            )
        return spec

    def capabilities(self, alias: str, *, proxy: bool = True) -> ModelCapabilities:
        """What is known about ``alias``: the config's ``model_info`` first, then (in front of a
        proxy) its ``/model_group/info`` for whatever the config leaves unsaid.

        Over several deployments a group has a capability when any deployment has it, and its
        context window and prices are the largest (LiteLLM's own aggregation); in direct mode
        only the first deployment counts, as it is the one called.
        """
        base = self._config_caps.get(alias)
        if base is None:
            base = self._config_caps[alias] = self._from_config(alias)
        if not (proxy and self.proxy_info is not None):
            return base
        table = self.proxy_info.snapshot()
        row = table.get(alias) or table.get(base.group)
        if row is None:
            return base
        values: dict[str, Any] = {}
        sources = dict(base.sources)
        for name, value in _proxy_caps(row).items():
            if value is not None and getattr(base, name) is None:
                values[name], sources[name] = value, "proxy"
        return dataclasses.replace(base, sources=MappingProxyType(sources), **values)

    def _from_config(self, alias: str) -> ModelCapabilities:
        cfg = self.config
        deps = cfg.group(alias)
        if self.mode == "direct":
            deps = deps[:1]
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for cap, attr in _CAP_FIELD.items():
            seen = [getattr(d, attr) for d in deps]
            value = True if True in seen else False if False in seen else None
            if value is not None:
                values[cap], sources[cap] = value, "config"
        for name in ("max_input_tokens", "input_cost_per_token", "output_cost_per_token"):
            known = [getattr(d, name) for d in deps if getattr(d, name) is not None]
            if known:
                values[name], sources[name] = max(known), "config"
        modes = {d.model_info.get("mode") for d in deps} - {None}
        if len(modes) == 1:
            values["mode"], sources["mode"] = str(modes.pop()), "config"
        return ModelCapabilities(
            alias=alias,
            group=cfg.resolve_group(alias),
            sources=MappingProxyType(sources),
            **values,
        )

    def cheapest_model(self) -> str | None:
        """The chat model alias with the lowest known price per token (input + output), or None
        when no price is known; what the LLM classifier uses by default."""
        best: tuple[float, int, str] | None = None
        for i, alias in enumerate(self.config.public_models()):
            caps = self.capabilities(alias)
            if caps.mode in _NON_CHAT_MODES:
                continue
            if caps.input_cost_per_token is None and caps.output_cost_per_token is None:
                continue
            price = (caps.input_cost_per_token or 0.0) + (caps.output_cost_per_token or 0.0)
            if best is None or (price, i) < best[:2]:
                best = (price, i, alias)
        return best[2] if best else None

    def budget_used(self, task: str) -> float | None:
        """The largest share spent (calls in flight included) of the budgets this task's calls
        count against in the current window; None when none applies."""
        if self.budgets is None:
            return None
        statuses = self.budgets.status(self._spend_context(self.task(task), ()))
        if not statuses:
            return None
        shares = [
            (s.spent + s.reserved) / s.budget.limit if s.budget.limit > 0 else 1.0 for s in statuses
        ]
        return max(shares)

    def _spend_context(self, spec: TaskSpec, tags: Sequence[str]) -> SpendContext:
        key = f"{TASK_TAG_PREFIX}{spec.name}"
        return SpendContext(tags=tuple(dict.fromkeys([key, *spec.tags, *tags])))

    def _refresh_proxy(self) -> None:
        if self.proxy_info is not None:
            self.proxy_info.groups()

    async def _arefresh_proxy(self) -> None:
        if self.proxy_info is not None:
            await self.proxy_info.agroups()

    # ------------------------------------------------------------------ candidates

    def _capability_candidates(self, spec: TaskSpec) -> list[str]:
        """The task's own alternatives, then the config's fallbacks for its model."""
        out = [spec.model, spec.fallback_model, spec.long_context_model, spec.cheaper_model]
        with contextlib.suppress(ConfigError):
            out += list(self.config.fallback_chain(self.config.resolve_group(spec.model)))
        return [a for a in dict.fromkeys(a for a in out if a)]

    def _missing(self, alias: str, needs: Sequence[str], strict: bool | None = None) -> list[str]:
        """The needed capabilities ``alias`` is known to lack (or not declared, when strict)."""
        caps = self.capabilities(alias)
        if self.strict_capabilities if strict is None else strict:
            return [c for c in needs if caps.supports(c) is not True]
        return caps.lacks(needs)

    def _unfit(
        self,
        alias: str,
        needs: Sequence[str],
        tokens: int | None = None,
        *,
        strict: bool | None = None,
    ) -> str | None:
        """Why ``alias`` cannot take the request (None when it can)."""
        caps = self.capabilities(alias)
        missing = self._missing(alias, needs, strict)
        if missing:
            return "lacks " + ", ".join(caps.describe(c) for c in missing)
        if tokens is not None and not caps.fits(tokens):
            return f"~{tokens} input tokens exceed its max_input_tokens {caps.max_input_tokens}"
        return None

    # ------------------------------------------------------------------ the rules

    def _capability_rule(
        self, spec: TaskSpec, needs: Sequence[str], *, strict: bool | None = None
    ) -> tuple[str, RuleResult | None]:
        if not needs:
            return spec.model, None
        checked: dict[str, str] = {}
        missing: set[str] = set()
        for alias in self._capability_candidates(spec):
            missing.update(self._missing(alias, needs, strict))
            why = self._unfit(alias, needs, strict=strict)
            if why is None:
                if alias == spec.model:
                    caps = self.capabilities(alias)
                    unknown = [c for c in needs if caps.supports(c) is None]
                    note = f" ({', '.join(unknown)} not declared: assumed)" if unknown else ""
                    detail = f"{alias} has {', '.join(needs)}{note}"
                    return alias, RuleResult("capability", False, detail)
                detail = f"{spec.model} {checked[spec.model]}; using {_role(spec, alias)} {alias}"
                return alias, RuleResult("capability", True, detail)
            checked[alias] = why
        # Last resort: any other chat group that declares every need.
        for alias in self.config.public_models():
            if alias in checked:
                continue
            caps = self.capabilities(alias)
            if caps.mode in _NON_CHAT_MODES or not caps.declares(needs):
                continue
            detail = f"{spec.model} {checked[spec.model]}; using {alias}, which declares " + (
                ", ".join(needs)
            )
            return alias, RuleResult("capability", True, detail)
        raise TaskSelectionError(
            f"task {spec.name!r} needs {', '.join(sorted(missing))}, and no model can provide "
            "it: " + "; ".join(f"{a} {why}" for a, why in checked.items()),
            task=spec.name,
            rule="capability",
            checked=checked,
        )

    def _context_rule(
        self, spec: TaskSpec, model: str, needs: Sequence[str], tokens: int
    ) -> tuple[str, RuleResult | None]:
        caps = self.capabilities(model)
        threshold = self._options[spec.name].long_context_threshold
        limits = [x for x in (caps.max_input_tokens, threshold) if x is not None]
        if not limits:
            return model, None
        limit = min(limits)
        what = (
            f"long_context_threshold {threshold}"
            if threshold is not None and limit == threshold
            else f"max_input_tokens {caps.max_input_tokens} of {model}"
        )
        if tokens <= limit:
            return model, RuleResult("context", False, f"~{tokens} input tokens <= {what}")
        long = spec.long_context_model
        if long is None or long == model:
            detail = f"~{tokens} input tokens > {what}" + (
                "; no long_context_model configured" if long is None else ""
            )
            return model, RuleResult("context", False, detail)
        why = self._unfit(long, needs)
        if why is not None:
            detail = f"~{tokens} input tokens > {what}; long_context_model {long} {why}"
            return model, RuleResult("context", False, detail)
        long_caps = self.capabilities(long)
        note = (
            "" if long_caps.fits(tokens) else f" (even its {long_caps.max_input_tokens} is short)"
        )
        detail = f"~{tokens} input tokens > {what}; using long_context_model {long}{note}"
        return long, RuleResult("context", True, detail)

    def _cost_rule(
        self, spec: TaskSpec, model: str, needs: Sequence[str], tokens: int, out_tokens: int
    ) -> tuple[str, RuleResult | None]:
        ceiling = spec.max_cost_per_call
        if ceiling is None:
            return model, None
        estimate = self.capabilities(model).estimate_cost(tokens, out_tokens)
        if estimate is None:
            return model, RuleResult(
                "cost", False, f"prices of {model} unknown; max_cost_per_call not checked"
            )
        if estimate <= ceiling:
            return model, RuleResult(
                "cost",
                False,
                f"estimated ${estimate:.4g} on {model} <= max_cost_per_call ${ceiling:g}",
            )
        head = f"estimated ${estimate:.4g} on {model} > max_cost_per_call ${ceiling:g}"
        checked = {model: head}
        cheap = spec.cheaper_model
        if cheap is not None and cheap != model:
            why = self._unfit(cheap, needs, tokens)
            cheap_cost = self.capabilities(cheap).estimate_cost(tokens, out_tokens)
            if why is None and (cheap_cost is None or cheap_cost <= ceiling):
                shown = "price unknown" if cheap_cost is None else f"~${cheap_cost:.4g}"
                return cheap, RuleResult(
                    "cost", True, f"{head}; using cheaper_model {cheap} ({shown})"
                )
            checked[cheap] = why or f"estimated ${cheap_cost:.4g} is over the ceiling too"
        hint = "" if cheap else "; set cheaper_model or raise max_cost_per_call"
        raise TaskSelectionError(
            f"task {spec.name!r}: no model fits max_cost_per_call ${ceiling:g} for ~{tokens} "
            f"input and {out_tokens} output tokens: "
            + "; ".join(f"{a}: {why}" for a, why in checked.items())
            + hint,
            task=spec.name,
            rule="cost",
            checked=checked,
        )

    def _budget_rule(
        self, spec: TaskSpec, model: str, needs: Sequence[str], tokens: int, out_tokens: int
    ) -> tuple[str, RuleResult | None, float | None]:
        used = self.budget_used(spec.name)
        if used is None:
            return model, None, None
        at = self._options[spec.name].downgrade_at
        head = f"task budget {used:.0%} used"
        if used < at:
            return model, RuleResult("budget", False, f"{head} (< {at:.0%})"), used
        cheap = spec.cheaper_model
        if cheap is None:
            detail = f"{head} (>= {at:.0%}); no cheaper_model configured"
            return model, RuleResult("budget", False, detail), used
        if cheap == model:
            return model, RuleResult("budget", False, f"{head}; already on {cheap}"), used
        why = self._unfit(cheap, needs, tokens)
        ceiling = spec.max_cost_per_call
        cheap_cost = self.capabilities(cheap).estimate_cost(tokens, out_tokens)
        if why is None and ceiling is not None and cheap_cost is not None and cheap_cost > ceiling:
            why = f"estimated ${cheap_cost:.4g} > max_cost_per_call ${ceiling:g}"
        if why is not None:
            detail = f"{head} (>= {at:.0%}); cheaper_model {cheap} {why}"
            return model, RuleResult("budget", False, detail), used
        detail = f"{head} (>= {at:.0%}); using cheaper_model {cheap}"
        return cheap, RuleResult("budget", True, detail), used

    # ------------------------------------------------------------------ selection

    def select(
        self,
        task: str | None,
        input: LanguageModelInput | None = None,
        **kwargs: Any,
    ) -> TaskSelection:
        """Decide (and explain) which model would serve ``input`` for ``task``, without calling
        it. ``task=None`` detects the task as :meth:`as_runnable` would; ``kwargs`` are call
        options (``tools``, ``max_tokens``, ``model`` to pin an alias...).

        Example::

            sel = selector.select("summarize", long_document)
            print(sel.model, "-", sel.reason)   # big - ~52000 input tokens > max_input_tokens ...
        """
        messages = _to_messages(input) if input is not None else []
        self._refresh_proxy()
        detection = (
            TaskDetection(task, "call", "named by the caller")
            if task is not None
            else self.detect(messages)
        )
        plan = self._plan(detection, messages, dict(kwargs), fields=None, reserve=False)
        return plan.selection

    def _plan(
        self,
        detection: TaskDetection,
        messages: Sequence[BaseMessage],
        kwargs: dict[str, Any],
        *,
        fields: TaskChatModel | None,
        reserve: bool,
    ) -> _Plan:
        spec = self.task(detection.task)
        kwargs.pop("ls_structured_output_format", None)
        kwargs.pop("task", None)
        pinned = kwargs.pop("model", None)
        # A call option, then the task model's field, then the task's own value.
        temperature = _first(
            kwargs.pop("temperature", None),
            fields.temperature if fields else None,
            spec.temperature,
        )
        max_tokens = _first(
            kwargs.pop("max_tokens", None), fields.max_tokens if fields else None, spec.max_tokens
        )
        task_tag = [f"{TASK_TAG_PREFIX}{spec.name}"] if self.send_task_tag else []
        tags = list(
            dict.fromkeys(
                [
                    *spec.tags,
                    *(fields.gateway_tags if fields else ()),
                    *task_tag,
                    *(kwargs.pop("gateway_tags", None) or ()),
                ]
            )
        )
        needs = tuple(sorted(set(spec.requires) | _request_needs(messages, kwargs)))
        tokens = _estimate_tokens(messages, kwargs)
        out_tokens = int(max_tokens) if max_tokens else self.default_output_tokens
        rules: list[RuleResult] = []
        budget_used: float | None = None
        if pinned is not None:
            model = str(pinned)
            self.config.resolve_group(model)
            rules.append(RuleResult("pinned", True, f"model {model!r} pinned by the caller"))
        else:
            model, r = self._capability_rule(spec, needs)
            rules += [r] if r else []
            model, r = self._context_rule(spec, model, needs, tokens)
            rules += [r] if r else []
            model, r = self._cost_rule(spec, model, needs, tokens, out_tokens)
            rules += [r] if r else []
            model, r, budget_used = self._budget_rule(spec, model, needs, tokens, out_tokens)
            rules += [r] if r else []
        applied = [r.detail for r in rules if r.applied]
        reason = "; ".join(applied) if applied else f"default model for task {spec.name!r}"
        estimate = self.capabilities(model).estimate_cost(tokens, out_tokens)
        params: dict[str, Any] = {"gateway_tags": tags}
        if temperature is not None:
            params["temperature"] = temperature
        if max_tokens is not None:
            params["max_tokens"] = int(max_tokens)
        selection = TaskSelection(
            task=spec.name,
            model=model,
            group=self.config.resolve_group(model),
            mode=self.mode,
            reason=reason,
            rules=tuple(rules),
            needs=needs,
            input_tokens=tokens,
            output_tokens=out_tokens,
            estimated_cost=estimate,
            budget_used=budget_used,
            params=MappingProxyType(params),
            detection=detection,
        )
        attempts = [model]
        fb = spec.fallback_model
        if pinned is None and fb is not None and fb != model and self._unfit(fb, needs) is None:
            attempts.append(fb)
        reservation = None
        if reserve and self.budgets is not None:
            reservation = self.budgets.reserve(self._spend_context(spec, tags), estimate or 0.0)
        return _Plan(selection, {**kwargs, **params}, attempts, reservation)

    # ------------------------------------------------------------------ detection

    def detect(self, input: LanguageModelInput | Sequence[BaseMessage]) -> TaskDetection:
        """Which task ``input`` belongs to: the keyword classifier, or the LLM classifier when
        ``classifier="llm"`` (its answers cached per input).

        Example::

            selector.detect("Please review this diff").task     # 'code_review'
        """
        messages = _to_messages(input)
        text = _last_human_text(messages)
        if self.classifier == "llm":
            return self._detect_llm(text)
        return self.detect_keywords(text)

    async def adetect(self, input: LanguageModelInput | Sequence[BaseMessage]) -> TaskDetection:
        """Async :meth:`detect`."""
        messages = _to_messages(input)
        text = _last_human_text(messages)
        if self.classifier == "llm":
            return await self._adetect_llm(text)
        return self.detect_keywords(text)

    def detect_keywords(self, text: str) -> TaskDetection:
        """The rules classifier: each task scores 3 per keyword (phrases allowed), 2 per word of
        its name and 1 per description word found in ``text``; the best score wins (ties: config
        order); no match means :attr:`default_task`."""
        stems = _stems(text)
        stem_set = set(stems)
        scored: list[tuple[int, int, str, list[str]]] = []
        for i, (name, terms) in enumerate(self._terms.items()):
            score, hits = _score(terms, stems, stem_set)
            scored.append((score, -i, name, hits))
        scored.sort(reverse=True)
        scores = {name: score for score, _, name, _ in scored}
        best = scored[0] if scored else None
        if best is None or best[0] == 0:
            return TaskDetection(
                self.default_task,
                "keywords",
                f"no keyword, name or description word matched; default task {self.default_task!r}",
                scores=scores,
            )
        score, _, name, hits = best
        runner = next((s for s in scored[1:] if s[0] > 0), None)
        tail = f"; next: {runner[2]} ({runner[0]})" if runner else ""
        return TaskDetection(
            name,
            "keywords",
            f"keywords: {name} scored {score} ({', '.join(hits)}){tail}",
            scores=scores,
        )

    def _cache_key(self, text: str) -> str:
        menu = [(n, s.description or "", list(s.keywords)) for n, s in self.config.tasks.items()]
        raw = json.dumps([menu, text], ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()

    def _cached(self, key: str) -> TaskDetection | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            self._cache.move_to_end(key)
        task, answer = hit
        return TaskDetection(
            task, "llm", f"llm classifier answered {answer!r} (cached)", cached=True
        )

    def _remember(self, key: str, task: str, answer: str) -> None:
        if self._cache_size <= 0:
            return
        with self._cache_lock:
            self._cache[key] = (task, answer)
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _classifier_prompt(self, text: str) -> list[BaseMessage]:
        lines = []
        for name, spec in self.config.tasks.items():
            about = spec.description or ", ".join(spec.keywords) or name.replace("_", " ")
            lines.append(f"- {name}: {about}")
        system = (
            "Classify the user's request into exactly one of these tasks:\n"
            + "\n".join(lines)
            + "\nAnswer with the task name only. If none fits, answer: none"
        )
        return [SystemMessage(system), HumanMessage(text[:4000])]

    def _classifier_target(self) -> tuple[BaseChatModel, dict[str, Any]]:
        chosen = self._classifier_model
        if isinstance(chosen, BaseChatModel):
            return chosen, {}
        alias = chosen or self.cheapest_model()
        if alias is None:
            raise ConfigError(
                ConfigProblem(
                    "classifier_model",
                    "the LLM classifier needs a model: no model declares a price; set "
                    "classifier_model",
                ),
                source=self.config.source,
            )
        model, extra = self._target(alias)
        return model, {
            **extra,
            "temperature": 0,
            "max_tokens": 20,
            "gateway_tags": [CLASSIFIER_TAG],
        }

    def _parse_answer(self, answer: str, key: str) -> TaskDetection | None:
        word = answer.strip().strip("\"'`.*").strip().lower()
        by_lower = {n.lower(): n for n in self.config.tasks}
        task = by_lower.get(word)
        if task is None and word != "none":
            found = [
                (m.start(), n)
                for low, n in by_lower.items()
                if (m := re.search(rf"\b{re.escape(low)}\b", answer.lower())) is not None
            ]
            task = min(found)[1] if found else None
        if task is None and word == "none":
            self._remember(key, self.default_task, answer.strip())
            return TaskDetection(
                self.default_task,
                "llm",
                f"llm classifier answered 'none'; default task {self.default_task!r}",
            )
        if task is None:
            return None
        self._remember(key, task, answer.strip())
        return TaskDetection(task, "llm", f"llm classifier answered {answer.strip()!r}")

    def _fallback_detection(self, text: str, why: str) -> TaskDetection:
        kw = self.detect_keywords(text)
        return dataclasses.replace(kw, reason=f"{why}; {kw.reason}")

    def _detect_llm(self, text: str) -> TaskDetection:
        key = self._cache_key(text)
        hit = self._cached(key)
        if hit is not None:
            return hit
        model, extra = self._classifier_target()
        self.classifier_calls += 1
        try:
            answer = _content_text(model.invoke(self._classifier_prompt(text), **extra).content)
        except Exception as exc:
            logger.warning("task classifier call failed: %s", exc)
            return self._fallback_detection(text, f"llm classifier failed ({type(exc).__name__})")
        found = self._parse_answer(answer, key)
        if found is None:
            return self._fallback_detection(text, f"llm classifier answered {answer.strip()!r}")
        return found

    async def _adetect_llm(self, text: str) -> TaskDetection:
        key = self._cache_key(text)
        hit = self._cached(key)
        if hit is not None:
            return hit
        model, extra = self._classifier_target()
        self.classifier_calls += 1
        try:
            msg = await model.ainvoke(self._classifier_prompt(text), **extra)
            answer = _content_text(msg.content)
        except Exception as exc:
            logger.warning("task classifier call failed: %s", exc)
            return self._fallback_detection(text, f"llm classifier failed ({type(exc).__name__})")
        found = self._parse_answer(answer, key)
        if found is None:
            return self._fallback_detection(text, f"llm classifier answered {answer.strip()!r}")
        return found

    # ------------------------------------------------------------------ models

    def _target(
        self, alias: str, overrides: Mapping[str, Any] | None = None
    ) -> tuple[BaseChatModel, dict[str, Any]]:
        """The chat model that serves ``alias`` and the call options that point it there.

        Models are built on first use and shared; ``overrides`` (``max_retries``, ``api_key``
        of a :class:`TaskChatModel`) get models of their own."""
        extra = dict(overrides or {})
        key = (self.mode if self.mode == "router" else alias, _freeze(extra))
        model = self._models.get(key)
        if model is None:
            with self._build_lock:
                model = self._models.get(key)
                if model is None:
                    model = self._build(alias, {**self.model_kwargs, **extra})
                    self._models[key] = model
        return model, ({"model": alias} if self.mode == "router" else {})

    def _build(self, alias: str, kwargs: dict[str, Any]) -> BaseChatModel:
        if self.mode == "router":
            from gatewaykit.routing.model import RouterChatModel

            return RouterChatModel.from_config(self.config, model=alias, **kwargs)
        from gatewaykit.chat_model import GatewayChatModel

        return GatewayChatModel.from_config(self.config, alias, **kwargs)

    def for_task(self, task: str, **overrides: Any) -> TaskChatModel:
        """A chat model for ``task``: its temperature, max_tokens and tags applied to every call,
        the rules applied per request, and ``response_metadata["task"]`` on every answer.

        ``overrides`` set :class:`TaskChatModel` fields (``temperature``, ``max_tokens``,
        ``gateway_tags``); per-call keyword arguments win over both.

        Example::

            review = selector.for_task("code_review")
            review.bind_tools([run_tests]).invoke("Review this diff ...")
        """
        spec = self.task(task)
        fields: dict[str, Any] = {
            "temperature": spec.temperature,
            "max_tokens": spec.max_tokens,
            "gateway_tags": list(spec.tags),
        }
        fields.update(overrides)
        return TaskChatModel(selector=self, task=task, **fields)

    def as_runnable(self, **overrides: Any) -> TaskChatModel:
        """A chat model that picks the task per call: ``task=`` keyword, then
        ``config={"configurable": {"task": ...}}``, else automatic detection (keywords, or the
        LLM classifier). Still a chat model: ``bind_tools`` and ``with_structured_output`` work.

        Example::

            auto = selector.as_runnable()
            auto.invoke("summarize: ...").response_metadata["task"]["detected_by"]  # 'keywords'
            auto.invoke("...", config={"configurable": {"task": "code_review"}})
        """
        return TaskChatModel(selector=self, task=None, **overrides)

    def __repr__(self) -> str:
        return (
            f"TaskSelector(mode={self.mode!r}, tasks={list(self.config.tasks)!r}, "
            f"classifier={self.classifier!r})"
        )


def _first(*values: Any) -> Any:
    """The first value that is not None."""
    return next((v for v in values if v is not None), None)


def _freeze(options: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A hashable cache key for model options (secrets by value, never printed)."""
    out = []
    for k, v in sorted(options.items()):
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        out.append((k, hashlib.sha256(repr(raw).encode()).hexdigest()))
    return tuple(out)


def _role(spec: TaskSpec, alias: str) -> str:
    for name in ("fallback_model", "long_context_model", "cheaper_model"):
        if getattr(spec, name) == alias:
            return name
    return "config fallback"


def _falls_back(exc: BaseException) -> bool:
    """Whether the task's fallback_model may succeed where this error happened."""
    if not isinstance(exc, GatewayError):
        return False
    if exc.kind == "budget_exceeded":
        return getattr(exc, "scope", None) not in _CALLER_BUDGET_SCOPES
    return exc.kind in _FALLBACK_KINDS


# --------------------------------------------------------------------------- the chat model


class _Spend:
    """What an answer cost, gathered from whichever metadata the serving model left."""

    __slots__ = ("reported", "usage")

    def __init__(self) -> None:
        self.reported: float | None = None
        self.usage: UsageMetadata | None = None

    def feed(self, message: BaseMessage, info: Mapping[str, Any] | None) -> None:
        reported = _reported_cost(message.response_metadata)
        if reported is None and info:
            reported = _reported_cost(info)
        if reported is not None:
            self.reported = reported
        usage = getattr(message, "usage_metadata", None)
        if usage:
            self.usage = add_usage(self.usage, usage) if self.usage else usage

    def cost(self, caps: ModelCapabilities) -> float:
        return call_cost(
            self.reported,
            dict(self.usage) if self.usage else None,
            caps.input_cost_per_token,
            caps.output_cost_per_token,
        )


def _reported_cost(meta: Mapping[str, Any]) -> float | None:
    """The router's cost, else the gateway's ``x-litellm-response-cost``."""
    routing = meta.get("routing")
    if isinstance(routing, Mapping) and routing.get("cost") is not None:
        return float(routing["cost"])
    gw = meta.get("gateway")
    if isinstance(gw, Mapping) and gw.get("response_cost") is not None:
        return float(gw["response_cost"])
    return None


def _closing_chunk(meta: dict[str, Any]) -> ChatGenerationChunk:
    """The stream's last chunk: empty, carrying ``response_metadata["task"]``."""
    return ChatGenerationChunk(
        message=AIMessageChunk(content="", chunk_position="last"),
        generation_info={"task": meta},
    )


def _has_payload(chunk: ChatGenerationChunk) -> bool:
    return bool(chunk.text) or bool(getattr(chunk.message, "tool_call_chunks", None))


class TaskChatModel(RunConfigChatModel):
    """A chat model that serves a task (or detects it) through a :class:`TaskSelector`.

    Made by :meth:`TaskSelector.for_task` (``task`` set) or :meth:`TaskSelector.as_runnable`
    (``task`` None: a ``task=`` keyword, ``config["configurable"]["task"]`` or detection decides
    per call). Each call applies the selector's rules, sends the task's parameters and tags, tries
    the task's ``fallback_model`` when the chosen model fails before answering, counts the
    spend against the task budget, and puts the decision in ``response_metadata["task"]``.
    It is a real ``BaseChatModel``: ``bind_tools``, ``with_structured_output``, ``batch``,
    streaming and LangGraph nodes work as with any chat model.

    Example::

        review = selector.for_task("code_review")
        msg = review.invoke("Review this diff ...")
        msg.response_metadata["task"]["model"], msg.response_metadata["task"]["reason"]

        auto = selector.as_runnable()
        auto.invoke("...", config={"configurable": {"task": "summarize"}})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    selector: TaskSelector = Field(exclude=True)
    """The selector whose config, rules, budgets and models this model uses."""
    task: str | None = None
    """The task served; None picks it per call."""
    temperature: float | None = None
    """Overrides the task's temperature (a per-call ``temperature`` wins)."""
    max_tokens: int | None = None
    """Overrides the task's max_tokens (a per-call ``max_tokens`` wins)."""
    gateway_tags: list[str] = Field(default_factory=list)
    """Gateway tags sent with every call, beside the task's own and ``task:<name>``."""
    stop: list[str] | None = None
    """Default stop sequences (a per-call ``stop`` wins)."""
    streaming: bool = False
    """Stream every call, ``invoke`` included (so TTFT and idle timeouts apply to it too)."""
    timeout: float | None = None
    """Seconds allowed per call (per attempt, with the router)."""
    max_retries: int | None = None
    """Retries of the models behind (the SDK's, or the router's per group). Setting it gives
    this model its own underlying models instead of the selector's shared ones."""
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    """A key for every call (e.g. a virtual key); by default the config's. Setting it gives this
    model its own underlying models."""

    def __init__(self, **kwargs: Any) -> None:
        selector = kwargs.get("selector")
        task = kwargs.get("task")
        if isinstance(selector, TaskSelector) and task is not None:
            selector.task(task)  # the typed error, not pydantic's ValidationError
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ LangChain plumbing

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def _llm_type(self) -> str:
        return "gatewaykit-task"

    @property
    def model_name(self) -> str:
        """The task's default model alias (``task-selector`` when the task varies)."""
        return self.selector.task(self.task).model if self.task else "task-selector"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "gatewaykit"
        params["ls_model_name"] = kwargs.get("model", self.model_name)
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stop = stop or self.stop
        if stop:
            params["ls_stop"] = stop
        return params

    def _call_options(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> Any:
        if self.task is not None or "task" in kwargs:
            return kwargs
        # ensure_config also reads the config a parent run (a LangGraph node) set in context.
        task = (ensure_config(config).get("configurable") or {}).get("task")
        if task:
            return {**kwargs, "task": task, "_task_source": "configurable"}
        return kwargs

    # The run's configurable task becomes a call option, so every entry point sees it.
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
        """Bind tools in OpenAI format; the tools capability then joins the request's needs."""
        from gatewaykit.routing.model import openai_tool_binding

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
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """ChatOpenAI's contract. The default method is ``json_schema`` when the task's model
        (every task's, for a per-call task) declares ``supports_response_schema``, else function
        calling."""
        from langchain_openai.chat_models.base import BaseChatOpenAI

        if method is None:
            tasks = [self.task] if self.task else list(self.selector.tasks)
            models = [self.selector.task(t).model for t in tasks]
            method = (
                "json_schema"
                if all(self.selector.capabilities(m).json_schema is True for m in models)
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

    # ------------------------------------------------------------------ planning

    def _detection(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> TaskDetection:
        source = kwargs.pop("_task_source", "call")
        if self.task is not None:
            kwargs.pop("task", None)
            return TaskDetection(self.task, "fixed", f"model for task {self.task!r}")
        task = kwargs.get("task")
        if task:
            method: DetectionMethod = "configurable" if source == "configurable" else "call"
            where = "config['configurable']['task']" if method == "configurable" else "task="
            return TaskDetection(str(task), method, f"named by {where}")
        return self.selector.detect(messages)

    async def _adetection(
        self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]
    ) -> TaskDetection:
        if self.task is None and not kwargs.get("task"):
            kwargs.pop("_task_source", None)
            return await self.selector.adetect(messages)
        return self._detection(messages, kwargs)

    def _plan(
        self, messages: Sequence[BaseMessage], kwargs: dict[str, Any], detection: TaskDetection
    ) -> _Plan:
        if self.timeout is not None:
            kwargs.setdefault("timeout", self.timeout)
        return self.selector._plan(detection, messages, kwargs, fields=self, reserve=True)

    def _model_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_retries is not None:
            out["max_retries"] = self.max_retries
        if self.api_key is not None:
            out["api_key"] = self.api_key
        return out

    def _fallback(self, plan: _Plan, failed: str, exc: BaseException, nxt: str) -> None:
        sel = plan.selection
        kind = getattr(exc, "kind", type(exc).__name__)
        detail = f"{failed} failed ({kind}); using fallback_model {nxt}"
        plan.selection = dataclasses.replace(
            sel,
            model=nxt,
            group=self.selector.config.resolve_group(nxt),
            rules=(*sel.rules, RuleResult("fallback", True, detail)),
            reason=detail if sel.reason.startswith("default model") else f"{sel.reason}; {detail}",
            estimated_cost=self.selector.capabilities(nxt).estimate_cost(
                sel.input_tokens, sel.output_tokens
            ),
            fallback_from=failed,
        )

    def _settle(self, plan: _Plan, spend: _Spend | None) -> None:
        if plan.reservation is None or self.selector.budgets is None:
            return
        cost = spend.cost(self.selector.capabilities(plan.selection.model)) if spend else 0.0
        self.selector.budgets.settle(plan.reservation, cost)

    def _annotate(self, result: ChatResult, plan: _Plan) -> ChatResult:
        meta = plan.selection.metadata()
        for gen in result.generations:
            gen.message.response_metadata["task"] = meta
            if gen.generation_info is not None:
                gen.generation_info["task"] = meta
        return result

    # ------------------------------------------------------------------ calls

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        self.selector._refresh_proxy()
        detection = self._detection(messages, kwargs)
        plan = self._plan(messages, kwargs, detection)
        result: ChatResult | None = None
        try:
            for i, alias in enumerate(plan.attempts):
                model, extra = self.selector._target(alias, self._model_overrides())
                try:
                    result = model._generate(
                        messages,
                        stop=stop or self.stop,
                        run_manager=run_manager,
                        **plan.call_kwargs,
                        **extra,
                    )
                except Exception as exc:
                    if i + 1 < len(plan.attempts) and _falls_back(exc):
                        self._fallback(plan, alias, exc, plan.attempts[i + 1])
                        continue
                    raise
                break
        except BaseException:
            self._settle(plan, None)
            raise
        assert result is not None
        spend = _Spend()
        for gen in result.generations[:1]:
            spend.feed(gen.message, gen.generation_info)
        self._settle(plan, spend)
        return self._annotate(result, plan)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
        await self.selector._arefresh_proxy()
        detection = await self._adetection(messages, kwargs)
        plan = self._plan(messages, kwargs, detection)
        result: ChatResult | None = None
        try:
            for i, alias in enumerate(plan.attempts):
                model, extra = self.selector._target(alias, self._model_overrides())
                try:
                    result = await model._agenerate(
                        messages,
                        stop=stop or self.stop,
                        run_manager=run_manager,
                        **plan.call_kwargs,
                        **extra,
                    )
                except Exception as exc:
                    if i + 1 < len(plan.attempts) and _falls_back(exc):
                        self._fallback(plan, alias, exc, plan.attempts[i + 1])
                        continue
                    raise
                break
        except BaseException:
            self._settle(plan, None)
            raise
        assert result is not None
        spend = _Spend()
        for gen in result.generations[:1]:
            spend.feed(gen.message, gen.generation_info)
        self._settle(plan, spend)
        return self._annotate(result, plan)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self.selector._refresh_proxy()
        detection = self._detection(messages, kwargs)
        plan = self._plan(messages, kwargs, detection)
        spend = _Spend()
        try:
            for i, alias in enumerate(plan.attempts):
                model, extra = self.selector._target(alias, self._model_overrides())
                delivered = False
                try:
                    for chunk in model._stream(
                        messages,
                        stop=stop or self.stop,
                        run_manager=run_manager,
                        **plan.call_kwargs,
                        **extra,
                    ):
                        spend.feed(chunk.message, chunk.generation_info)
                        delivered = delivered or _has_payload(chunk)
                        yield chunk
                except Exception as exc:
                    if not delivered and i + 1 < len(plan.attempts) and _falls_back(exc):
                        self._fallback(plan, alias, exc, plan.attempts[i + 1])
                        spend = _Spend()
                        continue
                    raise
                break
        except BaseException:
            self._settle(plan, None)
            raise
        self._settle(plan, spend)
        yield _closing_chunk(plan.selection.metadata())

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await self.selector._arefresh_proxy()
        detection = await self._adetection(messages, kwargs)
        plan = self._plan(messages, kwargs, detection)
        spend = _Spend()
        try:
            for i, alias in enumerate(plan.attempts):
                model, extra = self.selector._target(alias, self._model_overrides())
                delivered = False
                try:
                    async for chunk in model._astream(
                        messages,
                        stop=stop or self.stop,
                        run_manager=run_manager,
                        **plan.call_kwargs,
                        **extra,
                    ):
                        spend.feed(chunk.message, chunk.generation_info)
                        delivered = delivered or _has_payload(chunk)
                        yield chunk
                except Exception as exc:
                    if not delivered and i + 1 < len(plan.attempts) and _falls_back(exc):
                        self._fallback(plan, alias, exc, plan.attempts[i + 1])
                        spend = _Spend()
                        continue
                    raise
                break
        except BaseException:
            self._settle(plan, None)
            raise
        self._settle(plan, spend)
        yield _closing_chunk(plan.selection.metadata())
