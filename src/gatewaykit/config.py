"""GatewayConfig: a LiteLLM proxy ``config.yaml``, loaded, validated and indexed.

The same file drives a LiteLLM proxy and gatewaykit's client-side router, so the dialect is
LiteLLM's (``model_list``, ``router_settings``, ``litellm_settings``, ``general_settings``,
``environment_variables``, ``guardrails``) plus two sections of gatewaykit's own: ``tasks:``
(named tasks for the TaskSelector) and ``gateway:`` (how a client reaches a proxy).

Loading checks everything at once and raises one :class:`ConfigError` listing every problem, each
naming the field path and the fix. ``os.environ/VAR`` strings become :class:`EnvRef` objects and
are resolved only when used (keys, URLs, settings), so a config loads on a machine that lacks
some keys; the few values the router needs as typed numbers or names at load (rpm, timeouts,
order, ``model``...) are resolved and checked at load. Secrets never appear in a repr or an error
message.

Example::

    cfg = GatewayConfig.from_yaml("config.yaml")
    for d in cfg.group("claude-sonnet"):
        print(d.id, d.model, d.order, d.rpm)
    cfg.fallback_chain("claude-sonnet", "context_window")  # ('claude-sonnet-long',)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import yaml

from gatewaykit._redact import SECRET_FIELD, redact
from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.cost import Budget, Window

__all__ = [
    "CAPABILITIES",
    "ROUTING_STRATEGIES",
    "AliasTarget",
    "ConfigError",
    "ConfigProblem",
    "Deployment",
    "EnvRef",
    "GatewayConfig",
    "GatewaySettings",
    "GuardrailSpec",
    "RouterSettings",
    "TaskSpec",
    "load_config",
    "resolve_value",
]

ENV_PREFIX: Final = "os.environ/"

ROUTING_STRATEGIES: Final = (
    "simple-shuffle",
    "least-busy",
    "usage-based-routing",
    "usage-based-routing-v2",
    "latency-based-routing",
    "cost-based-routing",
)
"""LiteLLM's ``router_settings.routing_strategy`` values (``simple-shuffle`` is the default)."""

CAPABILITIES: Final = ("tools", "vision", "json_schema", "reasoning")
"""Capability names a task may ``require``."""

FallbackKind = Literal["general", "context_window", "content_policy"]

# Prefixes people write that LiteLLM does not know, and what they meant.
_WRONG_PREFIXES: Final = {
    "claude": ("anthropic",),
    "google": ("gemini", "vertex_ai"),
    "aws": ("bedrock",),
    "vertex": ("vertex_ai",),
}
_AGENT_PREFIXES: Final = ("langgraph/", "a2a/", "a2a_agent/")
# `${NAME}` / `$NAME` (upper case): shell syntax that neither LiteLLM nor gatewaykit expands.
_SHELL_VAR: Final = re.compile(r"^(?:\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Z][A-Z0-9_]+))$")
_INT: Final = re.compile(r"^[+-]?\d+$")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Deployment keys that belong under litellm_params; at the entry level LiteLLM ignores them.
_MISPLACED: Final = _words("model api_key api_base base_url rpm tpm weight order tags")
_TOP_LEVEL: Final = _words(
    "model_list router_settings litellm_settings general_settings environment_variables "
    "guardrails tasks gateway budgets include"
)
_ROUTER_KEYS: Final = _words(
    "routing_strategy routing_strategy_args num_retries timeout stream_timeout allowed_fails "
    "cooldown_time retry_after enable_pre_call_checks enable_tag_filtering fallbacks "
    "context_window_fallbacks content_policy_fallbacks default_fallbacks model_group_alias "
    "max_fallbacks redis_url redis_host redis_port redis_password retry_policy "
    "allowed_fails_policy deadline max_cooldown_wait"
)
_TASK_KEYS: Final = _words(
    "model fallback_model cheaper_model long_context_model temperature max_tokens tags requires "
    "max_cost_per_call budget keywords description"
)
_GATEWAY_KEYS: Final = _words(
    "base_url api_key timeout ttft_timeout idle_timeout default_tags default_metadata user "
    "map_run_tags map_run_metadata"
)
_MISSING: Final = object()
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _frozen(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data)) if data else _EMPTY


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: Any, path: str = "") -> str:
    """A short, secret-free rendering of a bad value for an error message."""
    if path and SECRET_FIELD.search(path.rsplit(".", 1)[-1]):
        return "<hidden>"
    text = repr(value)
    return redact(text if len(text) <= 60 else text[:57] + "...")


def _shown(raw: Any, value: Any, path: str) -> str:
    """Like :func:`_show`, but a value read from the environment is never echoed."""
    if isinstance(raw, EnvRef):
        return f"the value of {raw} (not shown)"
    return _show(value, path)


def _names(names: Sequence[str], limit: int = 20) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# --------------------------------------------------------------------------- env references


@dataclass(frozen=True, slots=True, repr=False)
class EnvRef:
    """An ``os.environ/VAR`` value, kept unresolved until it is used.

    Lazy so that a config loads where some keys are absent (CI, a laptop with one provider key);
    the error then comes at first use and names both the variable and the config field.

    Example::

        ref = EnvRef("OPENAI_API_KEY", "model_list[0].litellm_params.api_key")
        ref.resolve()                                 # os.environ["OPENAI_API_KEY"]
        ref.resolve(extra={"OPENAI_API_KEY": "x"})    # environment_variables as a fallback
    """

    var: str
    path: str = field(default="", compare=False)
    """Where it appeared, for the error message; two references to one variable are equal."""
    source: str | None = field(default=None, compare=False)

    def resolve(
        self, env: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None
    ) -> str:
        """The value: ``env`` (default ``os.environ``) first, then the config's
        ``environment_variables`` section (``extra``)."""
        environ: Mapping[str, str] = os.environ if env is None else env
        value = environ.get(self.var)
        if value:
            return value
        chained = ""
        if extra is not None and self.var in extra:
            alt = extra[self.var]
            if isinstance(alt, EnvRef):
                alt_value = environ.get(alt.var) if alt.var != self.var else None
                if alt_value:
                    return alt_value
                if alt.var != self.var:
                    chained = (
                        f"; environment_variables.{self.var} points to os.environ/{alt.var}, "
                        "which is not set either"
                    )
            elif alt is not None:
                return str(alt)
        state = "is empty" if value == "" else "is not set"
        raise ConfigError(
            ConfigProblem(
                self.path,
                f"environment variable {self.var} {state} (referenced as {ENV_PREFIX}{self.var}"
                f"{chained}); export it or write the value in the config",
            ),
            source=self.source,
        )

    def __repr__(self) -> str:
        return f"EnvRef({self.var!r})"

    def __str__(self) -> str:
        return f"{ENV_PREFIX}{self.var}"


