"""The router as a LangGraph graph: one node, ``attempt``, that loops until an answer or a verdict.

Each execution of the node is one call to one deployment, so every attempt is a visible step in
traces and in ``graph.stream(stream_mode="updates")``. Inside an attempt:

1. **resolve** the alias (``model_group_alias``) — done once in :meth:`RouterEngine.start`;
2. **admit**: drop deployments that are cooling down, lack a needed capability, cannot fit the
   prompt, have no rpm/tpm/parallel headroom, or do not match the request's tags; keep the
   best ``order``;
3. **pick** with the configured strategy, then reserve headroom atomically in the store;
4. **call** the deployment (its SDK retries off: this graph is the one retry owner);
5. on error **classify** and decide: retry in the group (backoff honouring Retry-After, capped),
   cool the deployment down, or move to the fallback group that the error kind selects — within
   one attempt budget and one wall-clock deadline, never entering a group twice.

When every deployment of a group is cooling down the attempt waits for the earliest to recover,
if that happens before the deadline, instead of failing at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import SecretStr

from gatewaykit.chat_model import GatewayChatModel
from gatewaykit.config import Deployment, GatewayConfig, load_config
from gatewaykit.cost import (
    REQUEST_SCOPES,
    Budget,
    BudgetManager,
    Reservation,
    SpendContext,
    call_cost,
)
from gatewaykit.errors import (
    BudgetExceeded,
    GatewayError,
    NoDeploymentAvailable,
    StreamInterrupted,
    UpstreamError,
    translate,
)
from gatewaykit.routing import strategies as st
from gatewaykit.routing.health import CooldownPolicy, RetryPolicy, cooldown_for, is_available
from gatewaykit.routing.redis_store import store_from_config
from gatewaykit.routing.store import DeploymentState, Outcome, StateStore
from gatewaykit.routing.transport import LeanTransport, can_use_lean_path

__all__ = [
    "AttemptRecord",
    "RouteRequest",
    "RouterEngine",
    "RouterState",
    "build_router_graph",
]

# Errors that say something about the deployment's health (others are the caller's doing).
HEALTH_KINDS = frozenset(
    {
        "upstream",
        "timeout",
        "connection",
        "rate_limited",
        "authentication",
        "not_found",
        "access_denied",
        "no_deployment",
        "stream_interrupted",
    }
)
# Errors no other model group can fix: the same guardrail or the caller's own budget.
_NO_FALLBACK_KINDS = frozenset({"guardrail"})
_CALLER_BUDGET_SCOPES = frozenset({"key", "team", "user", "end_user", "global", None})
_FALLBACK_KIND = {"context_window": "context_window", "content_policy": "content_policy"}
# Errors that belong to one deployment (its key, its model name, its access): another deployment
# of the same group may well succeed, so the router hops there before leaving the group.
_PER_DEPLOYMENT_KINDS = frozenset({"authentication", "not_found", "access_denied"})


@dataclass(slots=True)
class AttemptRecord:
    """One call to one deployment, as shown in ``response_metadata["routing"]["attempts"]``."""

    deployment: str
    group: str
    ok: bool
    latency_ms: float
    kind: str | None = None
    status: int | None = None
    error: str | None = None
    waited_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "deployment": self.deployment,
            "group": self.group,
            "ok": self.ok,
            "latency_ms": round(self.latency_ms, 3),
        }
        if not self.ok:
            d.update(kind=self.kind, status=self.status, error=self.error)
        if self.waited_ms:
            d["waited_ms"] = round(self.waited_ms, 3)
        return d


@dataclass(slots=True)
class RouteRequest:
    """What is being asked, fixed for the whole request."""

    alias: str
    messages: list[BaseMessage]
    stop: list[str] | None
    kwargs: dict[str, Any]
    stream: bool
    tags: tuple[str, ...]
    needs: frozenset[str]
    input_tokens: int
    started: float
    deadline: float
    max_attempts: int
    fallbacks_allowed: bool = True
    on_chunk: Callable[[Any], None] | None = None
    buffer_attempts: bool = False
    """Hold each attempt's chunks until it completes, so a mid-stream failure can restart."""
    delivered: bool = False
    """Whether a token already reached the caller (from then on, no silent failover)."""
    delivered_text: list[str] = field(default_factory=list)
    """The text that reached the caller, for :class:`StreamInterrupted`."""
    condemned: set[str] = field(default_factory=set)
    """Deployments that failed with their own key/model/access error in this request."""
    attempt_ttft: float | None = None
    """Time to first token of the latest streamed attempt (latency-based routing)."""


class RouterState(TypedDict, total=False):
    """Graph state: the request, where it is, and how it ended."""

    request: RouteRequest
    group: str
    visited: list[str]
    tried: list[str]
    retries: int
    attempts: list[AttemptRecord]
    result: ChatResult | None
    error: BaseException | None
    served: Deployment | None
    reservation: Reservation | None
    waited_s: float
    done: bool


