"""Around each call to a deployment: reserve, time it out, and record how it ended.

The I/O half of the router, beside the engine's I/O-free decisions
(:meth:`~gatewaykit.routing.engine.RouterEngine.decide`): budget and store reservations before a
call, the per-attempt timeout, and after it the store's counters, the cooldown the health
policy asks for, and the :class:`~gatewaykit.routing.state.Failure` that the next decision
reads. The graph's nodes call these in order::

    call = reserve(engine, state, decision, now)
    kwargs = call_kwargs(engine, state["request"], call.deployment, now)
    ...  # the call itself
    record_success(engine, state, call, result, started)  # or record_failure(...)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.outputs import ChatResult

from gatewaykit.config import Deployment
from gatewaykit.cost import REQUEST_SCOPES
from gatewaykit.cost import call_cost as _call_cost
from gatewaykit.errors import BudgetExceeded, GatewayError, StreamInterrupted, translate
from gatewaykit.routing.health import RATE_KINDS, cooldown_for
from gatewaykit.routing.state import (
    AttemptRecord,
    Call,
    Failure,
    Refusal,
    RouteRequest,
    RouterState,
)
from gatewaykit.routing.store import DeploymentState, Outcome

if TYPE_CHECKING:
    from gatewaykit.routing.engine import RouterEngine

__all__ = [
    "HEALTH_KINDS",
    "call_kwargs",
    "record_failure",
    "record_success",
    "reserve",
    "settle",
]

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

PER_DEPLOYMENT_KINDS = frozenset({"authentication", "not_found", "access_denied"})
"""Errors that belong to one deployment (its key, its model name, its access): another
deployment of the same group may well succeed, so the router hops there before leaving."""


def reserve(engine: RouterEngine, state: RouterState, call: Call, now: float) -> Call | None:
    """Reserve budget and store headroom for ``call``; the call to make (``trial`` as the
    store saw it), or None when refused (the refusal is noted for :meth:`decide`)."""
    req = state["request"]
    dep = call.deployment
    reservation = None
    if engine.budgets:
        try:
            reservation = engine.budgets.reserve(
                engine.spend_context(req, dep), engine.estimate_cost(req, dep)
            )
        except BudgetExceeded as exc:
            if exc.scope in REQUEST_SCOPES:
                state["error"] = exc  # the caller's own budget: nothing else can help
                state["done"] = True
            else:
                state["refused"][dep.id] = Refusal(str(exc), req.deadline, False)
            return None
    adm = engine.store.acquire(
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
            engine.budgets.settle(reservation, 0.0)  # type: ignore[union-attr]
        state["refused"][dep.id] = Refusal(adm.reason, adm.retry_at, adm.kind != "trial")
        return None
    state["reservation"] = reservation
    trial = call.trial or adm.trial
    if trial:
        req.trialled.add(dep.id)
    return call if trial == call.trial else Call(dep, trial=trial)


def call_kwargs(
    engine: RouterEngine, req: RouteRequest, dep: Deployment, now: float
) -> dict[str, Any]:
    """The call's keyword arguments, its timeout set per attempt: the caller's, else the
    deployment's, else ``router_settings.timeout``, never past the request's deadline."""
    kwargs = req.kwargs
    remaining = max(0.001, req.deadline - now)
    timeout = kwargs.get("timeout")
    if not (isinstance(timeout, int | float) and timeout > 0):
        timeout = dep.timeout or engine.timeout
    if timeout is None or remaining < timeout:
        timeout = remaining
    if kwargs.get("timeout") != timeout:
        kwargs = {**kwargs, "timeout": timeout}
    return kwargs


def settle(engine: RouterEngine, state: RouterState, cost: float) -> None:
    reservation = state.get("reservation")
    if reservation is not None and engine.budgets is not None:
        engine.budgets.settle(reservation, cost)
        state["reservation"] = None


def record_success(
    engine: RouterEngine,
    state: RouterState,
    call: Call,
    result: ChatResult,
    started: float,
    now: float | None = None,
) -> None:
    """The call answered: settle, tell the store, and finish the request (``now``: when it
    answered, default ``time.monotonic()``)."""
    now = time.monotonic() if now is None else now
    dep = call.deployment
    req = state["request"]
    latency = now - started
    gateway = _gateway_info(result)
    cost = _cost(dep, result, gateway)
    settle(engine, state, cost)
    engine.store.release(
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
    exhausted_for = _exhausted_rate_limit(gateway)
    if exhausted_for and len(engine.group(state["group"])) > 1:
        # The deployment said it has no requests (or tokens) left until a reset: the next
        # call there would be a 429, so send it to a sibling until then.
        seconds = min(exhausted_for, engine.cooldown.retry_after_cap)
        engine.store.cool_down(dep.id, now + seconds, "rate_limited (0 left)", trial=False, now=now)
    state["attempts"].append(
        AttemptRecord(dep.id, state["group"], True, latency * 1000, trial=call.trial)
    )
    state["result"] = result
    state["served"] = dep
    state["cost"] = cost
    state["done"] = True


def record_failure(
    engine: RouterEngine,
    state: RouterState,
    call: Call,
    exc: BaseException,
    started: float,
    now: float | None = None,
) -> None:
    """The call failed: classify, tell the store, cool the deployment down if its health
    says so, and leave the :class:`~gatewaykit.routing.state.Failure` for
    :meth:`~gatewaykit.routing.engine.RouterEngine.decide` (``now``: when it failed, default
    ``time.monotonic()``). Anything that is not a gateway failure (a bug, a cancelled task) is
    re-raised."""
    now = time.monotonic() if now is None else now
    dep = call.deployment
    err = translate(exc, deployment=dep.id, model_group=dep.model_name)
    if not isinstance(err, GatewayError):
        settle(engine, state, 0.0)
        engine.store.release(dep.id, now, Outcome(ok=False, counts_as_failure=False))
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
    retryable = bool(err.is_retryable)
    if dep.param("retry_agent_runs") and kind == "agent":
        # The deployment's agent is safe to run again (idempotent tools): a failed run is
        # then an upstream failure like any other.
        kind, retryable = "upstream", True
    settle(engine, state, 0.0)
    counts = kind in HEALTH_KINDS
    after = engine.store.release(
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
        _cool(engine, state, call, after, err, kind, now)
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
    if kind in PER_DEPLOYMENT_KINDS:
        req.condemned.add(dep.id)
    elif kind in RATE_KINDS or err.status == 429:
        req.limited.add(dep.id)
    state["failure"] = Failure(dep.id, kind, err.status, err.retry_after, retryable)


def _cool(
    engine: RouterEngine,
    state: RouterState,
    call: Call,
    after: DeploymentState,
    err: GatewayError,
    kind: str,
    now: float,
) -> None:
    dep = call.deployment
    seconds = cooldown_for(
        engine.cooldown,
        after,
        kind=kind,
        status=err.status,
        retry_after=err.retry_after,
        group_size=len(engine.group(state["group"])),
        deployment_cooldown=dep.cooldown_time,
        now=now,
        trial=call.trial,
    )
    if not seconds:
        return
    rate = kind in RATE_KINDS or err.status == 429
    # A rate limit is a healthy deployment that is full: no trial, full traffic after it.
    engine.store.cool_down(
        dep.id, now + seconds, f"{kind} {err.status or ''}".strip(), trial=not rate, now=now
    )
    engine.emit(
        "cooldown",
        deployment=dep.id,
        group=dep.model_name,
        kind=kind,
        status=err.status,
        seconds=seconds,
    )


def _gateway_info(result: ChatResult) -> Mapping[str, Any] | None:
    if not result.generations:
        return None
    gen = result.generations[0]
    info = (gen.generation_info or {}).get("gateway") or gen.message.response_metadata.get(
        "gateway"
    )
    return info if isinstance(info, Mapping) else None


def _exhausted_rate_limit(info: Mapping[str, Any] | None) -> float | None:
    """Seconds until the deployment has requests (or tokens) again, when its answer (the
    gateway's record of it) said it has none left, else None."""
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


def _cost(dep: Deployment, result: ChatResult, gw: Mapping[str, Any] | None) -> float:
    """The gateway's reported cost when present, else the configured per-token prices."""
    if not result.generations:
        return 0.0
    return _call_cost(
        gw.get("response_cost") if gw else None,
        getattr(result.generations[0].message, "usage_metadata", None),
        dep.input_cost_per_token,
        dep.output_cost_per_token,
    )