def resolve_value(
    value: Any, env: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None
) -> Any:
    """``value`` with every :class:`EnvRef` resolved, recursing into dicts and lists.

    All missing variables are reported together in one :class:`ConfigError`.

    Example::

        resolve_value({"api_key": EnvRef("KEY"), "rpm": 10}, env={"KEY": "k"})
        # {'api_key': 'k', 'rpm': 10}
    """
    problems: list[ConfigProblem] = []
    sources: list[str | None] = []

    def walk(v: Any) -> Any:
        if isinstance(v, EnvRef):
            try:
                return v.resolve(env, extra)
            except ConfigError as e:
                problems.extend(e.problems)
                sources.append(e.source)
                return None
        if isinstance(v, Mapping):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(walk(x) for x in v)
        return v

    out = walk(value)
    if problems:
        raise ConfigError(problems, source=sources[0])
    return out


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False, slots=True, kw_only=True, repr=False)
class Deployment:
    """One ``model_list`` entry: a concrete upstream behind a model group.

    Everything the router reads per call (rpm, weight, order, limits, capabilities) is parsed
    once at load into plain attributes. ``litellm_params`` keeps the raw values with
    :class:`EnvRef` objects inside; :meth:`param`, :meth:`api_key` and :meth:`api_base` resolve
    them on demand.

    Example::

        d = cfg.group("claude-sonnet")[0]
        d.id, d.provider, d.upstream_model, d.order   # ('claude-sonnet-direct', None, ...)
        d.api_key()                                   # ConfigError if the env var is unset
    """

    index: int
    model_name: str
    litellm_params: Mapping[str, Any]
    model_info: Mapping[str, Any] = field(default_factory=dict)
    id: str
    model: str
    provider: str | None = None
    upstream_model: str = ""
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    order: int | None = None
    tags: tuple[str, ...] = ()
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    timeout: float | None = None
    stream_timeout: float | None = None
    max_parallel_requests: int | None = None
    cooldown_time: float | None = None
    supports_function_calling: bool | None = None
    supports_vision: bool | None = None
    supports_response_schema: bool | None = None
    supports_reasoning: bool | None = None
    access_groups: tuple[str, ...] = ()
    guardrails: tuple[str, ...] = ()
    is_agent: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Unknown keys of the model_list entry itself (beside model_name/litellm_params/model_info)."""
    env_extra: Mapping[str, Any] = field(default_factory=dict)
    """The config's ``environment_variables``, the fallback when resolving ``EnvRef`` values."""

    def __post_init__(self) -> None:
        if not self.upstream_model:
            custom = self.litellm_params.get("custom_llm_provider")
            provider, upstream = _split_model(
                self.model, custom if isinstance(custom, str) else None
            )
            object.__setattr__(self, "provider", provider)
            object.__setattr__(self, "upstream_model", upstream)
            object.__setattr__(self, "is_agent", self.model.startswith(_AGENT_PREFIXES))
        if self.is_agent:
            # An agent runs its own tools and answers in text: it returns no tool calls and
            # no JSON-schema answer, so the router never picks it for a request needing them
            # (unless its model_info says otherwise).
            for cap in ("supports_function_calling", "supports_response_schema"):
                if getattr(self, cap) is None:
                    object.__setattr__(self, cap, False)
        for name in ("litellm_params", "model_info", "extra", "env_extra"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, _frozen(value))

    def param(self, name: str, default: Any = None) -> Any:
        """``litellm_params[name]`` with ``os.environ/`` references resolved."""
        return resolve_value(self.litellm_params.get(name, default), extra=self.env_extra)

    def api_key(self) -> str | None:
        """The resolved ``litellm_params.api_key`` (None when not configured)."""
        value = self.param("api_key")
        return None if value is None else str(value)

    def api_base(self) -> str | None:
        """The resolved ``litellm_params.api_base`` (or ``base_url``)."""
        value = self.param("api_base")
        if value is None:
            value = self.param("base_url")
        return None if value is None else str(value)

    def __repr__(self) -> str:
        return f"Deployment(id={self.id!r}, model_name={self.model_name!r}, model={self.model!r})"


def _split_model(model: str, custom_provider: str | None = None) -> tuple[str | None, str]:
    """``("openrouter", "qwen/qwen3")`` for ``openrouter/qwen/qwen3``; no prefix -> None."""
    if custom_provider:
        prefix = custom_provider + "/"
        return custom_provider, model[len(prefix) :] if model.startswith(prefix) else model
    if "/" in model:
        provider, upstream = model.split("/", 1)
        return provider, upstream
    return None, model


@dataclass(frozen=True, slots=True)
class AliasTarget:
    """Where a ``model_group_alias`` entry points; hidden aliases stay out of ``/v1/models``.

    Example::

        cfg.router.model_group_alias["gpt-4"]   # AliasTarget(group='claude-sonnet', hidden=False)
    """

    group: str
    hidden: bool = False


@dataclass(frozen=True)
class RouterSettings:
    """``router_settings`` (with LiteLLM's ``litellm_settings`` fallbacks merged in).

    Fallbacks are normalised from both accepted spellings into ``group -> ordered targets``.

    Example::

        rs = cfg.router
        rs.routing_strategy, rs.num_retries, rs.fallbacks.get("claude-sonnet", ())
    """

    routing_strategy: str = "simple-shuffle"
    routing_strategy_args: Mapping[str, Any] = field(default_factory=dict)
    num_retries: int | None = None
    timeout: float | None = None
    """Per attempt, as in LiteLLM (``litellm_settings.request_timeout`` too)."""
    stream_timeout: float | None = None
    deadline: float | None = None
    """gatewaykit: the whole request's wall-clock budget, all attempts and fallbacks."""
    max_cooldown_wait: float | None = None
    """gatewaykit: the longest wait for a recovery when no fallback group remains."""
    allowed_fails: int | None = None
    cooldown_time: float | None = None
    retry_after: float | None = None
    enable_pre_call_checks: bool = False
    enable_tag_filtering: bool = False
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_window_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    content_policy_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_fallbacks: tuple[str, ...] = ()
    model_group_alias: Mapping[str, AliasTarget] = field(default_factory=dict)
    max_fallbacks: int = 5
    redis_url: str | EnvRef | None = field(default=None, repr=False)
    redis_host: str | EnvRef | None = None
    redis_port: int | EnvRef | None = None
    redis_password: str | EnvRef | None = field(default=None, repr=False)
    retry_policy: Mapping[str, int] = field(default_factory=dict)
    allowed_fails_policy: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class GuardrailSpec:
    """One guardrail from ``guardrails:`` or ``litellm_settings.guardrails``.

    ``mode`` is LiteLLM's mode string (a list of modes is joined with commas); ``params`` is the
    guardrail's ``litellm_params`` and is left out of the repr (it may hold an api_key).

    Example::

        [g.name for g in cfg.guardrails if g.mode == "pre_call"]
    """

    name: str
    mode: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class TaskSpec:
    """A named task from gatewaykit's ``tasks:`` section: which group serves it and how.

    Example (YAML; ``classify: cheap-chat`` is shorthand for ``{model: cheap-chat}``)::

        tasks:
          summarize: {model: cheap-chat, max_tokens: 400, requires: [json_schema]}
          classify: cheap-chat
    """

    name: str
    model: str
    fallback_model: str | None = None
    cheaper_model: str | None = None
    long_context_model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    tags: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    max_cost_per_call: float | None = None
    budget: float | None = None
    keywords: tuple[str, ...] = ()
    description: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class GatewaySettings:
    """gatewaykit's ``gateway:`` section: the proxy a client talks to and default request tags.

    ``api_key`` is the proxy virtual key; it is never shown in a repr.

    Example::

        gw = cfg.gateway
        ChatOpenAI(base_url=gw.resolved_base_url(), api_key=gw.resolved_api_key())
    """

    base_url: str | EnvRef | None = None
    api_key: str | EnvRef | None = None
    timeout: float | None = None
    ttft_timeout: float | None = None
    idle_timeout: float | None = None
    default_tags: tuple[str, ...] = ()
    default_metadata: Mapping[str, Any] = field(default_factory=dict)
    user: str | None = None
    map_run_tags: bool = False
    map_run_metadata: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def resolved_api_key(
        self, env: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None
    ) -> str | None:
        """The virtual key with ``os.environ/`` resolved (None when not configured)."""
        value = resolve_value(self.api_key, env, extra)
        return None if value is None else str(value)

    def resolved_base_url(
        self, env: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None
    ) -> str | None:
        """The proxy URL with ``os.environ/`` resolved (None when not configured)."""
        value = resolve_value(self.base_url, env, extra)
        return None if value is None else str(value)

    def __repr__(self) -> str:
        base = (
            self.base_url if isinstance(self.base_url, EnvRef) else _strip_userinfo(self.base_url)
        )
        return (
            f"GatewaySettings(base_url={base!r}, api_key={'<set>' if self.api_key else None}, "
            f"timeout={self.timeout!r}, default_tags={self.default_tags!r})"
        )


