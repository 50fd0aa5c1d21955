"""GatewayChatModel: ChatOpenAI that knows it is talking to a gateway.

It sends the gateway's request controls (tags, metadata, end user, guardrails, cache, retries,
fallbacks), reads the gateway's response headers into ``response_metadata["gateway"]``, turns
gateway error answers into gatewaykit's typed errors, and never returns a silently truncated
stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import httpx
import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_openai import ChatOpenAI
from pydantic import Field, model_validator
from typing_extensions import TypedDict

from gatewaykit._http import async_client_for
from gatewaykit._run_config import RunConfigChatModel
from gatewaykit.cache import with_cache_controls
from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.errors import (
    ContentPolicyViolation,
    GatewayTimeout,
    StreamInterrupted,
    UpstreamError,
    translate,
)
from gatewaykit.gateway_headers import parse_gateway_headers

if TYPE_CHECKING:
    from gatewaykit.config import Deployment, GatewayConfig
    from gatewaykit.guardrails.runner import ActiveGuardrails

# The request's local guardrails, from request shaping to the answer (the pooled router path
# calls _get_request_payload and _create_chat_result without a shared call frame).
_POST_GUARD: contextvars.ContextVar[tuple[int | None, Any]] = contextvars.ContextVar(
    "gatewaykit_post_guardrails", default=(None, None)
)

__all__ = ["CALL_OPTIONS", "NOT_IN_CACHE_KEY", "CacheControl", "GatewayChatModel"]


class CacheControl(TypedDict, total=False):
    """Per-request cache controls, sent as LiteLLM's ``cache`` body field.

    ``no_cache`` skips the cache read, ``no_store`` the write; ``ttl``/``s_maxage`` in seconds.
    """

    no_cache: bool
    no_store: bool
    ttl: float
    s_maxage: float
    namespace: str


CALL_OPTIONS = frozenset(
    {
        "gateway_tags",
        "gateway_metadata",
        "end_user",
        "call_id",
        "trace_id",
        "guardrails",
        "cache_control",
        "num_retries",
        "disable_fallbacks",
        "ttft_timeout",
        "idle_timeout",
    }
)
"""Keyword arguments accepted per call (``invoke(..., gateway_tags=[...])``, ``bind(...)``) or per
run (``config={"configurable": {"gateway": {...}}}``), overriding the instance's fields."""

# GatewayChatModel always asks for headers; langchain-openai cannot deliver them for structured
# streams and would warn on every such call. Headers are optional there, so say nothing.
warnings.filterwarnings(
    "ignore",
    message="Cannot currently include response headers when response_format is specified",
    category=UserWarning,
)

NOT_IN_CACHE_KEY = frozenset(
    {
        "gateway_tags",
        "gateway_metadata",
        "end_user",
        "call_id",
        "trace_id",
        "cache_control",
        "num_retries",
        "disable_fallbacks",
        "ttft_timeout",
        "idle_timeout",
    }
)
"""Call options that do not change the answer: left out of the response-cache key."""

_LIST_OPTIONS = frozenset({"gateway_tags"})
_DICT_OPTIONS = frozenset({"gateway_metadata"})
_INTERNAL_METADATA_PREFIXES = ("langgraph_", "ls_", "lc_", "__", "checkpoint_", "langfuse_")