@dataclass(slots=True)
class _Pick:
    deployment: Deployment
    reservation: Reservation | None = None


@dataclass(slots=True)
class _Refused:
    """The caller's own budget is spent: no deployment, no fallback can help."""

    error: BudgetExceeded


@dataclass(slots=True)
class _Wait:
    seconds: float


@dataclass(slots=True)
class _Exhausted:
    kind: str
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Next:
    """What the node does after a failed call."""

    action: Literal["retry", "fallback", "fail"]
    sleep: float = 0.0


@dataclass(slots=True)
class Admission:
    """What :meth:`RouterEngine.admit` let through, and why it dropped the rest."""

    candidates: list[Deployment] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each dropped deployment was dropped, by id."""
    temporary_until: list[float] = field(default_factory=list)
    """When the temporarily unavailable ones (cooldown, headroom) may be back."""
    context_excluded: bool = False
    """The context window alone left nothing."""


class RouterEngine:
    """The decisions behind the graph: admission, choice, retries, cooldowns, fallbacks.

    Holds no per-request state (that lives in :class:`RouterState`) and no per-deployment state
    (that lives in the :class:`~gatewaykit.routing.store.StateStore`), so one engine serves any
    number of concurrent requests.

    Example::

        engine = RouterEngine(GatewayConfig.from_yaml("config.yaml"))
        graph = build_router_graph(engine)
    """

    def __init__(
        self,
        config: GatewayConfig | str | Mapping[str, Any],
        *,
        store: StateStore | None = None,
        strategy: str | None = None,
        strategy_args: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        cooldown: CooldownPolicy | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        transport: LeanTransport | None = None,
        lean: bool = True,
        model_overrides: Mapping[str, Any] | None = None,
        seed: int | None = None,
        budgets: BudgetManager | Sequence[Budget] | None = None,
    ) -> None:
        self.config = cfg = load_config(config)
        rs = cfg.router
        self.store: StateStore = store if store is not None else store_from_config(cfg)
        self.strategy = st.make_strategy(
            strategy or rs.routing_strategy, strategy_args or rs.routing_strategy_args
        )
        self.retry = retry or RetryPolicy.from_litellm(
            rs.num_retries if rs.num_retries is not None else 2, rs.retry_policy
        )
        if rs.retry_after:
            self.retry = _replace(self.retry, min_retry_after=float(rs.retry_after))
        self.cooldown = cooldown or CooldownPolicy.from_litellm(
            rs.allowed_fails_policy,
            cooldown_time=rs.cooldown_time if rs.cooldown_time is not None else 5.0,
            allowed_fails=rs.allowed_fails,
            disabled=bool(rs.extra.get("disable_cooldowns", False)),
        )
        configured_max = rs.extra.get("max_attempts")
        self.max_attempts = int(
            max_attempts or configured_max or min(20, max(3, (self.retry.num_retries + 1) * 3))
        )
        self.timeout = float(timeout or rs.timeout or 600.0)
        self.tag_filtering = rs.enable_tag_filtering
        self.transport = transport if transport is not None else (LeanTransport() if lean else None)
        self.model_overrides = dict(model_overrides or {})
        self.rng = random.Random(seed)
        if budgets is None:
            budgets = cfg.budgets
        self.budgets: BudgetManager | None = (
            budgets if isinstance(budgets, BudgetManager) else BudgetManager(budgets) or None
        )
        self._target_budgets = bool(self.budgets) and any(
            b.scope not in REQUEST_SCOPES
            for b in self.budgets.budgets  # type: ignore[union-attr]
        )
        self._models: dict[str, Any] = {}
        self._groups: dict[str, tuple[Deployment, ...]] = {}
        self._group_needs_tokens: dict[str, bool] = {}
        self._any_needs_tokens = any(d.max_input_tokens or d.tpm for d in cfg.deployments)
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        """Called as ``listener(event, info)`` on ``"retry"``, ``"cooldown"`` and ``"fallback"``
        (e.g. :meth:`gatewaykit.observability.GatewayMetrics.watch`). They run on the request
        path: keep them fast, and they must not raise."""

    # ------------------------------------------------------------------ setup per request

    def group(self, name: str) -> tuple[Deployment, ...]:
        deps = self._groups.get(name)
        if deps is None:
            deps = self._groups[name] = tuple(self.config.group(name))
            self._group_needs_tokens[name] = any(d.max_input_tokens or d.tpm for d in deps)
        return deps

    def model_for(self, dep: Deployment) -> Any:
        """The deployment's chat model, built on first use (a missing env var fails only then).

        ``langgraph/<assistant>`` deployments are agents on a LangGraph server (``api_base``):
        they serve through :class:`~gatewaykit.agents.RemoteAgentChatModel`; ``a2a/<name>``
        (or ``a2a_agent/<name>``) deployments are A2A agents at ``api_base``, served through
        :class:`~gatewaykit.agents.A2AAgentChatModel`. Either way an agent can be a group's
        deployment or another group's fallback."""
        model = self._models.get(dep.id)
        if model is None:
            if dep.provider in ("langgraph", "a2a", "a2a_agent"):
                model = _agent_model(dep, self.config)
            else:
                overrides: dict[str, Any] = {"max_retries": 0, **self.model_overrides}
                stream_timeout = self.config.router.stream_timeout
                if stream_timeout is not None and dep.stream_timeout is None:
                    # router_settings.stream_timeout: every deployment's own unless it sets one.
                    overrides.setdefault("ttft_timeout", stream_timeout)
                if dep.provider == "litellm_proxy":
                    # The proxy behind must not retry or fall back on its own: this graph decides.
                    overrides.setdefault("num_retries", 0)
                    overrides.setdefault("disable_fallbacks", True)
                model = GatewayChatModel.from_deployment(dep, config=self.config, **overrides)
            self._models[dep.id] = model
        return model

    def start(
        self,
        alias: str,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        *,
        stream: bool,
        tags: Sequence[str] = (),
        deadline_s: float | None = None,
        on_chunk: Callable[[Any], None] | None = None,
        buffer_attempts: bool = False,
    ) -> RouterState:
        group = self.config.resolve_group(alias)
        self.group(group)
        now = time.monotonic()
        needs = _needs(messages, kwargs)
        # Any group the request may reach (through any chain of fallbacks) may have a limit.
        tokens = _estimate_tokens(messages) if self._any_needs_tokens else 0
        request = RouteRequest(
            alias=alias,
            messages=messages,
            stop=stop,
            kwargs=kwargs,
            stream=stream,
            tags=tuple(tags),
            needs=needs,
            input_tokens=tokens,
            started=now,
            deadline=now + (deadline_s if deadline_s is not None else self.timeout),
            max_attempts=self.max_attempts,
            fallbacks_allowed=not kwargs.get("disable_fallbacks", False),
            on_chunk=on_chunk,
            buffer_attempts=buffer_attempts,
        )
        return RouterState(
            request=request,
            group=group,
            visited=[group],
            tried=[],
            retries=0,
            attempts=[],
            result=None,
            error=None,
            served=None,
            reservation=None,
            waited_s=0.0,
            done=False,
        )

    def _needs_tokens(self, group: str) -> bool:
        self.group(group)
        return self._group_needs_tokens.get(group, False)

    # ------------------------------------------------------------------ admit + pick

    def admit(
        self,
        state: RouterState,
        deps: Sequence[Deployment],
        views: Mapping[str, DeploymentState],
        now: float,
    ) -> Admission:
        """The admission filters, in order: deployments this request condemned, cooldowns,
        tags, capabilities, context window, rpm/tpm headroom, target budgets. Nothing is
        reserved; :meth:`choose` picks among what is left (``gatewaykit route`` explains it)."""
        req = state["request"]
        adm = Admission()
        reasons = adm.reasons
        candidates = adm.candidates
        for d in deps:
            if d.id in req.condemned:
                reasons[d.id] = "failed with its own key, model or access in this request"
                continue
            s = views[d.id]
            ok, why = is_available(s, now)
            if not ok:
                reasons[d.id] = why
                adm.temporary_until.append(
                    s.cooldown_until if s.cooldown_until > now else now + 0.05
                )
                continue
            candidates.append(d)
        if candidates and self.tag_filtering:
            candidates, why_tags = st.by_tags_explained(candidates, req.tags, enabled=True)
            reasons.update(why_tags)
        if candidates and req.needs:
            kept = st.by_capabilities(candidates, req.needs)
            for d in candidates:
                if d not in kept:
                    reasons[d.id] = f"lacks a needed capability ({', '.join(sorted(req.needs))})"
            candidates = kept
        if candidates and req.input_tokens:
            kept = st.by_context_window(candidates, req.input_tokens)
            if len(kept) < len(candidates):
                adm.context_excluded = not kept
                for d in candidates:
                    if d not in kept:
                        reasons[d.id] = (
                            f"~{req.input_tokens} input tokens exceed max_input_tokens "
                            f"{d.max_input_tokens}"
                        )
            candidates = kept
        if candidates:
            kept = st.by_headroom(candidates, views, now, req.input_tokens)
            for d in candidates:
                if d not in kept:
                    reasons[d.id] = "no rpm/tpm/parallel headroom in this window"
                    adm.temporary_until.append(views[d.id].window_start + 60.0)
            candidates = kept
        if candidates and self._target_budgets:
            kept = []
            for d in candidates:
                spent = self.budgets.blocked(self.spend_context(req, d))  # type: ignore[union-attr]
                if spent:
                    reasons[d.id] = spent
                else:
                    kept.append(d)
            candidates = kept
        adm.candidates = candidates
        return adm

    def choose(self, state: RouterState, now: float) -> _Pick | _Wait | _Exhausted | _Refused:
        req = state["request"]
        deps = self.group(state["group"])
        views = self.store.view([d.id for d in deps], now)
        admitted = self.admit(state, deps, views, now)
        candidates, reasons = admitted.candidates, admitted.reasons
        temporary_until, context_excluded = admitted.temporary_until, admitted.context_excluded
        if candidates and state["tried"]:
            # A retry goes to a deployment this request has not failed on yet, when there is one.
            fresh = [d for d in candidates if d.id not in state["tried"]]
            candidates = fresh or candidates
        while candidates:
            ordered = st.by_order(candidates)
            dep = self.strategy.pick(
                ordered,
                views,
                rng=self.rng,
                stream=req.stream,
                input_tokens=req.input_tokens,
                now=now,
            )
            reservation = None
            if self.budgets:
                try:
                    reservation = self.budgets.reserve(
                        self.spend_context(req, dep), self.estimate_cost(req, dep)
                    )
                except BudgetExceeded as exc:
                    if exc.scope in REQUEST_SCOPES:
                        return _Refused(exc)
                    reasons[dep.id] = str(exc)
                    candidates = [c for c in candidates if c.id != dep.id]
                    continue
            adm = self.store.acquire(
                dep.id,
                now,
                rpm=dep.rpm,
                tpm=dep.tpm,
                tokens=req.input_tokens,
                max_parallel=dep.max_parallel_requests,
                trial=views[dep.id].half_open,
            )
            if adm.ok:
                return _Pick(dep, reservation)
            if reservation is not None:
                self.budgets.settle(reservation, 0.0)  # type: ignore[union-attr]
            reasons[dep.id] = adm.reason
            temporary_until.append(adm.retry_at)
            candidates = [c for c in candidates if c.id != dep.id]
        if context_excluded:
            return _Exhausted("context_window", reasons)
        if temporary_until and len(temporary_until) >= len(reasons):
            earliest = max(now, min(temporary_until))
            if earliest < req.deadline:
                return _Wait(earliest - now)
        return _Exhausted("no_deployment", reasons)

    def spend_context(self, req: RouteRequest, dep: Deployment) -> SpendContext:
        """Who and what this call spends for, matched against the budgets."""
        md = req.kwargs.get("gateway_metadata") or {}
        team = md.get("team") or md.get("team_id") if isinstance(md, Mapping) else None
        user = req.kwargs.get("end_user")
        return SpendContext(
            tags=req.tags,
            team=str(team) if team else None,
            user=str(user) if user else None,
            model_group=dep.model_name,
            provider=dep.provider or "openai",
            deployment=dep.id,
        )

    def estimate_cost(self, req: RouteRequest, dep: Deployment) -> float:
        """Prompt tokens at the deployment's input price plus ``max_tokens`` at its output price:
        what the call reserves against the budgets until its real cost is known."""
        tokens = req.input_tokens or _estimate_tokens(req.messages)
        max_out = req.kwargs.get("max_tokens") or 0
        return tokens * (dep.input_cost_per_token or 0.0) + int(max_out) * (
            dep.output_cost_per_token or 0.0
        )

    def settle(self, state: RouterState, cost: float) -> None:
        reservation = state.get("reservation")
        if reservation is not None and self.budgets is not None:
            self.budgets.settle(reservation, cost)
            state["reservation"] = None

    def has_untried(self, state: RouterState, now: float) -> bool:
        """Whether a deployment of the current group that this request has not tried is up."""
        req = state["request"]
        deps = [d for d in self.group(state["group"]) if d.id not in req.condemned]
        if not deps:
            return False
        views = self.store.view([d.id for d in deps], now)
        deps = [d for d in deps if is_available(views[d.id], now)[0]]
        # the same filters, in the same order, as choose()
        if deps and self.tag_filtering:
            deps = st.by_tags(deps, req.tags, enabled=True)
        if deps and req.needs:
            deps = st.by_capabilities(deps, req.needs)
        if deps and req.input_tokens:
            deps = st.by_context_window(deps, req.input_tokens)
        tried = set(state["tried"])
        return any(d.id not in tried for d in deps)

    def has_other_available(self, state: RouterState, exclude: str, now: float) -> bool:
        deps = self.group(state["group"])
        if len(deps) < 2:
            return False
        views = self.store.view([d.id for d in deps if d.id != exclude], now)
        return any(is_available(s, now)[0] for s in views.values())

    # ------------------------------------------------------------------ outcomes

    def call_kwargs(self, req: RouteRequest, now: float) -> dict[str, Any]:
        kwargs = req.kwargs
        remaining = max(0.001, req.deadline - now)
        timeout = kwargs.get("timeout")
        if isinstance(timeout, int | float) and timeout > 0:
            if remaining < timeout:
                kwargs = {**kwargs, "timeout": remaining}
        elif remaining < 600 and timeout is None:
            kwargs = {**kwargs, "timeout": remaining}
        return kwargs

    def on_success(
        self, state: RouterState, dep: Deployment, result: ChatResult, started: float
    ) -> RouterState:
        now = time.monotonic()
        latency = now - started
        usage = _usage_tokens(result)
        cost = _cost(dep, result)
        self.settle(state, cost)
        self.store.release(
            dep.id,
            now,
            Outcome(
                ok=True,
                latency_s=latency,
                ttft_s=state["request"].attempt_ttft if state["request"].stream else None,
                tokens=usage,
                reserved_tokens=state["request"].input_tokens,
                cost=cost,
            ),
        )
        state["attempts"].append(AttemptRecord(dep.id, state["group"], True, latency * 1000))
        state["result"] = result
        state["served"] = dep
        state["done"] = True
        return state

    def on_failure(
        self, state: RouterState, dep: Deployment, exc: BaseException, started: float
    ) -> _Next:
        now = time.monotonic()
        err = translate(exc, deployment=dep.id, model_group=dep.model_name)
        if not isinstance(err, GatewayError):
            # Not a gateway failure (a bug, a cancelled task): never disguise it as one.
            self.settle(state, 0.0)
            self.store.release(dep.id, now, Outcome(ok=False, counts_as_failure=False))
            raise exc
        req = state["request"]
        if req.delivered and not isinstance(err, StreamInterrupted):
            # Tokens already reached the caller: whatever broke, the answer is now partial.
            err = StreamInterrupted(
                f"stream interrupted after tokens were delivered: {err}",
                partial_text="".join(req.delivered_text),
                chunks_received=len(req.delivered_text),
                deployment=dep.id,
                model_group=dep.model_name,
                status=err.status,
            )
        kind = err.kind
        self.settle(state, 0.0)
        group_size = len(self.group(state["group"]))
        counts = kind in HEALTH_KINDS
        after = self.store.release(
            dep.id,
            now,
            Outcome(
                ok=False,
                latency_s=now - started,
                kind=kind,
                status=err.status,
                counts_as_failure=counts,
                reserved_tokens=req.input_tokens,
                stream=req.stream,
            ),
        )
        if counts:
            cool = cooldown_for(
                self.cooldown,
                after,
                kind=kind,
                status=err.status,
                retry_after=err.retry_after,
                group_size=group_size,
                deployment_cooldown=dep.cooldown_time,
            )
            if cool:
                self.store.cool_down(dep.id, now + cool, f"{kind} {err.status or ''}".strip())
                self._emit(
                    "cooldown",
                    deployment=dep.id,
                    group=dep.model_name,
                    kind=kind,
                    status=err.status,
                    seconds=cool,
                )
        state["attempts"].append(
            AttemptRecord(
                dep.id,
                state["group"],
                False,
                (now - started) * 1000,
                kind=kind,
                status=err.status,
                error=str(err)[:300],
            )
        )
        state["error"] = err
        if dep.id not in state["tried"]:
            state["tried"].append(dep.id)
        if len(state["attempts"]) >= req.max_attempts or now >= req.deadline:
            return _Next("fail")
        if req.delivered:
            return _Next("fail")  # tokens were delivered: never continue silently
        if kind == "stream_interrupted":
            kind = "upstream"  # buffered attempt: nothing reached the caller, restart cleanly
        if kind in _PER_DEPLOYMENT_KINDS:
            req.condemned.add(dep.id)
        if kind in _PER_DEPLOYMENT_KINDS and self.has_untried(state, now):
            return _Next("retry")
        if self.retry.is_retryable(kind) and state["retries"] < self.retry.retries_for(kind):
            wait = self.retry.backoff(
                state["retries"],
                retry_after=err.retry_after,
                rng=self.rng,
                other_deployment_available=self.has_other_available(state, dep.id, now),
            )
            if now + wait < req.deadline:
                state["retries"] += 1
                self._emit(
                    "retry",
                    deployment=dep.id,
                    group=dep.model_name,
                    kind=kind,
                    status=err.status,
                    sleep_s=wait,
                )
                return _Next("retry", wait)
        return _Next("fallback")

    def _emit(self, event: str, **info: Any) -> None:
        for listener in self.listeners:
            listener(event, info)

    def fallback(self, state: RouterState, kind: str) -> bool:
        """Move to the next fallback group for this error kind; False when there is none."""
        req = state["request"]
        err = state.get("error")
        if not req.fallbacks_allowed or kind in _NO_FALLBACK_KINDS:
            return False
        if kind == "budget_exceeded" and getattr(err, "scope", None) in _CALLER_BUDGET_SCOPES:
            return False
        if len(state["visited"]) - 1 >= self.config.router.max_fallbacks:
            return False
        chain_kind = _FALLBACK_KIND.get(kind, "general")
        for target in self.config.fallback_chain(state["group"], chain_kind):  # type: ignore[arg-type]
            group = self.config.resolve_group(target)
            if group in state["visited"]:
                continue  # no loops: a group is entered at most once per request
            self._emit("fallback", from_group=state["group"], to_group=group, kind=kind)
            state["visited"].append(group)
            state["group"] = group
            state["retries"] = 0
            state["tried"] = []
            return True
        return False

    def exhausted(self, state: RouterState, ex: _Exhausted) -> None:
        """No deployment of the current group can take the request right now."""
        req = state["request"]
        if state.get("error") is None or ex.kind == "context_window":
            if ex.kind == "context_window":
                from gatewaykit.errors import ContextWindowExceeded

                state["error"] = ContextWindowExceeded(
                    f"no deployment of {state['group']!r} has a context window large enough for "
                    f"~{req.input_tokens} input tokens",
                    model_group=state["group"],
                )
            else:
                state["error"] = NoDeploymentAvailable(
                    f"no deployment of {state['group']!r} is available: "
                    + "; ".join(f"{k}: {v}" for k, v in ex.reasons.items()),
                    model_group=state["group"],
                    reasons=ex.reasons,
                )
        elif isinstance(state["error"], GatewayError) and ex.reasons:
            prev = state["error"]
            if isinstance(prev, NoDeploymentAvailable):
                prev.reasons.update(ex.reasons)

    def finish_error(self, state: RouterState) -> BaseException:
        err = state.get("error") or NoDeploymentAvailable(
            f"model {state['request'].alias!r} could not be served", model_group=state["group"]
        )
        if isinstance(err, GatewayError):
            err.routing = self.routing_metadata(state)  # type: ignore[attr-defined]
        if isinstance(err, NoDeploymentAvailable):
            err.attempts = [a.as_dict() for a in state["attempts"]]
        return err

    def routing_metadata(self, state: RouterState) -> dict[str, Any]:
        req = state["request"]
        served = state.get("served")
        result = state.get("result")
        meta: dict[str, Any] = {
            "model": req.alias,
            "group": state["group"],
            "deployment": served.id if served else None,
            "attempts": [a.as_dict() for a in state["attempts"]],
            "fallbacks": state["visited"][1:],
            "latency_ms": round((time.monotonic() - req.started) * 1000, 3),
        }
        if state.get("waited_s"):
            meta["waited_ms"] = round(state["waited_s"] * 1000, 3)
        if served is not None and result is not None:
            meta["cost"] = _cost(served, result)
        return meta