def _strip_userinfo(url: str | None) -> str | None:
    return re.sub(r"//[^/@]*@", "//****@", url) if url else url


# --------------------------------------------------------------------------- the config


class GatewayConfig:
    """A loaded, validated LiteLLM-dialect config, indexed for the router.

    Load with :meth:`from_yaml`, :meth:`from_dict` or :meth:`from_yaml_string` (or
    :func:`load_config`, which takes any of those inputs).

    Example::

        cfg = GatewayConfig.from_yaml("config.yaml")
        cfg.resolve_group("gpt-4")                 # 'claude-sonnet' (a model_group_alias)
        [d.id for d in cfg.group("claude-sonnet")]
        cfg.fallback_chain("claude-sonnet")        # ('claude-sonnet-fallback',)
        cfg.public_models()                        # what /v1/models would list
    """

    def __init__(
        self,
        *,
        deployments: Sequence[Deployment],
        router: RouterSettings | None = None,
        litellm_settings: Mapping[str, Any] | None = None,
        general_settings: Mapping[str, Any] | None = None,
        environment_variables: Mapping[str, Any] | None = None,
        guardrails: Sequence[GuardrailSpec] = (),
        tasks: Mapping[str, TaskSpec] | None = None,
        gateway: GatewaySettings | None = None,
        budgets: Sequence[Budget] = (),
        unknown: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        self.deployments: tuple[Deployment, ...] = tuple(deployments)
        groups: dict[str, list[Deployment]] = {}
        for d in self.deployments:
            groups.setdefault(d.model_name, []).append(d)
        self.groups: Mapping[str, tuple[Deployment, ...]] = MappingProxyType(
            {name: tuple(ds) for name, ds in groups.items()}
        )
        self.router: RouterSettings = router or RouterSettings()
        self.litellm_settings: Mapping[str, Any] = _frozen(litellm_settings)
        self.general_settings: Mapping[str, Any] = _frozen(general_settings)
        self.environment_variables: Mapping[str, Any] = _frozen(environment_variables)
        self.guardrails: tuple[GuardrailSpec, ...] = tuple(guardrails)
        self.tasks: Mapping[str, TaskSpec] = _frozen(tasks)
        self.gateway: GatewaySettings | None = gateway
        self.budgets: tuple[Budget, ...] = tuple(budgets)
        """Spend limits: gatewaykit's ``budgets:`` section, each deployment's ``max_budget`` /
        ``budget_duration`` and ``router_settings.provider_budget_config``."""
        self.unknown: Mapping[str, Any] = _frozen(unknown)
        self.source: str | None = source
        self._by_id: dict[str, Deployment] = {d.id: d for d in self.deployments}

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> GatewayConfig:
        """Load a config file; LiteLLM's ``include:`` files are merged in as the proxy does."""
        file = Path(path)
        source = str(path)
        text = _read_text(file, source, "")
        problems: list[ConfigProblem] = []
        data = _parse_yaml(text, source, problems)
        if isinstance(data, Mapping) and "include" in data:
            data = _merge_includes(data, file, source, problems)
        return _build(data, source, problems)

    @classmethod
    def from_yaml_string(cls, text: str, *, source: str | None = None) -> GatewayConfig:
        """Load a config from YAML text (tests, notebooks, configs kept in a secret store)."""
        problems: list[ConfigProblem] = []
        data = _parse_yaml(text, source, problems)
        return _build(data, source, problems)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> GatewayConfig:
        """Load a config from an already-parsed mapping (the input is not modified)."""
        return _build(data, source, [])

    # ------------------------------------------------------------------ lookups

    def resolve_group(self, name: str) -> str:
        """The model group ``name`` stands for: itself, its ``model_group_alias`` target, or a
        deployment id (which pins that one deployment, as with LiteLLM)."""
        if name in self.groups:
            return name
        alias = self.router.model_group_alias.get(name)
        if alias is not None:
            return alias.group
        if name in self._by_id:
            return name
        aliases = list(self.router.model_group_alias)
        raise ConfigError(
            ConfigProblem(
                "model",
                f"unknown model group {name!r}; known groups: {_names(list(self.groups))}"
                + (f"; aliases: {_names(aliases)}" if aliases else ""),
            ),
            source=self.source,
        )

    def group(self, name: str) -> tuple[Deployment, ...]:
        """The deployments behind a group, alias or deployment id, in config order."""
        resolved = self.resolve_group(name)
        deployments = self.groups.get(resolved)
        return deployments if deployments is not None else (self._by_id[resolved],)

    def deployment(self, id_: str) -> Deployment:
        """The deployment with ``model_info.id`` (or generated id) ``id_``."""
        try:
            return self._by_id[id_]
        except KeyError:
            raise ConfigError(
                ConfigProblem(
                    "model_info.id",
                    f"unknown deployment id {id_!r}; known ids: {_names(list(self._by_id))}",
                ),
                source=self.source,
            ) from None

    def fallback_chain(self, group: str, kind: FallbackKind = "general") -> tuple[str, ...]:
        """The ordered fallback targets for ``group`` after an error of ``kind``.

        LiteLLM's order: a context-window or content-policy error uses its own list when one is
        set for the group, else the general list; the general list is the group's entry, else
        the ``"*"`` entry, else ``default_fallbacks`` (never the group itself).
        """
        rs = self.router
        alias = rs.model_group_alias.get(group)
        key = alias.group if alias is not None and group not in self.groups else group
        if kind == "general":
            special: Mapping[str, tuple[str, ...]] = _EMPTY
        elif kind == "context_window":
            special = rs.context_window_fallbacks
        elif kind == "content_policy":
            special = rs.content_policy_fallbacks
        else:
            raise ValueError(
                f"unknown fallback kind {kind!r}; use general, context_window or content_policy"
            )
        for table in (special, rs.fallbacks):
            for k in (key, "*"):
                chain = table.get(k)
                if chain is not None:
                    return tuple(t for t in chain if t != key and t != group)
        return tuple(t for t in rs.default_fallbacks if t != key and t != group)

    def resolve(self, value: Any) -> Any:
        """``value`` with ``os.environ/`` references resolved (``environment_variables`` as the
        fallback), e.g. ``cfg.resolve(cfg.router.redis_password)``."""
        return resolve_value(value, extra=self.environment_variables)

    def public_models(self) -> list[str]:
        """Model names a caller may ask for: groups, then non-hidden aliases."""
        names = list(self.groups)
        names += [
            a for a, t in self.router.model_group_alias.items() if not t.hidden and a not in names
        ]
        return names

    def __repr__(self) -> str:
        return (
            f"GatewayConfig(source={self.source!r}, groups={list(self.groups)!r}, "
            f"deployments={len(self.deployments)}, "
            f"aliases={list(self.router.model_group_alias)!r})"
        )


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | GatewayConfig,
) -> GatewayConfig:
    """A :class:`GatewayConfig` from a path, YAML text, a mapping or a loaded config.

    For ``from_config()`` APIs that accept any of these. A string with a newline is YAML text.

    Example::

        cfg = load_config("config.yaml")
        cfg = load_config({"model_list": [...]})
    """
    if isinstance(source, GatewayConfig):
        return source
    if isinstance(source, Mapping):
        return GatewayConfig.from_dict(source)
    if isinstance(source, str) and "\n" in source:
        return GatewayConfig.from_yaml_string(source)
    if isinstance(source, str | os.PathLike):
        return GatewayConfig.from_yaml(source)
    raise TypeError(
        f"load_config() takes a path, YAML text, a mapping or a GatewayConfig, "
        f"not {type(source).__name__}"
    )


