"""RouterEngine: the router's decisions, kept apart from the graph that runs them.

:meth:`RouterEngine.decide` is the decision core: given a request's state, a view of its
group's deployments and the time, it answers :class:`~gatewaykit.routing.state.Call`,
:class:`~gatewaykit.routing.state.Sleep`, :class:`~gatewaykit.routing.state.Look` or
:class:`~gatewaykit.routing.state.Done`, and touches no network and no store. The graph's nodes
(:mod:`gatewaykit.routing.graph`) do the I/O around it: read the store, reserve, call the
deployment, record the outcome (:meth:`record_success`, :meth:`record_failure`).

When a group has nothing admissible, the order is fixed:

1. move to the fallback group the error kind selects, at once, if one remains;
2. only when none remains, wait for the earliest recovery if it is *known* (a cooldown's end, a
   window's end) and *short* (within ``max_cooldown_wait`` and the deadline);
3. otherwise stop at once with :class:`~gatewaykit.NoDeploymentAvailable`, carrying
   ``retry_after`` and a reason per deployment.

A cooled deployment gets one half-open trial at a time, and at most one from any request; while
it is in flight, other requests do not queue behind it. A retry that would have to sleep is
given up for a fallback group when one remains.

Example::

    engine = RouterEngine(GatewayConfig.from_yaml("config.yaml"))
    state = engine.start("claude-sonnet", messages, None, {}, stream=False)
    now = time.monotonic()
    decision = engine.decide(state, engine.observe(state, now), now)
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import SecretStr

from gatewaykit.chat_model import GatewayChatModel
from gatewaykit.config import Deployment, GatewayConfig, load_config
from gatewaykit.cost import REQUEST_SCOPES, Budget, BudgetManager, SpendContext
from gatewaykit.cost import call_cost as _call_cost
from gatewaykit.errors import (
    BudgetExceeded,
    ContextWindowExceeded,
    GatewayError,
    NoDeploymentAvailable,
    StreamInterrupted,
    translate,
)
from gatewaykit.routing import strategies as st
from gatewaykit.routing.health import (
    RATE_KINDS,
    CooldownPolicy,
    RetryPolicy,
    cooldown_for,
    is_available,
)
from gatewaykit.routing.redis_store import store_from_config
from gatewaykit.routing.state import (
    AttemptRecord,
    Call,
    Decision,
    Done,
    Failure,
    GroupAdmission,
    Look,
    Refusal,
    RouteRequest,
    RouterState,
    Sleep,
    estimate_tokens,
    request_needs,
)
from gatewaykit.routing.store import WINDOW_S, DeploymentState, Outcome, StateStore
from gatewaykit.routing.transport import LeanTransport

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_MAX_COOLDOWN_WAIT_S",
    "HEALTH_KINDS",
    "RouterEngine",
]

DEFAULT_DEADLINE_S = 300.0
"""Whole-request deadline (all attempts and fallbacks) when the config sets none: long enough
for a long generation, short enough that a black-hole upstream cannot hold a caller for ten
minutes."""

DEFAULT_MAX_COOLDOWN_WAIT_S = 2.0
"""Longest single wait for a recovery (a cooldown's end, a Retry-After, a window) when no
fallback remains; past it the request fails at once with ``retry_after``."""

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
"""Errors that say something about the deployment's health (others are the caller's doing)."""

# Errors no other model group can fix: the same guardrail or the caller's own budget.
_NO_FALLBACK_KINDS = frozenset({"guardrail"})
_CALLER_BUDGET_SCOPES = frozenset({"key", "team", "user", "end_user", "global", None})
_FALLBACK_KIND = {"context_window": "context_window", "content_policy": "content_policy"}
# Errors that belong to one deployment (its key, its model name, its access): another deployment
# of the same group may well succeed, so the router hops there before leaving the group.
_PER_DEPLOYMENT_KINDS = frozenset({"authentication", "not_found", "access_denied"})
_PARALLEL_POLL_S = 0.01
"""How soon a deployment at ``max_parallel_requests`` is looked at again."""


class RouterEngine:
    """The decisions behind the graph: admission, choice, retries, cooldowns, fallbacks.

    Holds no per-request state (that lives in :class:`~gatewaykit.routing.state.RouterState`)
    and no per-deployment state (that lives in the
    :class:`~gatewaykit.routing.store.StateStore`), so one engine serves any number of
    concurrent requests.

    ``timeout`` is the longest single attempt (LiteLLM's ``router_settings.timeout``; a
    deployment's own ``litellm_params.timeout`` wins); ``deadline`` bounds the whole request,
    fallbacks included (``router_settings.deadline``, default :data:`DEFAULT_DEADLINE_S`);
    ``max_cooldown_wait`` the longest wait for a recovery when no fallback remains
    (``router_settings.max_cooldown_wait``, default :data:`DEFAULT_MAX_COOLDOWN_WAIT_S`).

    Example::

        engine = RouterEngine(GatewayConfig.from_yaml("config.yaml"), deadline=60)
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
        deadline: float | None = None,
        max_cooldown_wait: float | None = None,
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
            self.retry = dataclasses.replace(self.retry, min_retry_after=float(rs.retry_after))
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
        self.timeout: float | None = _positive("timeout", timeout if timeout else rs.timeout)
        """Longest single attempt (per attempt, as in LiteLLM), or None: what is left."""
        self.deadline: float = _positive(  # type: ignore[assignment]
            "deadline", deadline or rs.deadline or DEFAULT_DEADLINE_S
        )
        wait = max_cooldown_wait if max_cooldown_wait is not None else rs.max_cooldown_wait
        self.max_cooldown_wait = float(wait if wait is not None else DEFAULT_MAX_COOLDOWN_WAIT_S)
        if self.max_cooldown_wait < 0:
            raise ValueError(f"max_cooldown_wait must be >= 0, got {self.max_cooldown_wait!r}")
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
        """The initial graph state of one request for ``alias``."""
        group = self.config.resolve_group(alias)
        self.group(group)
        now = time.monotonic()
        # Any group the request may reach (through any chain of fallbacks) may have a limit.
        tokens = estimate_tokens(messages) if self._any_needs_tokens else 0
        request = RouteRequest(
            alias=alias,
            messages=messages,
            stop=stop,
            kwargs=kwargs,
            stream=stream,
            tags=tuple(tags),
            needs=request_needs(messages, kwargs),
            input_tokens=tokens,
            started=now,
            deadline=now + (deadline_s if deadline_s is not None else self.deadline),
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
            failure=None,
            not_before=0.0,
            refused={},
        )

    # ------------------------------------------------------------------ reading the store

    def observe(self, state: RouterState, now: float) -> Mapping[str, DeploymentState]:
        """The store's view of the current group (the one read :meth:`decide` needs)."""
        return self.store.view([d.id for d in self.group(state["group"])], now)

    # ------------------------------------------------------------------ the decision core

    def decide(
        self,
        state: RouterState,
        views: Mapping[str, DeploymentState],
        now: float,
        *,
        blocked: Mapping[str, str] | None = None,
    ) -> Decision:
        """What the request does next, from its state, its group's deployments and the time.

        No I/O: ``views`` is the store's view of the current group (:meth:`observe`);
        ``blocked`` the deployments whose own budgets are spent (read from the budgets when
        not given). Updates the request's own state (retries, group, error) as it decides.
        """
        if state.get("done"):
            return Done()
        failure = state.get("failure")
        if failure is not None:
            state["failure"] = None
            after = self._after_failure(state, failure, views, now, blocked)
            if after is not None:
                return after
        not_before = state.get("not_before", 0.0)
        if not_before > now:
            return Sleep(not_before - now, "backoff")
        adm = self.admit(state, self.group(state["group"]), views, now, blocked=blocked)
        candidates = adm.candidates
        if not candidates:
            return self._nothing_admissible(state, adm, now)
        if state["tried"]:
            # A retry goes to a deployment this request has not failed on yet, when there is one.
            fresh = [d for d in candidates if d.id not in state["tried"]]
            candidates = fresh or candidates
        dep = self.strategy.pick(
            st.by_order(candidates),
            views,
            rng=self.rng,
            stream=state["request"].stream,
            input_tokens=state["request"].input_tokens,
            now=now,
        )
        return Call(dep, trial=views[dep.id].half_open)

    def _after_failure(
        self,
        state: RouterState,
        failure: Failure,
        views: Mapping[str, DeploymentState],
        now: float,
        blocked: Mapping[str, str] | None,
    ) -> Decision | None:
        """Retry in the group, move to a fallback, or stop; None: pick in the group now."""
        req = state["request"]
        if len(state["attempts"]) >= req.max_attempts or now >= req.deadline or req.delivered:
            return self._stop(state, None)
        # A buffered attempt broke mid-stream: nothing reached the caller, restart cleanly.
        kind = "upstream" if failure.kind == "stream_interrupted" else failure.kind
        group = self.group(state["group"])
        if kind in _PER_DEPLOYMENT_KINDS:
            adm = self.admit(state, group, views, now, blocked=blocked)
            if any(d.id not in state["tried"] for d in adm.candidates):
                return None  # the key/model error is this deployment's: hop to an untried one
        elif self.retry.is_retryable(kind) and state["retries"] < self.retry.retries_for(kind):
            adm = self.admit(state, group, views, now, blocked=blocked)
            if any(d.id != failure.deployment for d in adm.candidates):
                self._count_retry(state, failure, 0.0)
                return None  # another deployment takes the retry at once
            if self._fallback_target(state, kind) is None:
                # Only waiting can serve this group now: a backoff, or a recovery.
                if not any(d.id == failure.deployment for d in adm.candidates):
                    state["retries"] += 1
                    return None  # nothing admissible: wait only for a known, short recovery
                wait = self._backoff(state, failure)
                if wait is not None and now + wait < req.deadline:
                    self._count_retry(state, failure, wait)
                    if wait > 0:
                        state["not_before"] = now + wait
                        return Sleep(wait, "backoff")
                    return None
            # else: a fallback group remains; going there beats sleeping here.
        if self.fallback(state, kind):
            return Look(state["group"])
        return self._stop(state, None)

    def _backoff(self, state: RouterState, failure: Failure) -> float | None:
        """The retry's wait on the deployment that just failed, or None when it is too long."""
        if failure.retry_after is not None and failure.retry_after > self.max_cooldown_wait:
            return None  # the upstream says later than we may wait: fail fast, with retry_after
        wait = self.retry.backoff(
            state["retries"],
            retry_after=failure.retry_after,
            rng=self.rng,
            other_deployment_available=False,
        )
        return min(wait, self.max_cooldown_wait)

    def _count_retry(self, state: RouterState, failure: Failure, wait: float) -> None:
        state["retries"] += 1
        self._emit(
            "retry",
            deployment=failure.deployment,
            group=state["group"],
            kind=failure.kind,
            status=failure.status,
            sleep_s=wait,
        )

    def _nothing_admissible(self, state: RouterState, adm: GroupAdmission, now: float) -> Decision:
        """Fallback at once; else a known, short wait; else stop with ``retry_after``."""
        req = state["request"]
        kind = "context_window" if adm.context_excluded else "no_deployment"
        self._note_exhausted(state, kind, adm.reasons)
        if self.fallback(state, kind):
            return Look(state["group"])
        earliest = adm.earliest_known()
        if earliest is not None:
            wait = max(earliest - now, 0.001)
            if wait <= self.max_cooldown_wait and now + wait < req.deadline:
                return Sleep(wait, "recovery")
        return self._stop(state, None if earliest is None else max(earliest - now, 0.0))

    def _stop(self, state: RouterState, retry_after: float | None) -> Done:
        state["done"] = True
        err = state.get("error")
        if isinstance(err, NoDeploymentAvailable) and err.retry_after is None:
            err.retry_after = retry_after
        return Done()

    # ------------------------------------------------------------------ admission

    def admit(
        self,
        state: RouterState,
        deps: Sequence[Deployment],
        views: Mapping[str, DeploymentState],
        now: float,
        *,
        blocked: Mapping[str, str] | None = None,
    ) -> GroupAdmission:
        """The admission filters, in order: deployments this request condemned or already
        trialled, store refusals, cooldowns and trials in flight, tags, capabilities, context
        window, rpm/tpm/parallel headroom, target budgets. Nothing is reserved; :meth:`decide`
        picks among what is left (``gatewaykit route`` explains it)."""
        req = state["request"]
        adm = GroupAdmission()
        reasons = adm.reasons
        candidates = adm.candidates
        refused = state.get("refused") or {}
        for d in deps:
            if d.id in req.condemned:
                reasons[d.id] = "failed with its own key, model or access in this request"
                continue
            s = views[d.id]
            if d.id in req.trialled and (s.half_open or s.cooldown_until > now):
                reasons[d.id] = "its half-open trial in this request failed"
                continue
            r = refused.get(d.id)
            if r is not None and r.until > now:
                reasons[d.id] = r.reason
                adm.recoveries.append((r.until, r.known))
                continue
            ok, why = is_available(s, now)
            if not ok:
                reasons[d.id] = why
                if s.cooldown_until > now:
                    adm.recoveries.append((s.cooldown_until, True))
                else:  # a trial is in flight: its verdict, not a clock, decides
                    adm.recoveries.append((now + _PARALLEL_POLL_S, False))
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
                    s = views[d.id]
                    mp = d.max_parallel_requests
                    if mp is not None and s.in_flight >= mp:
                        reasons[d.id] = f"{mp} calls in flight"
                        adm.recoveries.append((now + _PARALLEL_POLL_S, True))
                    else:
                        reasons[d.id] = "no rpm/tpm headroom in this window"
                        adm.recoveries.append((s.window_start + WINDOW_S, True))
            candidates = kept
        if candidates and self._target_budgets:
            if blocked is None:
                blocked = self.blocked_by_budgets(req, candidates)
            kept = []
            for d in candidates:
                spent = blocked.get(d.id)
                if spent:
                    reasons[d.id] = spent
                else:
                    kept.append(d)
            candidates = kept
        adm.candidates = candidates
        return adm

    def blocked_by_budgets(self, req: RouteRequest, deps: Sequence[Deployment]) -> dict[str, str]:
        """Deployments whose own (deployment, provider, group) budget is spent, with why."""
        out: dict[str, str] = {}
        if self.budgets is None:
            return out
        for d in deps:
            spent = self.budgets.blocked(self.spend_context(req, d))
            if spent:
                out[d.id] = spent
        return out

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
        tokens = req.input_tokens or estimate_tokens(req.messages)
        max_out = req.kwargs.get("max_tokens") or 0
        return tokens * (dep.input_cost_per_token or 0.0) + int(max_out) * (
            dep.output_cost_per_token or 0.0
        )

    # ------------------------------------------------------------------ around the call (I/O)

    def reserve(self, state: RouterState, call: Call, now: float) -> Call | None:
        """Reserve budget and store headroom for ``call``; the call to make (``trial`` as the
        store saw it), or None when refused (the refusal is noted for :meth:`decide`)."""
        req = state["request"]
        dep = call.deployment
        reservation = None
        if self.budgets:
            try:
                reservation = self.budgets.reserve(
                    self.spend_context(req, dep), self.estimate_cost(req, dep)
                )
            except BudgetExceeded as exc:
                if exc.scope in REQUEST_SCOPES:
                    state["error"] = exc  # the caller's own budget: nothing else can help
                    state["done"] = True
                else:
                    state["refused"][dep.id] = Refusal(str(exc), req.deadline, False)
                return None
        adm = self.store.acquire(
            dep.id,
            now,
            rpm=dep.rpm,
            tpm=dep.tpm,
            tokens=req.input_tokens,
            max_parallel=dep.max_parallel_requests,
            trial=call.trial,
        )
        if not adm.ok:
            if reservation is not None:
                self.budgets.settle(reservation, 0.0)  # type: ignore[union-attr]
            state["refused"][dep.id] = Refusal(adm.reason, adm.retry_at, adm.kind != "trial")
            return None
        state["reservation"] = reservation
        trial = call.trial or adm.trial
        if trial:
            req.trialled.add(dep.id)
        return call if trial == call.trial else Call(dep, trial=trial)

    def call_kwargs(self, req: RouteRequest, dep: Deployment, now: float) -> dict[str, Any]:
        """The call's keyword arguments, its timeout set per attempt: the caller's, else the
        deployment's, else ``router_settings.timeout``, never past the request's deadline."""
        kwargs = req.kwargs
        remaining = max(0.001, req.deadline - now)
        timeout = kwargs.get("timeout")
        if not (isinstance(timeout, int | float) and timeout > 0):
            timeout = dep.timeout or self.timeout
        if timeout is None or remaining < timeout:
            timeout = remaining
        if kwargs.get("timeout") != timeout:
            kwargs = {**kwargs, "timeout": timeout}
        return kwargs

    def settle(self, state: RouterState, cost: float) -> None:
        reservation = state.get("reservation")
        if reservation is not None and self.budgets is not None:
            self.budgets.settle(reservation, cost)
            state["reservation"] = None

    def record_success(
        self, state: RouterState, call: Call, result: ChatResult, started: float
    ) -> None:
        """The call answered: settle, tell the store, and finish the request."""
        now = time.monotonic()
        dep = call.deployment
        req = state["request"]
        latency = now - started
        cost = _cost(dep, result)
        self.settle(state, cost)
        self.store.release(
            dep.id,
            now,
            Outcome(
                ok=True,
                latency_s=latency,
                ttft_s=req.attempt_ttft if req.stream else None,
                tokens=_usage_tokens(result),
                reserved_tokens=req.input_tokens,
                cost=cost,
            ),
        )
        exhausted_for = _exhausted_rate_limit(result)
        if exhausted_for and len(self.group(state["group"])) > 1:
            # The deployment said it has no requests (or tokens) left until a reset: the next
            # call there would be a 429, so send it to a sibling until then.
            seconds = min(exhausted_for, self.cooldown.retry_after_cap)
            self.store.cool_down(
                dep.id, now + seconds, "rate_limited (0 left)", trial=False, now=now
            )
        state["attempts"].append(
            AttemptRecord(dep.id, state["group"], True, latency * 1000, trial=call.trial)
        )
        state["result"] = result
        state["served"] = dep
        state["done"] = True

    def record_failure(
        self, state: RouterState, call: Call, exc: BaseException, started: float
    ) -> None:
        """The call failed: classify, tell the store, cool the deployment down if its health
        says so, and leave the :class:`~gatewaykit.routing.state.Failure` for :meth:`decide`.
        Anything that is not a gateway failure (a bug, a cancelled task) is re-raised."""
        now = time.monotonic()
        dep = call.deployment
        err = translate(exc, deployment=dep.id, model_group=dep.model_name)
        if not isinstance(err, GatewayError):
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
            self._cool(state, call, after, err, now)
        state["attempts"].append(
            AttemptRecord(
                dep.id,
                state["group"],
                False,
                (now - started) * 1000,
                kind=kind,
                status=err.status,
                error=str(err)[:300],
                trial=call.trial,
            )
        )
        state["error"] = err
        if dep.id not in state["tried"]:
            state["tried"].append(dep.id)
        if kind in _PER_DEPLOYMENT_KINDS:
            req.condemned.add(dep.id)
        state["failure"] = Failure(dep.id, kind, err.status, err.retry_after)

    def _cool(
        self,
        state: RouterState,
        call: Call,
        after: DeploymentState,
        err: GatewayError,
        now: float,
    ) -> None:
        dep = call.deployment
        kind = err.kind
        seconds = cooldown_for(
            self.cooldown,
            after,
            kind=kind,
            status=err.status,
            retry_after=err.retry_after,
            group_size=len(self.group(state["group"])),
            deployment_cooldown=dep.cooldown_time,
            now=now,
            trial=call.trial,
        )
        if not seconds:
            return
        rate = kind in RATE_KINDS or err.status == 429
        # A rate limit is a healthy deployment that is full: no trial, full traffic after it.
        self.store.cool_down(
            dep.id, now + seconds, f"{kind} {err.status or ''}".strip(), trial=not rate, now=now
        )
        self._emit(
            "cooldown",
            deployment=dep.id,
            group=dep.model_name,
            kind=kind,
            status=err.status,
            seconds=seconds,
        )

    def _emit(self, event: str, **info: Any) -> None:
        for listener in self.listeners:
            listener(event, info)

    # ------------------------------------------------------------------ fallbacks

    def _fallback_target(self, state: RouterState, kind: str) -> str | None:
        """The group a fallback for this error kind would move to, or None."""
        req = state["request"]
        err = state.get("error")
        if not req.fallbacks_allowed or kind in _NO_FALLBACK_KINDS:
            return None
        if kind == "budget_exceeded" and getattr(err, "scope", None) in _CALLER_BUDGET_SCOPES:
            return None
        if len(state["visited"]) - 1 >= self.config.router.max_fallbacks:
            return None
        chain_kind = _FALLBACK_KIND.get(kind, "general")
        for target in self.config.fallback_chain(state["group"], chain_kind):  # type: ignore[arg-type]
            group = self.config.resolve_group(target)
            if group not in state["visited"]:  # no loops: a group is entered once per request
                return group
        return None

    def fallback(self, state: RouterState, kind: str) -> bool:
        """Move to the next fallback group for this error kind; False when there is none."""
        group = self._fallback_target(state, kind)
        if group is None:
            return False
        self._emit("fallback", from_group=state["group"], to_group=group, kind=kind)
        state["visited"].append(group)
        state["group"] = group
        state["retries"] = 0
        state["tried"] = []
        state["not_before"] = 0.0
        state["refused"] = {}
        return True

    def _note_exhausted(self, state: RouterState, kind: str, reasons: dict[str, str]) -> None:
        """No deployment of the current group can take the request right now."""
        req = state["request"]
        err = state.get("error")
        if kind == "context_window":
            state["error"] = ContextWindowExceeded(
                f"no deployment of {state['group']!r} has a context window large enough for "
                f"~{req.input_tokens} input tokens",
                model_group=state["group"],
            )
        elif err is None:
            state["error"] = NoDeploymentAvailable(
                f"no deployment of {state['group']!r} is available: "
                + "; ".join(f"{k}: {v}" for k, v in reasons.items()),
                model_group=state["group"],
                reasons=reasons,
            )
        elif isinstance(err, NoDeploymentAvailable) and reasons:
            err.reasons.update(reasons)

    # ------------------------------------------------------------------ how it ended

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


# ---------------------------------------------------------------------- helpers


def _positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return value


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


def _gateway_info(result: ChatResult) -> Mapping[str, Any] | None:
    if not result.generations:
        return None
    gen = result.generations[0]
    info = (gen.generation_info or {}).get("gateway") or gen.message.response_metadata.get(
        "gateway"
    )
    return info if isinstance(info, Mapping) else None


def _exhausted_rate_limit(result: ChatResult) -> float | None:
    """Seconds until the deployment has requests (or tokens) again, when its answer said it
    has none left, else None."""
    info = _gateway_info(result)
    limits = info.get("rate_limit") if info else None
    if not isinstance(limits, Mapping):
        return None
    waits = [
        float(limits[reset])
        for left, reset in (
            ("remaining_requests", "reset_requests_s"),
            ("remaining_tokens", "reset_tokens_s"),
        )
        if limits.get(left) == 0 and isinstance(limits.get(reset), int | float)
    ]
    longest = max(waits, default=0.0)
    return longest if longest > 0 else None


def _usage_tokens(result: ChatResult) -> int:
    if not result.generations:
        return 0
    usage = getattr(result.generations[0].message, "usage_metadata", None)
    return int(usage.get("total_tokens", 0)) if usage else 0


def _cost(dep: Deployment, result: ChatResult) -> float:
    """The gateway's reported cost when present, else the configured per-token prices."""
    if not result.generations:
        return 0.0
    gw = _gateway_info(result)
    return _call_cost(
        gw.get("response_cost") if gw else None,
        getattr(result.generations[0].message, "usage_metadata", None),
        dep.input_cost_per_token,
        dep.output_cost_per_token,
    )