# ---------------------------------------------------------------------- the node


def _attempt_sync(engine: RouterEngine, state: RouterState) -> RouterState:
    while True:
        now = time.monotonic()
        choice = engine.choose(state, now)
        if isinstance(choice, _Wait):
            time.sleep(choice.seconds)
            state["waited_s"] = state.get("waited_s", 0.0) + choice.seconds
            continue
        if isinstance(choice, _Exhausted):
            engine.exhausted(state, choice)
            if engine.fallback(state, choice.kind):
                continue
            state["done"] = True
            return state
        if isinstance(choice, _Refused):
            state["error"] = choice.error
            state["done"] = True
            return state
        dep = choice.deployment
        state["reservation"] = choice.reservation
        req = state["request"]
        started = time.monotonic()
        try:
            model = engine.model_for(dep)
            started = time.monotonic()  # building a client on first use is not the call's time
            kwargs = engine.call_kwargs(req, started)
            if req.stream:
                result = _collect_stream_sync(model, req, kwargs)
            elif (
                engine.transport is not None
                and isinstance(model, GatewayChatModel)
                and can_use_lean_path(kwargs)
            ):
                result = engine.transport.generate(model, req.messages, req.stop, **kwargs)
            else:
                result = model._generate(req.messages, stop=req.stop, **kwargs)
        except Exception as exc:
            nxt = engine.on_failure(state, dep, exc, started)
            return _after_failure_sync(engine, state, nxt)
        return engine.on_success(state, dep, result, started)