# --------------------------------------------------------------------------- YAML


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys (YAML silently keeps the last one)."""

    duplicates: list[tuple[str, int, int]]


def _construct_map(loader: _YamlLoader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                loader.duplicates.append((key_node.value, line, seen[key_node.value]))
            else:
                seen[key_node.value] = line
    yield from loader.construct_yaml_map(node)


_YamlLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)  # type: ignore[arg-type]


def _read_text(file: Path, source: str | None, path: str) -> str:
    def fail(message: str) -> ConfigError:
        return ConfigError(ConfigProblem(path, message), source=source)

    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(f"config file not found: {file} (working directory {os.getcwd()})") from None
    except IsADirectoryError:
        raise fail(f"{file} is a directory; pass the path of the config.yaml inside it") from None
    except UnicodeDecodeError:
        raise fail(f"{file} is not UTF-8 text") from None
    except OSError as e:
        raise fail(f"cannot read config file {file}: {e.strerror}") from None


def _parse_yaml(text: str, source: str | None, problems: list[ConfigProblem]) -> Any:
    loader = _YamlLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = "; ".join(str(x) for x in (e.context, e.problem) if x)
        raise ConfigError(
            ConfigProblem(
                "", redact(f"{where}YAML syntax error: {what} (check indentation and quoting)")
            ),
            source=source,
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(
            ConfigProblem("", f"YAML error: {redact(str(e))}"), source=source
        ) from None
    finally:
        loader.dispose()
    for key, line, first in loader.duplicates:
        problems.append(
            ConfigProblem(
                "",
                f"line {line}: duplicate key {key!r} (first at line {first}); YAML keeps only the "
                "last one, so the first is silently ignored. Merge the two into one",
            )
        )
    if data is None:
        raise ConfigError(
            ConfigProblem("", "the config is empty; it needs at least a model_list"), source=source
        )
    return data


def _merge_includes(
    data: Mapping[str, Any], file: Path, source: str, problems: list[ConfigProblem]
) -> dict[str, Any]:
    """LiteLLM's ``include:``: lists are extended, other values replaced, relative paths resolve
    next to the file that declares them, and no file is merged twice."""

    def entries(cfg: Mapping[str, Any], declared: Path) -> list[tuple[str, Path]]:
        raw = cfg.get("include")
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            problems.append(ConfigProblem("include", "must be a list of file paths"))
            return []
        return [(x, declared) for x in raw]

    merged = {k: v for k, v in data.items() if k != "include"}
    pending = entries(data, file)
    loaded = {file.resolve()}
    while pending:
        entry, declared = pending.pop(0)
        location = (declared.parent / entry).resolve()
        if location in loaded:
            continue
        loaded.add(location)
        try:
            text = _read_text(location, source, "include")
            included = _parse_yaml(text, str(location), problems)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        if not isinstance(included, Mapping):
            problems.append(ConfigProblem("include", f"{entry}: must be a YAML mapping"))
            continue
        for k, v in included.items():
            if k == "include":
                continue
            base = merged.get(k)
            merged[k] = [*base, *v] if isinstance(base, list) and isinstance(v, list) else v
        pending += entries(included, location)
    return merged


# --------------------------------------------------------------------------- validation


def _wrap_env(value: Any, path: str, source: str | None, problems: list[ConfigProblem]) -> Any:
    """A copy of ``value`` with ``os.environ/VAR`` strings turned into :class:`EnvRef`."""
    if isinstance(value, str):
        if value.startswith(ENV_PREFIX):
            var = value[len(ENV_PREFIX) :].strip()
            if not var or any(c.isspace() for c in var):
                problems.append(
                    ConfigProblem(
                        path,
                        f"{value!r} needs one variable name, e.g. os.environ/OPENAI_API_KEY",
                    )
                )
                return value
            return EnvRef(var, path, source)
        shell = _SHELL_VAR.match(value)
        if shell:
            problems.append(
                ConfigProblem(
                    path,
                    f"{value!r} is not expanded by LiteLLM or gatewaykit; write "
                    f"os.environ/{shell.group(1) or shell.group(2)}",
                )
            )
        return value
    if isinstance(value, Mapping):
        return {k: _wrap_env(v, _join(path, k), source, problems) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wrap_env(v, f"{path}[{i}]", source, problems) for i, v in enumerate(value)]
    return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.match(value.strip().replace("_", "")):
        return int(value.strip().replace("_", ""))
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


class _Parser:
    """Collects every problem while turning raw sections into records."""

    def __init__(self, source: str | None, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        self.env_extra: Mapping[str, Any] = _EMPTY

    def add(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, redact(message)))

    def literal(self, value: Any) -> Any:
        """A value the loader needs now (a number, a name): an EnvRef is resolved at load."""
        if isinstance(value, EnvRef):
            try:
                return value.resolve(None, self.env_extra)
            except ConfigError as e:
                self.problems.extend(e.problems)
                return _MISSING
        return value

    def integer(
        self, value: Any, path: str, *, minimum: int = 1, what: str = "a positive integer"
    ) -> int | None:
        if value is None:
            return None
        v = self.literal(value)
        if v is _MISSING:
            return None
        n = _as_int(v)
        if n is None or n < minimum:
            self.add(path, f"must be {what}, got {_shown(value, v, path)}")
            return None
        return n

    def number(self, value: Any, path: str, *, positive: bool = True) -> float | None:
        if value is None:
            return None
        v = self.literal(value)
        if v is _MISSING:
            return None
        x = _as_float(v)
        if x is None or x < 0 or (positive and x == 0):
            kind = "a positive number" if positive else "a number >= 0"
            self.add(path, f"must be {kind}, got {_shown(value, v, path)}")
            return None
        return x

    def boolean(self, value: Any, path: str) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        v = self.literal(value)
        if v is _MISSING:
            return None
        if isinstance(value, EnvRef) and isinstance(v, str):
            text = v.strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
        hint = (
            " (remove the quotes)" if isinstance(v, str) and v.lower() in ("true", "false") else ""
        )
        self.add(path, f"must be true or false, got {_shown(value, v, path)}{hint}")
        return None

    def text(self, value: Any, path: str, *, required: str | None = None) -> str | None:
        """A non-empty string; ``required`` is the hint shown when it is missing."""
        if value is None:
            if required:
                self.add(path, f"missing; {required}")
            return None
        v = self.literal(value)
        if v is _MISSING:
            return None
        if not isinstance(v, str):
            self.add(path, f"must be a string, got {_shown(value, v, path)} (quote it in YAML)")
            return None
        if not v.strip():
            self.add(path, "must not be empty" + (f"; {required}" if required else ""))
            return None
        return v

    def strings(self, value: Any, path: str, example: str = "[a, b]") -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.add(path, f"must be a list of strings, e.g. {example}, got {_show(value, path)}")
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            s = self.text(item, f"{path}[{i}]")
            if s is not None:
                out.append(s)
        return tuple(out)

    def mapping(self, value: Any, path: str, example: str = "") -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            kind = "a list" if isinstance(value, list) else _show(value, path)
            self.add(path, f"must be a mapping (key: value){example}, got {kind}")
            return {}
        return dict(value)

    def url(self, value: Any, path: str) -> str | EnvRef | None:
        if value is None or isinstance(value, EnvRef):
            return value
        if not isinstance(value, str) or "://" not in value:
            self.add(
                path,
                "must be a URL with a scheme, e.g. http://localhost:4000, "
                f"got {_show(value, path)}",
            )
            return None
        return value


def _build(data: Any, source: str | None, problems: list[ConfigProblem]) -> GatewayConfig:
    if not isinstance(data, Mapping):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        raise ConfigError(
            [
                *problems,
                ConfigProblem(
                    "",
                    f"a config must be a mapping of sections (model_list, router_settings, "
                    f"litellm_settings, ...), got {kind}",
                ),
            ],
            source=source,
        )
    p = _Parser(source, problems)
    data = _wrap_env(dict(data), "", source, problems)

    unknown: dict[str, Any] = {}
    for key, value in data.items():
        if key == "router":
            p.add("router", _router_section_message(value))
        elif key == "include":
            p.add(
                "include",
                "only resolved when loading a file with GatewayConfig.from_yaml; "
                "inline the included sections",
            )
        elif key not in _TOP_LEVEL:
            unknown[str(key)] = value

    env_vars = p.mapping(data.get("environment_variables"), "environment_variables")
    p.env_extra = env_vars
    litellm_settings = p.mapping(data.get("litellm_settings"), "litellm_settings")
    general_settings = p.mapping(data.get("general_settings"), "general_settings")
    router_raw = p.mapping(data.get("router_settings"), "router_settings")

    deployments = _deployments(p, data.get("model_list"))
    groups: dict[str, None] = dict.fromkeys(d.model_name for d in deployments)
    ids = {d.id for d in deployments}
    router = _router_settings(p, router_raw, litellm_settings, list(groups), ids)
    guardrails = _guardrails(p, data.get("guardrails"), litellm_settings.get("guardrails"))
    aliases = router.model_group_alias
    tasks = _tasks(p, data.get("tasks"), list(groups), aliases, ids)
    gateway = _gateway(p, data.get("gateway"))
    budgets = _budgets(p, data.get("budgets"), deployments, router_raw)

    if problems:
        raise ConfigError(problems, source=source)
    return GatewayConfig(
        deployments=deployments,
        router=router,
        litellm_settings=litellm_settings,
        general_settings=general_settings,
        environment_variables=env_vars,
        guardrails=guardrails,
        tasks=tasks,
        gateway=gateway,
        budgets=budgets,
        unknown=unknown,
        source=source,
    )


def _router_section_message(raw: Any) -> str:
    """Explain a top-level ``router:`` section and show its LiteLLM equivalent."""
    items = raw if isinstance(raw, list) else [raw]
    keys: list[str] = []
    fallbacks: list[str] = []
    strategies: list[str] = []
    retries: int | None = None
    for item in items:
        if not isinstance(item, Mapping):
            continue
        keys += [str(k) for k in item if str(k) not in keys]
        model, targets = item.get("model"), item.get("fallback_models")
        if isinstance(model, str) and isinstance(targets, list) and targets:
            fallbacks.append(f"      - {model}: [{', '.join(map(str, targets))}]")
        if isinstance(item.get("strategy"), str):
            strategies.append(item["strategy"])
        retries = _as_int(item.get("max_retries")) if retries is None else retries
    wrong = [s for s in dict.fromkeys(strategies) if s not in ROUTING_STRATEGIES]
    strategy = next((s for s in strategies if s in ROUTING_STRATEGIES), "simple-shuffle")
    note = f"   # not {'/'.join(repr(s) for s in wrong)}" if wrong else ""
    lines = [
        "not a LiteLLM config section"
        + (f" (it holds {', '.join(keys)}, which LiteLLM does not read there)" if keys else "")
        + ". Use router_settings and litellm_settings, e.g.",
        "    router_settings:",
        f"      routing_strategy: {strategy}{note}",
        f"      num_retries: {retries if retries is not None else 2}",
        "    litellm_settings:",
        "      fallbacks:",
        *(fallbacks or ["      - gpt-4o: [claude-sonnet, gemini-pro]"]),
    ]
    moves = {
        "model": "model -> the key of a fallbacks entry (the model group)",
        "strategy": "strategy -> router_settings.routing_strategy (one for all groups; "
        f"one of {', '.join(ROUTING_STRATEGIES)})",
        "fallback_models": "fallback_models -> the list of that fallbacks entry",
        "max_retries": "max_retries -> router_settings.num_retries",
    }
    mapped = [moves[k] for k in moves if k in keys]
    if mapped:
        lines.append("  Key by key: " + "; ".join(mapped) + ".")
    return "\n".join(lines)


def _deployments(p: _Parser, raw: Any) -> list[Deployment]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        p.add("model_list", "must be a list of {model_name, litellm_params} entries")
        return []
    parsed = [_deployment_fields(p, i, entry) for i, entry in enumerate(raw)]

    taken: dict[str, int] = {}
    for fields in parsed:
        if fields is None or fields["id"] is None:
            continue
        i, id_ = fields["index"], fields["id"]
        if id_ in taken:
            p.add(
                f"model_list[{i}].model_info.id",
                f"duplicate deployment id {id_!r} (also model_list[{taken[id_]}].model_info.id); "
                "ids must be unique across the config",
            )
        else:
            taken[id_] = i
    out: list[Deployment] = []
    for fields in parsed:
        if fields is None:
            continue
        if fields["id"] is None:
            base = _stable_id(fields["model_name"], fields["litellm_params"])
            id_, n = base, 2
            while id_ in taken:  # identical entries listed twice: keep both, distinct ids
                id_, n = f"{base}-{n}", n + 1
            taken[id_] = fields["index"]
            fields["id"] = id_
        out.append(Deployment(**fields, env_extra=p.env_extra))
    return out


def _stable_id(model_name: str, params: Mapping[str, Any]) -> str:
    """LiteLLM's id recipe (group name + every param, concatenated, sha256) on the config as
    written (``os.environ/`` references unresolved, so no secret goes into the hash)."""
    parts = [model_name]
    for k, v in params.items():
        parts.append(str(k))
        if isinstance(v, str | EnvRef):
            parts.append(str(v))
        elif isinstance(v, Mapping):
            parts.append(json.dumps(v, default=str, sort_keys=True))
        else:
            parts.append(str(v))
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def _pick(*candidates: tuple[Mapping[str, Any], str, str]) -> tuple[Any, str]:
    """The first of several places a value may be set, and its path."""
    for mapping, base, key in candidates:
        value = mapping.get(key)
        if value is not None:
            return value, f"{base}.{key}"
    return None, ""


def _deployment_fields(p: _Parser, i: int, entry: Any) -> dict[str, Any] | None:
    path = f"model_list[{i}]"
    if not isinstance(entry, Mapping):
        p.add(
            path,
            "must be a mapping with model_name and litellm_params, e.g. "
            "{model_name: gpt-4o, litellm_params: {model: openai/gpt-4o}}",
        )
        return None
    name = p.text(
        entry.get("model_name"),
        f"{path}.model_name",
        required="set the group name callers use, e.g. model_name: gpt-4o",
    )
    lp_path, mi_path = f"{path}.litellm_params", f"{path}.model_info"
    lp_raw = entry.get("litellm_params")
    if lp_raw is None:
        p.add(
            lp_path,
            "missing; every model_list entry needs litellm_params with at least "
            "`model: <provider>/<model>`, e.g. model: openai/gpt-4o",
        )
    lp = p.mapping(lp_raw, lp_path, ", e.g. {model: openai/gpt-4o}")
    mi = p.mapping(entry.get("model_info"), mi_path)
    extra = {
        str(k): v
        for k, v in entry.items()
        if k not in ("model_name", "litellm_params", "model_info")
    }
    for k in extra:
        if k in _MISPLACED:
            p.add(f"{path}.{k}", f"belongs under litellm_params: move it to {lp_path}.{k}")
    model = p.text(
        lp.get("model"),
        f"{lp_path}.model",
        required="set the upstream as <provider>/<model>, e.g. model: openai/gpt-4o"
        if isinstance(lp_raw, Mapping)
        else None,
    )
    custom = lp.get("custom_llm_provider")
    provider, upstream = _split_model(model or "", custom if isinstance(custom, str) else None)
    if model and provider in _WRONG_PREFIXES and not custom:
        fixes = " or ".join(f"{ok}/{upstream}" for ok in _WRONG_PREFIXES[provider])
        p.add(
            f"{lp_path}.model",
            f"'{provider}/' is not a LiteLLM provider prefix; write {fixes}",
        )

    id_: str | None = None
    raw_id = mi.get("id")
    if raw_id is not None:
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
            p.add(f"{mi_path}.id", f"must be a non-empty string, got {_show(raw_id)}")
        else:
            id_ = str(raw_id)

    def integer(value_path: tuple[Any, str], **kw: Any) -> int | None:
        return p.integer(value_path[0], value_path[1], **kw)

    def number(value_path: tuple[Any, str], **kw: Any) -> float | None:
        return p.number(value_path[0], value_path[1], **kw)

    L, M = (lp, lp_path), (mi, mi_path)

    fields: dict[str, Any] = {
        "index": i,
        "model_name": name,
        "litellm_params": lp,
        "model_info": mi,
        "id": id_,
        "model": model,
        "rpm": integer(_pick((*L, "rpm"), (*M, "rpm"))),
        "tpm": integer(_pick((*L, "tpm"), (*M, "tpm"))),
        "weight": number(_pick((*L, "weight"))),
        "order": integer(
            _pick((*L, "order"), (*M, "order")), what="an integer >= 1 (1 = tried first)"
        ),
        "tags": p.strings(lp.get("tags"), f"{lp_path}.tags", "[fast, eu]"),
        "max_input_tokens": integer(_pick((*M, "max_input_tokens"), (*L, "max_input_tokens"))),
        "max_output_tokens": integer(_pick((*M, "max_output_tokens"), (*L, "max_tokens"))),
        "input_cost_per_token": number(
            _pick((*L, "input_cost_per_token"), (*M, "input_cost_per_token")), positive=False
        ),
        "output_cost_per_token": number(
            _pick((*L, "output_cost_per_token"), (*M, "output_cost_per_token")), positive=False
        ),
        "timeout": number(_pick((*L, "timeout"), (*L, "request_timeout"))),
        "stream_timeout": number(_pick((*L, "stream_timeout"))),
        "max_parallel_requests": integer(_pick((*L, "max_parallel_requests"))),
        # 0 is meaningful: LiteLLM skips the cooldown for that deployment.
        "cooldown_time": number(_pick((*L, "cooldown_time")), positive=False),
        "access_groups": p.strings(mi.get("access_groups"), f"{mi_path}.access_groups"),
        "guardrails": p.strings(*_pick((*M, "guardrails"), (*L, "guardrails"))),
        "extra": extra,
    }
    for cap in (
        "supports_function_calling",
        "supports_vision",
        "supports_response_schema",
        "supports_reasoning",
    ):
        fields[cap] = p.boolean(mi.get(cap), f"{mi_path}.{cap}")
    for key in ("api_base", "base_url"):
        if key in lp:
            p.url(lp[key], f"{lp_path}.{key}")
    if name is None or model is None:
        return None
    return fields


def _known_target(name: str, groups: Sequence[str], ids: set[str]) -> bool:
    return name in groups or name in ids


def _router_settings(
    p: _Parser,
    rs: Mapping[str, Any],
    ls: Mapping[str, Any],
    groups: list[str],
    ids: set[str],
) -> RouterSettings:
    R = "router_settings"
    strategy = p.text(rs.get("routing_strategy"), f"{R}.routing_strategy") or "simple-shuffle"
    if strategy not in ROUTING_STRATEGIES:
        p.add(
            f"{R}.routing_strategy",
            f"unknown routing strategy {strategy!r}; use one of {', '.join(ROUTING_STRATEGIES)} "
            "(simple-shuffle, the default, is LiteLLM's weighted random choice)",
        )
        strategy = "simple-shuffle"

    aliases = _aliases(p, rs.get("model_group_alias"), groups, ids)

    def fallback_table(key: str) -> dict[str, tuple[str, ...]]:
        table = _fallbacks(p, ls.get(key), f"litellm_settings.{key}", groups, ids, aliases)
        table.update(_fallbacks(p, rs.get(key), f"{R}.{key}", groups, ids, aliases))
        return table

    default_raw, default_path = _pick(
        (rs, R, "default_fallbacks"), (ls, "litellm_settings", "default_fallbacks")
    )
    defaults = p.strings(default_raw, default_path, "[gpt-4o-mini]")
    for j, target in enumerate(defaults):
        if not _known_target(target, groups, ids) and target not in aliases:
            p.add(
                f"{default_path}[{j}]",
                f"unknown fallback target {target!r}: not a model group or deployment id; "
                f"known groups: {_names(groups)}",
            )

    def policy(key: str) -> dict[str, int]:
        from gatewaykit.routing.health import policy_names

        known = policy_names(key)
        out: dict[str, int] = {}
        for name, value in p.mapping(rs.get(key), f"{R}.{key}").items():
            if str(name) not in known:
                p.add(
                    f"{R}.{key}.{name}",
                    f"unknown {key} entry; use one of {', '.join(sorted(known))}",
                )
                continue
            n = p.integer(value, f"{R}.{key}.{name}", minimum=0, what="an integer >= 0")
            if n is not None:
                out[str(name)] = n
        return out

    num_retries, retries_path = _pick(
        (rs, R, "num_retries"), (ls, "litellm_settings", "num_retries")
    )
    timeout, timeout_path = _pick((rs, R, "timeout"), (ls, "litellm_settings", "request_timeout"))
    redis_port = rs.get("redis_port")
    if redis_port is not None and not isinstance(redis_port, EnvRef):
        redis_port = p.integer(redis_port, f"{R}.redis_port")
    redis: dict[str, Any] = {}
    for key in ("redis_url", "redis_host", "redis_password"):
        value = rs.get(key)
        if value is not None and not isinstance(value, str | EnvRef):
            p.add(f"{R}.{key}", f"must be a string or os.environ/VAR, got {_show(value, key)}")
            value = None
        redis[key] = value

    return RouterSettings(
        routing_strategy=strategy,
        routing_strategy_args=_frozen(
            p.mapping(rs.get("routing_strategy_args"), f"{R}.routing_strategy_args")
        ),
        num_retries=p.integer(num_retries, retries_path, minimum=0, what="an integer >= 0"),
        timeout=p.number(timeout, timeout_path),
        stream_timeout=p.number(rs.get("stream_timeout"), f"{R}.stream_timeout"),
        deadline=p.number(rs.get("deadline"), f"{R}.deadline"),
        max_cooldown_wait=p.number(
            rs.get("max_cooldown_wait"), f"{R}.max_cooldown_wait", positive=False
        ),
        allowed_fails=p.integer(
            rs.get("allowed_fails"), f"{R}.allowed_fails", minimum=0, what="an integer >= 0"
        ),
        cooldown_time=p.number(rs.get("cooldown_time"), f"{R}.cooldown_time", positive=False),
        retry_after=p.number(rs.get("retry_after"), f"{R}.retry_after", positive=False),
        enable_pre_call_checks=bool(
            p.boolean(rs.get("enable_pre_call_checks"), f"{R}.enable_pre_call_checks")
        ),
        enable_tag_filtering=bool(
            p.boolean(rs.get("enable_tag_filtering"), f"{R}.enable_tag_filtering")
        ),
        fallbacks=MappingProxyType(fallback_table("fallbacks")),
        context_window_fallbacks=MappingProxyType(fallback_table("context_window_fallbacks")),
        content_policy_fallbacks=MappingProxyType(fallback_table("content_policy_fallbacks")),
        default_fallbacks=defaults,
        model_group_alias=MappingProxyType(aliases),
        max_fallbacks=p.integer(rs.get("max_fallbacks"), f"{R}.max_fallbacks") or 5,
        redis_port=redis_port,
        retry_policy=MappingProxyType(policy("retry_policy")),
        allowed_fails_policy=MappingProxyType(policy("allowed_fails_policy")),
        extra=_frozen({str(k): v for k, v in rs.items() if k not in _ROUTER_KEYS}),
        **redis,
    )


def _aliases(p: _Parser, raw: Any, groups: list[str], ids: set[str]) -> dict[str, AliasTarget]:
    path = "router_settings.model_group_alias"
    out: dict[str, AliasTarget] = {}
    raw_map = p.mapping(raw, path, ", e.g. {gpt-4: claude-sonnet}")
    for alias, target in raw_map.items():
        apath = _join(path, alias)
        hidden = False
        if isinstance(target, Mapping):
            group = p.text(target.get("model"), f"{apath}.model", required="name the model group")
            hidden = bool(p.boolean(target.get("hidden"), f"{apath}.hidden"))
        elif isinstance(target, str):
            group = target
        else:
            p.add(apath, "must be a model group name or {model: <group>, hidden: true}")
            continue
        if group is None:
            continue
        if str(alias) in groups:
            p.add(
                apath,
                f"{alias!r} is also a model_name in model_list, and the alias would hide that "
                "group; rename the alias or the group",
            )
        elif not _known_target(group, groups, ids):
            chained = " (aliases do not chain)" if group in raw_map else ""
            p.add(
                apath,
                f"points to unknown model group {group!r}{chained}; known groups: {_names(groups)}",
            )
        else:
            out[str(alias)] = AliasTarget(group, hidden)
    return out


def _fallbacks(
    p: _Parser,
    raw: Any,
    path: str,
    groups: list[str],
    ids: set[str],
    aliases: Mapping[str, AliasTarget],
) -> dict[str, tuple[str, ...]]:
    """Both spellings: LiteLLM's ``- group: [a, b]`` and ``- model_name: g / fallback_models``."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        p.add(path, f"must be a list like [{{gpt-4o: [claude-sonnet]}}], got {_show(raw)}")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for j, item in enumerate(raw):
        ipath = f"{path}[{j}]"
        if not isinstance(item, Mapping):
            p.add(ipath, f"must be a mapping like {{gpt-4o: [claude-sonnet]}}, got {_show(item)}")
            continue
        if "model_name" in item or "fallback_models" in item:
            group = p.text(item.get("model_name"), f"{ipath}.model_name", required="name the group")
            tpath = f"{ipath}.fallback_models"
            if item.get("fallback_models") is None:
                p.add(tpath, "missing; list the groups to try, e.g. fallback_models: [gpt-4o]")
            targets_raw = item.get("fallback_models")
        elif len(item) != 1:
            p.add(
                ipath,
                f"must have exactly one key (the model group), got {len(item)}: "
                f"{', '.join(map(str, item))}; write one entry per group, e.g. - gpt-4o: [a, b]",
            )
            continue
        else:
            ((key, targets_raw),) = item.items()
            group, tpath = str(key), _join(ipath, key)
        targets = p.strings(targets_raw, tpath, "[claude-sonnet, gemini-pro]")
        if group is None:
            continue
        resolved = group
        if group != "*":
            if group in aliases and group not in groups:
                resolved = aliases[group].group
            elif group not in groups:
                p.add(
                    ipath,
                    f"fallbacks for unknown model group {group!r}; known groups: {_names(groups)}",
                )
                continue
        for k, target in enumerate(targets):
            target_group = aliases[target].group if target in aliases else target
            if target == group or target_group == resolved:
                p.add(
                    f"{tpath}[{k}]",
                    f"{group!r} lists itself as a fallback; remove it (a group's own deployments "
                    "are retried before any fallback)",
                )
            elif not _known_target(target, groups, ids) and target not in aliases:
                p.add(
                    f"{tpath}[{k}]",
                    f"unknown fallback target {target!r}: not a model group or deployment id; "
                    f"known groups: {_names(groups)}",
                )
        if resolved in out:
            p.add(
                ipath,
                f"second fallback entry for {group!r}; merge its targets into the first "
                "(LiteLLM only reads the first)",
            )
        else:
            out[resolved] = targets
    return out


