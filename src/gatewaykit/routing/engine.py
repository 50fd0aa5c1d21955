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

from gatewaykit.config import Deployment, GatewayConfig, load_config
from gatewaykit.cost import REQUEST_SCOPES, Budget, BudgetManager, SpendContext
from gatewaykit.errors import ContextWindowExceeded, GatewayError, NoDeploymentAvailable
from gatewaykit.routing import strategies as st
from gatewaykit.routing.deployments import deployment_model
from gatewaykit.routing.health import CooldownPolicy, RetryPolicy, is_available
from gatewaykit.routing.outcomes import PER_DEPLOYMENT_KINDS
from gatewaykit.routing.redis_store import store_from_config
from gatewaykit.routing.state import (
    Call,
    Decision,
    Done,
    Failure,
    GroupAdmission,
    Look,
    Recovery,
    RouteRequest,
    RouterState,
    Sleep,
    estimate_tokens,
    request_needs,
)
from gatewaykit.routing.store import WINDOW_S, DeploymentState, StateStore
from gatewaykit.routing.transport import LeanTransport

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_MAX_COOLDOWN_WAIT_S",
    "RouterEngine",
]

DEFAULT_DEADLINE_S = 300.0
"""Whole-request deadline (all attempts and fallbacks) when the config sets none: long enough
for a long generation, short enough that a black-hole upstream cannot hold a caller for ten
minutes."""

DEFAULT_MAX_COOLDOWN_WAIT_S = 2.0
"""Longest single wait for a recovery (a cooldown's end, a Retry-After, a window) when no
fallback remains; past it the request fails at once with ``retry_after``."""

# Errors no other model group can fix: the same guardrail or the caller's own budget.
_NO_FALLBACK_KINDS = frozenset({"guardrail"})
_CALLER_BUDGET_SCOPES = frozenset({"key", "team", "user", "end_user", "global", None})
_FALLBACK_KIND = {"context_window": "context_window", "content_policy": "content_policy"}
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
        self._trial_waiters: dict[str, tuple[float, int]] = {}
        """Deployment -> when the one request waiting for its cooldown's end wakes, and which."""
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
        """The deployment's chat model, built on first use (a missing env var fails only then);
        see :func:`~gatewaykit.routing.deployments.deployment_model`."""
        model = self._models.get(dep.id)
        if model is None:
            model = self._models[dep.id] = deployment_model(dep, self.config, self.model_overrides)
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
        max_cooldown_wait: float | None = None,
        on_chunk: Callable[[Any], None] | None = None,
        buffer_attempts: bool = False,
    ) -> RouterState:
        """The initial graph state of one request for ``alias`` (``deadline_s`` and
        ``max_cooldown_wait`` override the engine's for this request)."""
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
            max_wait=self.max_cooldown_wait if max_cooldown_wait is None else max_cooldown_wait,
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
            pending=None,
        )

    def first_step(self, state: RouterState) -> None:
        """Take the request's first decision before any graph runs: when nothing can serve it
        (a total outage, no fallback left), raise its typed error at once; else keep the
        decision for the graph's first step (``state["pending"]``), so it is not taken twice.
        """
        now = time.monotonic()
        decision = self.decide(state, self.observe(state, now), now)
        if isinstance(decision, Done):
            raise self.finish_error(state)
        state["pending"] = decision

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
        if kind in PER_DEPLOYMENT_KINDS:
            adm = self.admit(state, group, views, now, blocked=blocked)
            if any(d.id not in state["tried"] for d in adm.candidates):
                return None  # the key/model error is this deployment's: hop to an untried one
        elif (
            failure.retryable
            and self.retry.is_retryable(kind)
            and state["retries"] < self.retry.retries_for(kind)
        ):
            adm = self.admit(state, group, views, now, blocked=blocked)
            # After a rate limit, a sibling that already answered this request with one is
            # known to be limited too: the retry does not hop there.
            skip = req.limited if failure.deployment in req.limited else ()
            if any(d.id != failure.deployment and d.id not in skip for d in adm.candidates):
                self._count_retry(state, failure, 0.0)
                return None  # another deployment takes the retry at once
            if self._fallback_target(state, kind) is None:
                # Only waiting can serve this group now: a backoff, or a recovery.
                if not any(d.id == failure.deployment for d in adm.candidates):
                    # Nothing fresh is admissible: call what has recovered, or wait only for a
                    # known, short recovery. Neither is a retry: a rate limit that says "back
                    # in 1 s" is come back to then, within the attempt budget and the deadline.
                    return None
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
        max_wait = state["request"].max_wait
        if failure.retry_after is not None and failure.retry_after > max_wait:
            return None  # the upstream says later than we may wait: fail fast, with retry_after
        wait = self.retry.backoff(
            state["retries"],
            retry_after=failure.retry_after,
            rng=self.rng,
            other_deployment_available=False,
        )
        return min(wait, max_wait)

    def _count_retry(self, state: RouterState, failure: Failure, wait: float) -> None:
        state["retries"] += 1
        self.emit(
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
        # The end of a health cooldown lets one trial through: worth one waiter, not a queue.
        worth = [
            r
            for r in adm.recoveries
            if r.kind == "known" or (r.kind == "trial" and self._may_wait(r, req, now))
        ]
        best = min(worth, key=lambda r: r.at, default=None)
        if best is not None:
            wait = max(best.at - now, 0.001)
            if wait <= req.max_wait and now + wait < req.deadline:
                if best.kind == "trial":
                    self._trial_waiters[best.deployment] = (best.at, id(req))
                return Sleep(wait, "recovery")
        back = adm.earliest("known", "trial")
        return self._stop(state, None if back is None else max(back.at - now, 0.0))

    def _may_wait(self, recovery: Recovery, req: RouteRequest, now: float) -> bool:
        """Whether this request may wait for a health cooldown's end: no other request is
        waiting for it already (this one may, again, after waking a little early)."""
        at, owner = self._trial_waiters.get(recovery.deployment, (0.0, 0))
        return at < now or owner == id(req)

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
                adm.recoveries.append(Recovery(r.until, "known" if r.known else "unknown", d.id))
                continue
            ok, why = is_available(s, now)
            if not ok:
                reasons[d.id] = why
                if s.cooldown_until > now:
                    # A health cooldown ends in a single trial; a rate limit's in full traffic.
                    end = Recovery(s.cooldown_until, "trial" if s.half_open else "known", d.id)
                    adm.recoveries.append(end)
                else:  # a trial is in flight: its verdict, not a clock, decides
                    adm.recoveries.append(Recovery(now + _PARALLEL_POLL_S, "unknown", d.id))
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
                        adm.recoveries.append(Recovery(now + _PARALLEL_POLL_S, "known", d.id))
                    else:
                        reasons[d.id] = "no rpm/tpm headroom in this window"
                        adm.recoveries.append(Recovery(s.window_start + WINDOW_S, "known", d.id))
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

    def emit(self, event: str, **info: Any) -> None:
        """Tell the :attr:`listeners` about a retry, cooldown or fallback."""
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
        self.emit("fallback", from_group=state["group"], to_group=group, kind=kind)
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
            meta["cost"] = state.get("cost", 0.0)
        return meta


# ---------------------------------------------------------------------- helpers


def _positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return value