def _after_failure_sync(engine: RouterEngine, state: RouterState, nxt: _Next) -> RouterState:
    if nxt.action == "retry":
        if nxt.sleep:
            time.sleep(nxt.sleep)
        return state
    err = state.get("error")
    if nxt.action == "fallback" and engine.fallback(state, getattr(err, "kind", "upstream")):
        return state
    state["done"] = True
    return state


async def _attempt_async(engine: RouterEngine, state: RouterState) -> RouterState:
    while True:
        now = time.monotonic()
        choice = engine.choose(state, now)
        if isinstance(choice, _Wait):
            await asyncio.sleep(choice.seconds)
            state["waited_s"] = state.get("waited_s", 0.0) + choice.seconds
            continue
        if isinstance(choice, _Exhausted):
            engine.exhausted(state, choice)
            if engine.fallback(state, choice.kind):
                continue
            state["done"] = True
            return state
        if isinstance(choice, _Refused):
            state["error"] = choice.error
            state["done"] = True
            return state
        dep = choice.deployment
        state["reservation"] = choice.reservation
        req = state["request"]
        started = time.monotonic()
        try:
            model = engine.model_for(dep)
            started = time.monotonic()  # building a client on first use is not the call's time
            kwargs = engine.call_kwargs(req, started)
            if req.stream:
                result = await _collect_stream_async(model, req, kwargs)
            elif (
                engine.transport is not None
                and isinstance(model, GatewayChatModel)
                and can_use_lean_path(kwargs)
            ):
                result = await engine.transport.agenerate(model, req.messages, req.stop, **kwargs)
            else:
                result = await model._agenerate(req.messages, stop=req.stop, **kwargs)
        except Exception as exc:
            nxt = engine.on_failure(state, dep, exc, started)
            if nxt.action == "retry":
                if nxt.sleep:
                    await asyncio.sleep(nxt.sleep)
                return state
            return _after_failure_sync(engine, state, nxt)
        return engine.on_success(state, dep, result, started)