def _guardrails(p: _Parser, top: Any, in_settings: Any) -> list[GuardrailSpec]:
    out: list[GuardrailSpec] = []
    seen: dict[str, str] = {}
    for raw, path in ((top, "guardrails"), (in_settings, "litellm_settings.guardrails")):
        if raw is None:
            continue
        if not isinstance(raw, list):
            p.add(path, "must be a list of {guardrail_name, litellm_params} entries")
            continue
        for j, item in enumerate(raw):
            ipath = f"{path}[{j}]"
            if isinstance(item, Mapping) and "guardrail_name" in item:
                name = p.text(item.get("guardrail_name"), f"{ipath}.guardrail_name")
                params = p.mapping(item.get("litellm_params"), f"{ipath}.litellm_params")
                ppath = f"{ipath}.litellm_params"
            elif isinstance(item, Mapping) and len(item) == 1:
                # LiteLLM's older form: - prompt_injection: {callbacks: [...], default_on: true}
                ((key, value),) = item.items()
                name, ppath = str(key), _join(ipath, key)
                params = p.mapping(value, ppath)
            else:
                p.add(
                    ipath,
                    "must be {guardrail_name: <name>, litellm_params: {guardrail: <type>, "
                    "mode: pre_call}}",
                )
                continue
            mode_raw = params.get("mode")
            mode: str | None = None
            if isinstance(mode_raw, str):
                mode = mode_raw
            elif isinstance(mode_raw, list) and all(isinstance(m, str) for m in mode_raw):
                mode = ",".join(mode_raw)
            elif mode_raw is not None:
                p.add(
                    f"{ppath}.mode", f"must be a mode name such as pre_call, got {_show(mode_raw)}"
                )
            if name is None:
                continue
            if name in seen:
                p.add(ipath, f"duplicate guardrail name {name!r} (also {seen[name]})")
                continue
            seen[name] = ipath
            out.append(GuardrailSpec(name, mode, _frozen(params)))
    return out