class GatewayChatModel(RunConfigChatModel, ChatOpenAI):  # type: ignore[override,misc]
    """A LangChain chat model for any OpenAI-compatible gateway (LiteLLM proxy and friends).

    Everything ``ChatOpenAI`` does still works (``bind_tools``, ``with_structured_output``,
    ``batch``, ``astream``, callbacks); on top of it:

    * **request controls**, per instance or per call: ``gateway_tags`` (sent as
      ``x-litellm-tags`` and ``metadata.tags``), ``gateway_metadata``, ``end_user`` (``user``),
      ``call_id`` / ``trace_id``, ``guardrails`` (names to run, or ``{name: on/off}``),
      ``cache_control``, ``num_retries`` (the gateway's retries), ``disable_fallbacks``;
      ``map_run_tags`` / ``map_run_metadata`` forward the LangChain run's tags and metadata;
    * **what the gateway said** in ``response_metadata["gateway"]`` (a
      :class:`~gatewaykit.GatewayInfo`: served deployment, model group, cost, key spend,
      retries, fallbacks, rate limits), on the last chunk of a stream too;
    * **typed errors** (:class:`~gatewaykit.BudgetExceeded`, :class:`~gatewaykit.RateLimited`,
      ...) for invoke, ainvoke, stream and astream alike, still catchable as the openai SDK's;
    * **honest streams**: ``ttft_timeout`` / ``idle_timeout``, and a stream that breaks after
      tokens were delivered raises :class:`~gatewaykit.StreamInterrupted` instead of ending
      as if complete.

    Example::

        from gatewaykit import GatewayChatModel

        llm = GatewayChatModel(
            base_url="http://localhost:4000/v1", api_key="sk-virtual-key", model="claude-sonnet",
            gateway_tags=["team-search"], end_user="user-42",
        )
        msg = llm.invoke("Summarise this PR", gateway_tags=["code-review"])
        print(msg.response_metadata["gateway"]["deployment_id"],
              msg.response_metadata["gateway"]["response_cost"])

        llm = GatewayChatModel.from_config("config.yaml", "claude-sonnet")
    """

    gateway_tags: list[str] = Field(default_factory=list)
    """Tags for the gateway's spend tracking and tag routing (not LangChain run tags)."""
    gateway_metadata: dict[str, Any] = Field(default_factory=dict)
    """Sent as the request's ``metadata`` (LiteLLM logs it and passes it to callbacks)."""
    end_user: str | None = None
    """End-user id, sent as ``user``: the gateway tracks spend and budgets per end user."""
    guardrails: list[str] | dict[str, bool] | None = None
    """Guardrails to run (names), or ``{name: True/False}`` to switch each on or off. Names of
    ``local_guardrails`` switch those; with the ``litellm`` dialect the names are also sent to
    the gateway."""
    local_guardrails: list[Any] = Field(default_factory=list, exclude=True)
    """Guardrails run in the process (:mod:`gatewaykit.guardrails`): the gateway and the
    provider receive the masked messages, the caller the masked answer (streams too)."""
    cache_control: CacheControl | None = None
    """Gateway response-cache controls for each request."""
    num_retries: int | None = None
    """Retries the *gateway* makes (``x-litellm-num-retries``); ``0`` when a client router owns
    retries. ``max_retries`` is the openai SDK's own retry count, a different layer."""
    disable_fallbacks: bool | None = None
    """Ask the gateway not to fall back to other model groups."""
    ttft_timeout: float | None = None
    """Seconds to wait for the first streamed token (async: exact; sync: socket read timeout)."""
    idle_timeout: float | None = None
    """Seconds allowed between two streamed chunks."""
    map_run_tags: bool = False
    """Also send the LangChain run's tags (``config["tags"]``) as gateway tags."""
    map_run_metadata: bool = False
    """Also send the LangChain run's JSON-scalar metadata (minus LangGraph/LangSmith internals)."""
    dialect: Literal["litellm", "openai"] = "litellm"
    """``"litellm"`` sends LiteLLM's controls; ``"openai"`` sends only standard OpenAI fields
    (for a plain OpenAI-compatible upstream that would reject unknown parameters)."""
    keep_raw_headers: bool = False
    """Also keep the raw header dict in ``response_metadata["headers"]``."""
    deployment_id: str | None = None
    """Which configured deployment this model calls; errors and metadata carry it."""
    model_group: str | None = None
    """The configured model group (alias) this model serves."""

    stream_usage: bool | None = True
    use_responses_api: bool | None = False

    @model_validator(mode="before")
    @classmethod
    def _gateway_defaults(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("local_guardrails"):
            from gatewaykit.guardrails.runner import GuardrailSet

            values["local_guardrails"] = GuardrailSet(values["local_guardrails"]).guardrails
        if isinstance(values, dict):
            if values.get("include_response_headers"):
                values.setdefault("keep_raw_headers", True)
            # Headers are how the gateway talks back: always read them.
            values["include_response_headers"] = True
            if not (
                values.get("http_async_client")
                or values.get("async_client")
                or values.get("openai_proxy")
            ):
                base = values.get("base_url") or values.get("openai_api_base")
                values["http_async_client"] = async_client_for(base)
        return values

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_config(
        cls,
        config: str | Any,
        model: str,
        **overrides: Any,
    ) -> GatewayChatModel:
        """Build the model for alias ``model`` of a LiteLLM-dialect config.

        With a ``gateway:`` section (``base_url`` and ``api_key`` of a LiteLLM proxy) the alias is
        sent to the proxy as is. Without one, the alias's first deployment is called directly,
        which needs an OpenAI-compatible ``api_base`` (``openai/...``, ``hosted_vllm/...``...).
        """
        from gatewaykit.config import load_config

        cfg = load_config(config)
        if "callbacks" not in overrides:
            from gatewaykit.observability.callbacks import callbacks_from_config

            # `litellm_settings.success_callback: [langfuse, prometheus]` is the one switch.
            overrides["callbacks"] = callbacks_from_config(cfg) or None
        gw = cfg.gateway
        base_url = gw.resolved_base_url(extra=cfg.environment_variables) if gw else None
        if gw is not None and base_url:
            known = cfg.public_models()
            if model not in known:
                raise ConfigError(
                    ConfigProblem(
                        "model",
                        f"unknown model alias {model!r}; the config defines: {', '.join(known)}",
                    ),
                    source=cfg.source,
                )
            deployments = cfg.group(model)
            params: dict[str, Any] = {
                "base_url": base_url,
                "api_key": gw.resolved_api_key(extra=cfg.environment_variables) or "no-key",
                "model": model,
                "gateway_tags": list(gw.default_tags),
                "gateway_metadata": dict(gw.default_metadata),
                "end_user": gw.user,
                "map_run_tags": gw.map_run_tags,
                "map_run_metadata": gw.map_run_metadata,
                "model_group": cfg.resolve_group(model),
                "profile": _profile(deployments[0]) if deployments else None,
            }
            if deployments and cfg.guardrails:
                from gatewaykit.guardrails.resolve import plan_for_deployment

                # The proxy runs the names itself (same config); run the local kinds here too.
                plan = plan_for_deployment(cfg, deployments[0], via_gateway=True)
                params["local_guardrails"] = plan.local or None
            if gw.timeout is not None:
                params["timeout"] = gw.timeout
            if gw.ttft_timeout is not None:
                params["ttft_timeout"] = gw.ttft_timeout
            if gw.idle_timeout is not None:
                params["idle_timeout"] = gw.idle_timeout
            params.update(overrides)
            return cls(**{k: v for k, v in params.items() if v is not None})
        if "cache" not in overrides:
            from gatewaykit.cache import cache_from_config

            # Direct to the provider, no proxy to cache: the config's cache applies here.
            overrides["cache"] = cache_from_config(cfg)
        deployments = cfg.group(model)
        return cls.from_deployment(deployments[0], config=cfg, **overrides)

    @classmethod
    def from_deployment(
        cls,
        deployment: Deployment,
        *,
        config: GatewayConfig | None = None,
        **overrides: Any,
    ) -> GatewayChatModel:
        """A model that calls one configured deployment directly (the router uses this)."""
        base = deployment.api_base()
        provider = deployment.provider
        if not base and provider not in (None, "openai"):
            raise ConfigError(
                ConfigProblem(
                    f"model_list[{deployment.index}].litellm_params.api_base",
                    f"deployment {deployment.id!r} ({deployment.model}) has no api_base, and "
                    f"provider {provider!r} is not OpenAI-compatible without one: set api_base to "
                    "an OpenAI-compatible endpoint, or add a `gateway:` section with the base_url "
                    "of a LiteLLM proxy",
                ),
                source=config.source if config else None,
            )
        key = deployment.api_key()
        params: dict[str, Any] = {
            "base_url": base,
            "api_key": key or "no-key",
            "model": deployment.upstream_model,
            "deployment_id": deployment.id,
            "model_group": deployment.model_name,
            "dialect": "litellm" if provider == "litellm_proxy" else "openai",
            "profile": _profile(deployment),
        }
        if config is not None and (deployment.guardrails or config.guardrails):
            from gatewaykit.guardrails.resolve import plan_for_deployment

            plan = plan_for_deployment(config, deployment, via_gateway=provider == "litellm_proxy")
            params["local_guardrails"] = plan.local or None
            params["guardrails"] = plan.gateway_names or None
        if deployment.timeout is not None:
            params["timeout"] = deployment.timeout
        if deployment.stream_timeout is not None:
            params["ttft_timeout"] = deployment.stream_timeout
        for name in ("temperature", "max_tokens", "organization"):
            value = deployment.param(name)
            if value is not None:
                params[name] = value
        params.update(overrides)
        return cls(**{k: v for k, v in params.items() if v is not None})

    # ------------------------------------------------------------------ LangChain plumbing

    @classmethod
    def is_lc_serializable(cls) -> bool:
        # langchain's loader only admits its own classes; say so instead of failing on load.
        return False

    @property
    def _llm_type(self) -> str:
        return "gatewaykit-chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "litellm" if self.dialect == "litellm" else "openai"
        return with_gateway_tags(params, self.gateway_tags, kwargs.get("gateway_tags"))

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
        """ChatOpenAI's contract; with ``max_repairs`` or ``fallback`` the reliable path of
        :func:`gatewaykit.structured` (re-asks with the validation errors, typed failures).

        Example::

            review = llm.with_structured_output(CodeReview, max_repairs=2).invoke(diff)
        """
        if max_repairs is not None or fallback is not None:
            return _reliable_structured(  # type: ignore[no-any-return]
                self, schema, method, strict, include_raw, max_repairs, fallback, kwargs
            )
        if method is not None:
            kwargs["method"] = method
        return super().with_structured_output(
            schema, include_raw=include_raw, strict=strict, **kwargs
        )

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        # The response-cache key: what changes the answer, plus this request's cache controls.
        controls = {**(self.cache_control or {}), **(kwargs.get("cache_control") or {})}
        kept = {k: v for k, v in kwargs.items() if k not in NOT_IN_CACHE_KEY}
        return with_cache_controls(super()._get_llm_string(stop=stop, **kept), controls)

    # Per-run options (LangChain config) become call kwargs (RunConfigChatModel), so every
    # entry point (invoke, batch, stream, astream_events, a LangGraph node) sees the same options.
    def _call_options(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> Any:
        if not (self.map_run_tags or self.map_run_metadata or config):
            return kwargs
        cfg = ensure_config(config)
        out = dict(kwargs)
        run_gw = (cfg.get("configurable") or {}).get("gateway")
        if isinstance(run_gw, Mapping):
            for k, v in run_gw.items():
                if k not in CALL_OPTIONS:
                    raise ValueError(
                        f"configurable.gateway.{k}: unknown gateway option; use one of "
                        f"{', '.join(sorted(CALL_OPTIONS))}"
                    )
                out.setdefault(k, v)
        if self.map_run_tags and cfg.get("tags"):
            tags = [t for t in cfg["tags"] if not t.startswith(("seq:", "graph:", "langsmith:"))]
            out["gateway_tags"] = [*tags, *out.get("gateway_tags", [])]
        if self.map_run_metadata and cfg.get("metadata"):
            md = {
                k: v
                for k, v in cfg["metadata"].items()
                if not k.startswith(_INTERNAL_METADATA_PREFIXES)
                and isinstance(v, str | int | float | bool)
            }
            if md:
                out["gateway_metadata"] = {**md, **out.get("gateway_metadata", {})}
        return out

    # ------------------------------------------------------------------ request shaping

    def _get_request_payload(
        self,
        input_: LanguageModelInput,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        call = {k: kwargs.pop(k) for k in CALL_OPTIONS if k in kwargs}
        if self.local_guardrails:
            active = self._active_guardrails(call)
            _POST_GUARD.set((id(self), active))
            if active.pre_guardrails:
                input_ = active.pre(self._convert_input(input_).to_messages())
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        self._apply_gateway_options(payload, call)
        return payload

    # ------------------------------------------------------------------ local guardrails

    def _active_guardrails(self, call: Mapping[str, Any]) -> ActiveGuardrails:
        """This request's local guardrails (``guardrails`` switches them per call)."""
        from gatewaykit.guardrails.runner import GuardrailSet, names_of

        gs = GuardrailSet(self.local_guardrails)
        toggles = self._option(call, "guardrails")
        if self.dialect != "litellm":
            missing = [n for n, on in gs.remote(toggles).items() if on]
            if missing:
                raise ConfigError(
                    ConfigProblem(
                        "guardrails",
                        f"guardrail(s) {missing} are not local ({', '.join(gs.names) or 'none'})"
                        " and this model calls its provider directly (dialect 'openai'), so no "
                        "gateway will run them",
                    )
                )
        return gs.select(names_of(toggles) or None)

    def _post_guardrails(self) -> ActiveGuardrails | None:
        if not self.local_guardrails:
            return None
        owner, active = _POST_GUARD.get()
        if owner != id(self) or active is None:
            return self._active_guardrails({})
        return active  # type: ignore[no-any-return]

    def _option(self, call: Mapping[str, Any], name: str) -> Any:
        if name in call:
            value = call[name]
            if name in _LIST_OPTIONS:
                return list(dict.fromkeys([*getattr(self, name), *(value or [])]))
            if name in _DICT_OPTIONS:
                return {**getattr(self, name), **(value or {})}
            return value
        return getattr(self, name, None)

    def _apply_gateway_options(self, payload: dict[str, Any], call: Mapping[str, Any]) -> None:
        end_user = self._option(call, "end_user")
        if end_user:
            payload["user"] = end_user
        if self.dialect != "litellm":
            return
        # A per-call extra_body replaces the instance's wholesale in ChatOpenAI; merge instead.
        body: dict[str, Any] = {**(self.extra_body or {}), **(payload.get("extra_body") or {})}
        headers: dict[str, str] = dict(payload.get("extra_headers") or {})
        metadata: dict[str, Any] = dict(body.get("metadata") or {})
        metadata.update(self._option(call, "gateway_metadata") or {})
        tags = self._option(call, "gateway_tags") or []
        if tags:
            metadata["tags"] = list(dict.fromkeys([*metadata.get("tags", []), *tags]))
            headers["x-litellm-tags"] = ",".join(metadata["tags"])
        call_id = call.get("call_id")
        if call_id:
            headers["x-litellm-call-id"] = str(call_id)
        trace_id = call.get("trace_id")
        if trace_id:
            metadata["trace_id"] = str(trace_id)
            body["litellm_trace_id"] = str(trace_id)
        guardrails = self._option(call, "guardrails")
        if isinstance(guardrails, Mapping):
            body["guardrails"] = [n for n, on in guardrails.items() if on]
            metadata["guardrails"] = {n: bool(on) for n, on in guardrails.items()}
        elif guardrails:
            body["guardrails"] = list(guardrails)
        cache = self._option(call, "cache_control")
        if cache:
            body["cache"] = {
                {"no_cache": "no-cache", "no_store": "no-store", "s_maxage": "s-maxage"}.get(
                    k, k
                ): v
                for k, v in cache.items()
            }
        retries = self._option(call, "num_retries")
        if retries is not None:
            headers["x-litellm-num-retries"] = str(int(retries))
        if self._option(call, "disable_fallbacks"):
            body["disable_fallbacks"] = True
        if metadata:
            body["metadata"] = metadata
        if body:
            payload["extra_body"] = body
        if headers:
            payload["extra_headers"] = headers
        # Sync streams cannot be interrupted from outside: bound each socket read instead.
        if payload.get("stream") and "timeout" not in payload:
            read = _min_set(self._option(call, "ttft_timeout"), self._option(call, "idle_timeout"))
            if read is not None:
                total = (
                    self.request_timeout if isinstance(self.request_timeout, int | float) else None
                )
                payload["timeout"] = httpx.Timeout(total or 600.0, read=read)

    # ------------------------------------------------------------------ response handling

    def _create_chat_result(
        self,
        response: Any,
        generation_info: dict[str, Any] | None = None,
    ) -> ChatResult:
        info = dict(generation_info or {})
        headers = info.get("headers") if self.keep_raw_headers else info.pop("headers", None)
        if headers is not None:
            info["gateway"] = parse_gateway_headers(headers)
        result = super()._create_chat_result(response, info)
        guard = self._post_guardrails()
        if guard is not None:
            result = guard.post_result(result)
        for gen in result.generations:
            finish = (gen.generation_info or {}).get("finish_reason")
            if (
                finish == "content_filter"
                and not gen.text
                and not getattr(gen.message, "tool_calls", None)
            ):
                raise ContentPolicyViolation(
                    "the provider's content filter blocked the answer (finish_reason="
                    "content_filter)",
                    deployment=self._deployment_from(info),
                    model_group=self.model_group,
                )
        return result

    def _deployment_from(self, info: Mapping[str, Any]) -> str | None:
        gw = info.get("gateway") or {}
        return gw.get("deployment_id") or self.deployment_id  # type: ignore[no-any-return]

    def _raise_translated(self, exc: BaseException) -> NoReturn:
        new = translate(exc, deployment=self.deployment_id, model_group=self.model_group)
        if new is exc:
            raise exc
        raise new from exc

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            self._raise_translated(exc)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            self._raise_translated(exc)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        active = self._active_guardrails(kwargs) if self.local_guardrails else None
        if active is None or not active.post_guardrails:
            yield from self._stream_checked(messages, stop, run_manager, **kwargs)
            return
        # Callbacks see the masked tokens only: the raw stream runs without the run manager.
        yield from active.stream(self._stream_checked(messages, stop, None, **kwargs), run_manager)

    def _stream_checked(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        guard = _StreamGuard(self, kwargs)
        try:
            for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
                yield from guard.feed(chunk)
        except Exception as exc:
            guard.fail(exc)
        yield from guard.finish()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        active = self._active_guardrails(kwargs) if self.local_guardrails else None
        if active is None or not active.post_guardrails:
            async for chunk in self._astream_checked(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        source = self._astream_checked(messages, stop, None, **kwargs)
        async for chunk in active.astream(source, run_manager):
            yield chunk

    async def _astream_checked(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        guard = _StreamGuard(self, kwargs)
        source = super()._astream(messages, stop=stop, run_manager=run_manager, **kwargs)
        try:
            while True:
                wait = guard.next_wait()
                try:
                    if wait is None:
                        chunk = await source.__anext__()
                    else:
                        chunk = await asyncio.wait_for(source.__anext__(), wait)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    await _aclose_quietly(source)
                    guard.timed_out()
                for out in guard.feed(chunk):
                    yield out
        except Exception as exc:
            guard.fail(exc)
        finally:
            await _aclose_quietly(source)
        for out in guard.finish():
            yield out


async def _aclose_quietly(gen: Any) -> None:
    with contextlib.suppress(Exception):
        await gen.aclose()


def _min_set(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _profile(deployment: Deployment) -> ModelProfile | None:
    """A LangChain model profile from the deployment's ``model_info`` (agents read it)."""
    profile: dict[str, Any] = {}
    if deployment.max_input_tokens:
        profile["max_input_tokens"] = deployment.max_input_tokens
    if deployment.max_output_tokens:
        profile["max_output_tokens"] = deployment.max_output_tokens
    if deployment.supports_function_calling is not None:
        profile["tool_calling"] = deployment.supports_function_calling
    if deployment.supports_response_schema is not None:
        profile["structured_output"] = deployment.supports_response_schema
    if deployment.supports_vision is not None:
        profile["image_inputs"] = deployment.supports_vision
    if deployment.supports_reasoning is not None:
        profile["reasoning_output"] = deployment.supports_reasoning
    return ModelProfile(**profile) if profile else None  # type: ignore[typeddict-item]


class _StreamGuard:
    """Bookkeeping shared by the sync and async stream paths.

    Holds back the finish/usage chunks so the parsed gateway headers can ride on the last
    chunk, enforces TTFT and idle deadlines (async), and turns a broken stream into a typed
    error: before the first token the original error (a router can fail over), after it
    :class:`StreamInterrupted` with the partial text.
    """

    __slots__ = (
        "chunks",
        "finished",
        "gateway",
        "held",
        "idle",
        "last_at",
        "model",
        "parts",
        "started",
        "ttft",
    )

    def __init__(self, model: GatewayChatModel, kwargs: Mapping[str, Any]) -> None:
        self.model = model
        self.ttft: float | None = kwargs.get("ttft_timeout", model.ttft_timeout)
        self.idle: float | None = kwargs.get("idle_timeout", model.idle_timeout)
        self.started = time.monotonic()
        self.last_at = self.started
        self.parts: list[str] = []
        self.chunks = 0
        self.gateway: dict[str, Any] | None = None
        self.held: list[ChatGenerationChunk] = []
        self.finished = False

    @property
    def delivered(self) -> bool:
        return self.chunks > 0

    def next_wait(self) -> float | None:
        if not self.delivered and self.ttft is not None:
            return max(0.0, self.started + self.ttft - time.monotonic())
        if self.delivered and self.idle is not None:
            return self.idle
        return None

    def timed_out(self) -> NoReturn:
        phase = "idle" if self.delivered else "ttft"
        limit = self.idle if self.delivered else self.ttft
        err = GatewayTimeout(
            f"no streamed {'chunk' if self.delivered else 'token'} within {limit}s ({phase} "
            "timeout)",
            phase=phase,
            deployment=self.model.deployment_id,
            model_group=self.model.model_group,
        )
        self._raise(err, None)

    def feed(self, chunk: ChatGenerationChunk) -> Iterator[ChatGenerationChunk]:
        info = chunk.generation_info
        if info and "headers" in info:
            headers = info["headers"] if self.model.keep_raw_headers else info.pop("headers")
            self.gateway = dict(parse_gateway_headers(headers))
        msg = chunk.message
        has_payload = bool(chunk.text) or bool(getattr(msg, "tool_call_chunks", None))
        if info and info.get("finish_reason"):
            self.finished = True
        if has_payload:
            self.chunks += 1
            self.parts.append(chunk.text)
            self.last_at = time.monotonic()
            if self.held:
                yield from self.held
                self.held.clear()
            yield chunk
        elif self.finished or getattr(msg, "usage_metadata", None):
            self.held.append(chunk)  # finish / usage chunks: the last ones, carry the headers
        else:
            yield chunk

    def finish(self) -> Iterator[ChatGenerationChunk]:
        if not self.finished:
            msg = "the stream ended without a finish reason (connection closed early?)"
            if self.delivered:
                self._raise(None, msg)
            raise UpstreamError(
                "the gateway ended the stream before sending any answer",
                deployment=self.model.deployment_id,
                model_group=self.model.model_group,
            )
        if self.gateway is not None:
            if not self.held:
                self.held.append(ChatGenerationChunk(message=AIMessageChunk(content="")))
            last = self.held[-1]
            last.generation_info = {**(last.generation_info or {}), "gateway": self.gateway}
        if self.held:
            last = self.held[-1]
            finish = (self.held[0].generation_info or {}).get("finish_reason")
            if finish == "content_filter" and not self.delivered:
                raise ContentPolicyViolation(
                    "the provider's content filter blocked the answer",
                    deployment=self.model.deployment_id,
                    model_group=self.model.model_group,
                )
        yield from self.held

    def fail(self, exc: BaseException) -> NoReturn:
        if isinstance(exc, StreamInterrupted):
            raise exc
        if isinstance(exc, openai.LengthFinishReasonError | openai.ContentFilterFinishReasonError):
            raise exc  # the stream finished (at the token limit / a filter): not an interruption
        new = translate(
            exc, deployment=self.model.deployment_id, model_group=self.model.model_group
        )
        if isinstance(new, GatewayTimeout) and isinstance(exc, Exception):
            new.phase = "idle" if self.delivered else "ttft"
        self._raise(new, None, cause=exc)

    def _raise(
        self,
        err: BaseException | None,
        message: str | None,
        cause: BaseException | None = None,
    ) -> NoReturn:
        if self.delivered:
            reason = message or str(err)
            interrupted = StreamInterrupted(
                f"stream interrupted after {self.chunks} chunk(s): {reason}",
                partial_text="".join(self.parts),
                chunks_received=self.chunks,
                deployment=self.model.deployment_id,
                model_group=self.model.model_group,
                status=getattr(err, "status", None),
            )
            raise interrupted from (cause or err)
        assert err is not None
        if cause is not None and err is not cause:
            raise err from cause
        raise err


def _reliable_structured(
    model: Any,
    schema: Any,
    method: Any,
    strict: bool | None,
    include_raw: bool,
    max_repairs: int | None,
    fallback: Any,
    kwargs: dict[str, Any],
) -> Any:
    """``structured()`` behind ``with_structured_output(..., max_repairs=/fallback=)``."""
    if kwargs:
        raise ValueError(
            f"with_structured_output: {sorted(kwargs)} cannot be combined with max_repairs or "
            "fallback; drop them, or call gatewaykit.structured() directly"
        )
    from gatewaykit.structured import structured

    return structured(
        model,
        schema,
        method=method,
        strict=strict,
        max_repairs=2 if max_repairs is None else max_repairs,
        fallback=fallback,
        include_raw=include_raw,
    )


def with_gateway_tags(params: Any, own: Sequence[str] | None, per_call: Any) -> Any:
    """Tracing metadata with the tags the gateway will see (the model's, then the call's), so
    tracers such as Langfuse can show them too: LangChain's run tags never include them."""
    tags = [*(own or ()), *(per_call or ())]
    if tags:
        params["gateway_tags"] = list(dict.fromkeys(map(str, tags)))
    return params