class _Relay:
    """Passes one attempt's chunks to the caller, holding back what must not leak.

    Chunks without payload (the role chunk, headers) wait until the first token, so an attempt
    that fails before answering leaves no trace in the caller's stream. With
    ``buffer_attempts`` every chunk waits until the attempt has finished, so a failure at any
    point can restart on another deployment without the caller ever seeing a partial answer.
    """

    __slots__ = ("final", "held", "req", "started")

    def __init__(self, req: RouteRequest) -> None:
        self.req = req
        self.held: list[ChatGenerationChunk] = []
        self.final: ChatGenerationChunk | None = None
        self.started = time.monotonic()
        req.attempt_ttft = None

    def push(self, chunk: ChatGenerationChunk) -> None:
        self.final = chunk if self.final is None else self.final + chunk
        req = self.req
        if req.attempt_ttft is None and _has_payload(chunk):
            req.attempt_ttft = time.monotonic() - self.started
        if req.on_chunk is None:
            return
        if req.buffer_attempts or (not req.delivered and not _has_payload(chunk)):
            self.held.append(chunk)
            return
        req.delivered = True
        self._flush()
        req.delivered_text.append(chunk.text)
        req.on_chunk(chunk)

    def result(self, deployment: str) -> ChatResult:
        final = self.final
        if final is None:
            raise UpstreamError("the deployment's stream carried no answer", deployment=deployment)
        if self.held and self.req.on_chunk is not None:
            self.req.delivered = True
            self._flush()
        return ChatResult(
            generations=[
                ChatGeneration(message=final.message, generation_info=final.generation_info)
            ]
        )

    def _flush(self) -> None:
        on_chunk = self.req.on_chunk
        assert on_chunk is not None
        for held in self.held:
            if held.text:
                self.req.delivered_text.append(held.text)
            on_chunk(held)
        self.held.clear()