def _tasks(
    p: _Parser,
    raw: Any,
    groups: list[str],
    aliases: Mapping[str, AliasTarget],
    ids: set[str],
) -> dict[str, TaskSpec]:
    out: dict[str, TaskSpec] = {}
    section = p.mapping(raw, "tasks", ", e.g. {summarize: {model: cheap-chat}}")
    known = [*groups, *aliases]

    def model_ref(value: Any, path: str, required: bool = False) -> str | None:
        name = p.text(value, path, required="name a model group or alias" if required else None)
        if name is not None and not (name in aliases or _known_target(name, groups, ids)):
            p.add(path, f"unknown model group or alias {name!r}; known: {_names(known)}")
            return None
        return name

    for task, spec in section.items():
        tpath = _join("tasks", task)
        if isinstance(spec, str):
            spec = {"model": spec}
        if not isinstance(spec, Mapping):
            p.add(tpath, "must be a mapping like {model: cheap-chat, max_tokens: 400}")
            continue
        requires = p.strings(spec.get("requires"), f"{tpath}.requires", "[tools, json_schema]")
        for k, cap in enumerate(requires):
            if cap not in CAPABILITIES:
                p.add(
                    f"{tpath}.requires[{k}]",
                    f"unknown capability {cap!r}; use {', '.join(CAPABILITIES)}",
                )
        model = model_ref(spec.get("model"), f"{tpath}.model", required=True)
        fallback_model = model_ref(spec.get("fallback_model"), f"{tpath}.fallback_model")
        cheaper_model = model_ref(spec.get("cheaper_model"), f"{tpath}.cheaper_model")
        long_model = model_ref(spec.get("long_context_model"), f"{tpath}.long_context_model")
        temperature = p.number(spec.get("temperature"), f"{tpath}.temperature", positive=False)
        max_tokens = p.integer(spec.get("max_tokens"), f"{tpath}.max_tokens")
        tags = p.strings(spec.get("tags"), f"{tpath}.tags")
        max_cost = p.number(spec.get("max_cost_per_call"), f"{tpath}.max_cost_per_call")
        budget = p.number(spec.get("budget"), f"{tpath}.budget")
        keywords = p.strings(spec.get("keywords"), f"{tpath}.keywords")
        description = p.text(spec.get("description"), f"{tpath}.description")
        if model is None:
            continue
        out[str(task)] = TaskSpec(
            name=str(task),
            model=model,
            fallback_model=fallback_model,
            cheaper_model=cheaper_model,
            long_context_model=long_model,
            temperature=temperature,
            max_tokens=max_tokens,
            tags=tags,
            requires=requires,
            max_cost_per_call=max_cost,
            budget=budget,
            keywords=keywords,
            description=description,
            extra=_frozen({str(k): v for k, v in spec.items() if k not in _TASK_KEYS}),
        )
    return out