def _has_payload(chunk: ChatGenerationChunk) -> bool:
    return bool(chunk.text) or bool(getattr(chunk.message, "tool_call_chunks", None))


def _collect_stream_sync(model: Any, req: RouteRequest, kwargs: dict[str, Any]) -> ChatResult:
    relay = _Relay(req)
    for chunk in model._stream(req.messages, stop=req.stop, **kwargs):
        relay.push(chunk)
    return relay.result(_model_id(model))


async def _collect_stream_async(
    model: Any, req: RouteRequest, kwargs: dict[str, Any]
) -> ChatResult:
    relay = _Relay(req)
    async for chunk in model._astream(req.messages, stop=req.stop, **kwargs):
        relay.push(chunk)
    return relay.result(_model_id(model))


def build_router_graph(
    config: GatewayConfig | RouterEngine | str | Mapping[str, Any], **engine_kwargs: Any
) -> Any:
    """Compile the router graph for a config (or an existing engine).

    Input is a :class:`RouterState` made by :meth:`RouterEngine.start`; the output state holds
    ``result`` or ``error`` and every attempt.

    Example::

        engine = RouterEngine("config.yaml")
        graph = build_router_graph(engine)
        out = await graph.ainvoke(engine.start("claude-sonnet", msgs, None, {}, stream=False))
    """
    engine = config if isinstance(config, RouterEngine) else RouterEngine(config, **engine_kwargs)

    # Each node run is one attempt; the node says where to go next with a Command, which
    # costs less per step than a conditional edge (the happy path is a single step).
    def attempt(state: RouterState) -> Command[str]:
        out = _attempt_sync(engine, state)
        return Command(goto=END if out.get("done") else "attempt", update=out)

    async def aattempt(state: RouterState) -> Command[str]:
        out = await _attempt_async(engine, state)
        return Command(goto=END if out.get("done") else "attempt", update=out)

    builder = StateGraph(RouterState)
    builder.add_node("attempt", _node(attempt, aattempt), destinations=("attempt", END))
    builder.add_edge(START, "attempt")
    graph = builder.compile(name="gatewaykit-router")
    graph.engine = engine  # type: ignore[attr-defined]
    return graph


def _node(func: Callable[..., Any], afunc: Callable[..., Any]) -> Any:
    """A node with sync and async bodies, as LangGraph itself wraps plain functions."""
    try:
        from langgraph._internal._runnable import RunnableCallable
    except ImportError:  # pragma: no cover - layout changed: the public (slower) equivalent
        return RunnableLambda(func, afunc=afunc, name="attempt")
    return RunnableCallable(func, afunc, name="attempt", trace=False)


# ---------------------------------------------------------------------- helpers


def _model_id(model: Any) -> str:
    return str(
        getattr(model, "deployment_id", None)
        or getattr(model, "model_name", None)
        or getattr(model, "assistant_id", "")
    )


def _agent_model(dep: Deployment, config: GatewayConfig) -> Any:
    """The agent model of an agent deployment: A2AAgentChatModel for ``a2a/<name>`` (and
    ``a2a_agent/<name>``), RemoteAgentChatModel for ``langgraph/<assistant>``."""
    from gatewaykit.config_errors import ConfigError, ConfigProblem

    a2a = dep.provider in ("a2a", "a2a_agent")
    base = dep.api_base()
    if not base:
        what = (
            "the A2A agent's URL (its base URL or agent-card URL) as api_base, "
            "e.g. http://127.0.0.1:9999"
            if a2a
            else "the LangGraph server's URL as api_base, e.g. http://127.0.0.1:2024"
        )
        raise ConfigError(
            ConfigProblem(
                f"model_list[{dep.index}].litellm_params.api_base",
                f"agent deployment {dep.id!r} needs {what}",
            ),
            source=config.source,
        )
    key = dep.api_key()
    if a2a:
        from gatewaykit.agents.a2a import A2AAgentChatModel

        header = dep.param("api_key_header")
        return A2AAgentChatModel(
            url=base,
            agent_name=dep.upstream_model,
            api_key=SecretStr(key) if key else None,
            api_key_header=str(header) if header else "Authorization",
            timeout=dep.timeout if dep.timeout is not None else 60.0,
        )
    from gatewaykit.agents.remote import RemoteAgentChatModel

    return RemoteAgentChatModel(
        url=base,
        assistant_id=dep.upstream_model,
        api_key=SecretStr(key) if key else None,
        timeout=dep.timeout,
    )