def _gateway(p: _Parser, raw: Any) -> GatewaySettings | None:
    if raw is None:
        return None
    G = "gateway"
    gw = p.mapping(raw, G, ", e.g. {base_url: http://localhost:4000, api_key: os.environ/KEY}")
    api_key = gw.get("api_key")
    if api_key is not None and not isinstance(api_key, str | EnvRef):
        p.add(f"{G}.api_key", "must be a string or os.environ/VAR")
        api_key = None
    return GatewaySettings(
        base_url=p.url(gw.get("base_url"), f"{G}.base_url"),
        api_key=api_key,
        timeout=p.number(gw.get("timeout"), f"{G}.timeout"),
        ttft_timeout=p.number(gw.get("ttft_timeout"), f"{G}.ttft_timeout"),
        idle_timeout=p.number(gw.get("idle_timeout"), f"{G}.idle_timeout"),
        default_tags=p.strings(gw.get("default_tags"), f"{G}.default_tags"),
        default_metadata=_frozen(p.mapping(gw.get("default_metadata"), f"{G}.default_metadata")),
        user=p.text(gw.get("user"), f"{G}.user"),
        map_run_tags=bool(p.boolean(gw.get("map_run_tags"), f"{G}.map_run_tags")),
        map_run_metadata=bool(p.boolean(gw.get("map_run_metadata"), f"{G}.map_run_metadata")),
        extra=_frozen({str(k): v for k, v in gw.items() if k not in _GATEWAY_KEYS}),
    )