def _replace(policy: RetryPolicy, **changes: Any) -> RetryPolicy:
    import dataclasses

    return dataclasses.replace(policy, **changes)


def _needs(messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> frozenset[str]:
    needs: set[str] = set()
    if kwargs.get("tools"):
        needs.add("tools")
    rf = kwargs.get("response_format")
    if isinstance(rf, Mapping) and rf.get("type") == "json_schema":
        needs.add("json_schema")
    for m in messages:
        if isinstance(m.content, list) and any(
            isinstance(b, Mapping) and b.get("type") in ("image_url", "image") for b in m.content
        ):
            needs.add("vision")
            break
    return frozenset(needs)


def _estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """Rough prompt size (4 characters a token, 4 tokens a message) for admission checks."""
    chars = 0
    for m in messages:
        c = m.content
        if isinstance(c, str):
            chars += len(c)
        else:
            for b in c:
                if isinstance(b, str):
                    chars += len(b)
                elif isinstance(b, Mapping) and isinstance(b.get("text"), str):
                    chars += len(b["text"])
    return chars // 4 + 4 * len(messages)


def _usage_tokens(result: ChatResult) -> int:
    if not result.generations:
        return 0
    usage = getattr(result.generations[0].message, "usage_metadata", None)
    return int(usage.get("total_tokens", 0)) if usage else 0


def _cost(dep: Deployment, result: ChatResult) -> float:
    """The gateway's reported cost when present, else the configured per-token prices."""
    if not result.generations:
        return 0.0
    msg = result.generations[0].message
    gw = (result.generations[0].generation_info or {}).get("gateway") or msg.response_metadata.get(
        "gateway"
    )
    return call_cost(
        gw.get("response_cost") if gw else None,
        getattr(msg, "usage_metadata", None),
        dep.input_cost_per_token,
        dep.output_cost_per_token,
    )