_BUDGET_KEYS: Final = _words(
    "limit max_budget window budget_duration scope key soft_limit soft_budget"
)


def _budgets(
    p: _Parser, raw: Any, deployments: Sequence[Deployment], router_raw: Mapping[str, Any]
) -> list[Budget]:
    """Every budget the config declares, in LiteLLM's spellings and gatewaykit's own."""
    out: list[Budget] = []

    def make(path: str, **fields: Any) -> None:
        try:
            out.append(Budget(**fields))
        except ValueError as e:
            p.add(path, str(e))

    def window(value: Any, path: str) -> Window | None:
        v = p.literal(value)
        try:
            return Window.parse(v)
        except ValueError as e:
            p.add(path, str(e))
            return None

    if raw is not None:
        if not isinstance(raw, list):
            p.add(
                "budgets",
                "must be a list, e.g. [{limit: 10, window: 1d, scope: team, key: search}], "
                f"got {_show(raw)}",
            )
            raw = []
        for i, spec in enumerate(raw):
            path = f"budgets[{i}]"
            if not isinstance(spec, Mapping):
                p.add(path, "must be a mapping like {limit: 10, window: 1d, scope: tag, key: x}")
                continue
            unknown = sorted(str(k) for k in spec if k not in _BUDGET_KEYS)
            if unknown:
                p.add(
                    f"{path}.{unknown[0]}",
                    "unknown budget field; use limit, window, scope, key, soft_limit",
                )
                continue
            limit_key = "limit" if "limit" in spec else "max_budget"
            limit = p.number(spec.get(limit_key), f"{path}.{limit_key}", positive=False)
            if limit is None:
                if spec.get(limit_key) is None:
                    p.add(f"{path}.limit", "missing; the most this scope may spend, in USD")
                continue
            w_key = "window" if "window" in spec else "budget_duration"
            w = window(spec.get(w_key), f"{path}.{w_key}")
            soft_key = "soft_limit" if "soft_limit" in spec else "soft_budget"
            soft = p.number(spec.get(soft_key), f"{path}.{soft_key}", positive=False)
            scope = p.text(spec.get("scope"), f"{path}.scope") or "global"
            key = p.text(spec.get("key"), f"{path}.key")
            if w is not None:
                make(path, limit=limit, window=w, scope=scope, key=key, soft_limit=soft)

    for d in deployments:
        if d.litellm_params.get("max_budget") is None:
            continue
        path = f"model_list[{d.index}].litellm_params"
        limit = p.number(d.litellm_params.get("max_budget"), f"{path}.max_budget", positive=False)
        w = window(d.litellm_params.get("budget_duration"), f"{path}.budget_duration")
        if limit is not None and w is not None:
            make(f"{path}.max_budget", limit=limit, window=w, scope="deployment", key=d.id)

    provider_cfg = router_raw.get("provider_budget_config")
    if provider_cfg is not None:
        section = p.mapping(
            provider_cfg,
            "router_settings.provider_budget_config",
            ", e.g. {openai: {budget_limit: 100, time_period: 1d}}",
        )
        for provider, spec in section.items():
            path = _join("router_settings.provider_budget_config", provider)
            if not isinstance(spec, Mapping):
                p.add(path, "must be a mapping like {budget_limit: 100, time_period: 1d}")
                continue
            limit = p.number(spec.get("budget_limit"), f"{path}.budget_limit", positive=False)
            if spec.get("budget_limit") is None:
                p.add(f"{path}.budget_limit", "missing; the most this provider may cost, in USD")
            w = window(spec.get("time_period"), f"{path}.time_period")
            if limit is not None and w is not None:
                make(path, limit=limit, window=w, scope="provider", key=str(provider))
    return out
