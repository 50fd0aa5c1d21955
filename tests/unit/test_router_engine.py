"""The router's decision core, without a network: RouterEngine.decide driven on a virtual clock.

Each example builds 1-3 model groups of 1-3 deployments with a random fallback graph, puts each
deployment in a random health state (healthy, cooling for a while, half-open with or without a
trial in flight), scripts how each call would end (an answer, a 500, a 429 with or without
Retry-After), and runs one request the way the graph's node does: observe, decide, reserve,
"call", record the outcome. Time is a number the test moves: a ``Sleep`` advances it, a call
takes 1 ms. The properties are the routing rules of docs/router.md:

- never a sleep while a fallback group remains;
- never a sleep longer than ``max_cooldown_wait``, nor one that ends past the deadline;
- at most one half-open trial per cooled deployment per request;
- a request whose every group is cooling for longer than ``max_cooldown_wait`` ends at once,
  without calling anything, with ``NoDeploymentAvailable(retry_after=...)``;
- the loop always ends, within the attempt budget.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as hs
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from gatewaykit import CooldownPolicy, GatewayConfig, NoDeploymentAvailable, RetryPolicy
from gatewaykit.errors import RateLimited, UpstreamError
from gatewaykit.routing import outcomes
from gatewaykit.routing.engine import RouterEngine
from gatewaykit.routing.state import Call, Done, Look, RouterState, Sleep
from gatewaykit.routing.store import InMemoryStore

T0 = time.monotonic() + 100.0
"""The virtual clock starts ahead of the real one, so deadlines set from it stay ahead."""
CALL_S = 0.001


@dataclass(frozen=True)
class DepSpec:
    id: str
    group: str
    outcome: str
    """How every call ends: ok, server (500), limited (429), limited_ra (429, Retry-After)."""
    health: str
    """cooling, half_open, trial_busy or healthy."""
    cooling_for: float = 0.0


@dataclass(frozen=True)
class World:
    deps: tuple[DepSpec, ...]
    fallbacks: Mapping[str, tuple[str, ...]]
    num_retries: int
    max_wait: float
    deadline: float
    retry_after: float
    start: str = "g0"

    @property
    def groups(self) -> dict[str, list[DepSpec]]:
        out: dict[str, list[DepSpec]] = {}
        for d in self.deps:
            out.setdefault(d.group, []).append(d)
        return out

    def config(self) -> GatewayConfig:
        return GatewayConfig.from_dict(
            {
                "model_list": [
                    {
                        "model_name": d.group,
                        "litellm_params": {
                            "model": f"openai/{d.id}",
                            "api_base": "http://127.0.0.1:9",
                            "api_key": "sk-test",
                        },
                        "model_info": {"id": d.id},
                    }
                    for d in self.deps
                ],
                "router_settings": {
                    "fallbacks": [{g: list(t)} for g, t in self.fallbacks.items()],
                },
            }
        )


@dataclass
class Trace:
    calls: list[Call] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    steps: int = 0
    end: float = T0


@hs.composite
def worlds(draw: hs.DrawFn) -> World:
    n_groups = draw(hs.integers(1, 3))
    names = [f"g{i}" for i in range(n_groups)]
    deps: list[DepSpec] = []
    for g in names:
        for j in range(draw(hs.integers(1, 3))):
            health = draw(hs.sampled_from(["healthy", "cooling", "half_open", "trial_busy"]))
            deps.append(
                DepSpec(
                    id=f"{g}d{j}",
                    group=g,
                    outcome=draw(hs.sampled_from(["ok", "server", "limited", "limited_ra"])),
                    health=health,
                    cooling_for=draw(hs.sampled_from([0.3, 1.5, 5.0, 60.0])),
                )
            )
    fallbacks: dict[str, tuple[str, ...]] = {}
    for g in names:
        others = [x for x in names if x != g]
        if others and draw(hs.booleans()):
            fallbacks[g] = tuple(draw(hs.lists(hs.sampled_from(others), min_size=1, unique=True)))
    return World(
        deps=tuple(deps),
        fallbacks=fallbacks,
        num_retries=draw(hs.integers(0, 3)),
        max_wait=draw(hs.sampled_from([0.0, 0.5, 2.0])),
        deadline=draw(hs.sampled_from([0.5, 3.0, 300.0])),
        retry_after=draw(hs.sampled_from([0.2, 1.0, 10.0])),
    )


def engine_for(world: World) -> RouterEngine:
    engine = RouterEngine(
        world.config(),
        store=InMemoryStore(),
        retry=RetryPolicy(num_retries=world.num_retries, initial_backoff=0.1, max_backoff=1.0),
        cooldown=CooldownPolicy(cooldown_time=5.0),
        max_cooldown_wait=world.max_wait,
        deadline=world.deadline,
        seed=0,
    )
    store = engine.store
    assert isinstance(store, InMemoryStore)
    for d in world.deps:
        if d.health == "cooling":
            store.cool_down(d.id, T0 + d.cooling_for, "upstream 500", now=T0 - 1)
        elif d.health in ("half_open", "trial_busy"):
            store.cool_down(d.id, T0 - 0.1, "upstream 500", now=T0 - 1)
            if d.health == "trial_busy":
                assert store.acquire(d.id, T0 - 0.05).trial  # another request's trial
    return engine


def answer() -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])


def failure(spec: DepSpec, world: World) -> Exception:
    if spec.outcome == "server":
        return UpstreamError("boom", status=500)
    ra = world.retry_after if spec.outcome == "limited_ra" else None
    return RateLimited("slow down", status=429, retry_after=ra)


def run(world: World, engine: RouterEngine) -> tuple[RouterState, Trace]:
    """One request through the decision core, as the graph's node runs it, on virtual time."""
    if currently_in_test_context():
        note(repr(world))
    state = engine.start(
        world.start, [HumanMessage(content="hi")], None, {}, stream=False, deadline_s=world.deadline
    )
    # The request's clock starts at T0, whatever time.monotonic() said.
    req = state["request"]
    req.deadline = T0 + world.deadline
    req.started = T0
    specs = {d.id: d for d in world.deps}
    trace = Trace()
    now = T0
    while True:
        trace.steps += 1
        assert trace.steps < 200, "the decision loop does not end"
        views = engine.observe(state, now)
        decision = engine.decide(state, views, now)
        if isinstance(decision, Done):
            break
        if isinstance(decision, Look):
            continue
        if isinstance(decision, Sleep):
            check_sleep(engine, state, decision, now)
            trace.sleeps.append(decision.seconds)
            now += decision.seconds
            continue
        assert isinstance(decision, Call)
        call = outcomes.reserve(engine, state, decision, now)
        if call is None:
            continue
        trace.calls.append(call)
        started, now = now, now + CALL_S
        spec = specs[call.deployment.id]
        if spec.outcome == "ok":
            outcomes.record_success(engine, state, call, answer(), started, now=now)
        else:
            outcomes.record_failure(engine, state, call, failure(spec, world), started, now=now)
    trace.end = now
    return state, trace


def check_sleep(engine: RouterEngine, state: RouterState, sleep: Sleep, now: float) -> None:
    req = state["request"]
    assert engine._fallback_target(state, "no_deployment") is None, (
        f"slept {sleep.seconds:.3f}s in {state['group']} although a fallback group remains"
    )
    assert 0 < sleep.seconds <= req.max_wait + 1e-9, f"slept {sleep.seconds}s > max wait"
    assert now + sleep.seconds < req.deadline, "slept past the deadline"


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(world=worlds())
def test_the_decision_rules_hold_in_any_weather(world: World) -> None:
    engine = engine_for(world)
    state, trace = run(world, engine)
    # At most one trial per cooled deployment per request.
    trials = Counter(c.deployment.id for c in trace.calls if c.trial)
    assert all(n == 1 for n in trials.values()), trials
    # Within the attempt budget; every call is recorded.
    assert len(trace.calls) == len(state["attempts"]) <= engine.max_attempts
    # An answer, or a typed error: never neither.
    if state.get("result") is None:
        assert state.get("error") is not None
        assert not any(a.ok for a in state["attempts"])
    else:
        assert state["attempts"][-1].ok
    # A deployment that another request holds the trial of, or that still cools beyond the
    # wait it may be given, is never called.
    for c in trace.calls:
        spec = next(d for d in world.deps if d.id == c.deployment.id)
        assert spec.health != "trial_busy", f"{spec.id}: queued behind another's trial"


@PROPERTY
@given(world=worlds())
def test_a_total_outage_fails_at_once_with_retry_after(world: World) -> None:
    """Every deployment cooling for longer than the request may wait: no call, no sleep, a
    NoDeploymentAvailable whose retry_after is the earliest recovery."""
    longest = max(world.max_wait, 0.0) + 1.0
    deps = tuple(
        DepSpec(d.id, d.group, "server", "cooling", max(d.cooling_for, longest)) for d in world.deps
    )
    world = World(deps, world.fallbacks, world.num_retries, world.max_wait, 300.0, 1.0)
    state, trace = run(world, engine_for(world))
    assert trace.calls == [] and trace.sleeps == []
    err = state["error"]
    assert isinstance(err, NoDeploymentAvailable)
    reachable = {world.start, *state["visited"]}
    earliest = min(d.cooling_for for d in world.deps if d.group == state["group"])
    assert err.retry_after == pytest.approx(earliest, abs=1e-6)
    assert set(err.reasons) >= {d.id for d in world.deps if d.group in reachable}


def test_a_dead_primary_falls_back_without_waiting() -> None:
    """The primary's only deployment cools for 5 s: the request goes to the fallback at once."""
    world = World(
        deps=(
            DepSpec("g0d0", "g0", "server", "cooling", 5.0),
            DepSpec("g1d0", "g1", "ok", "healthy"),
        ),
        fallbacks={"g0": ("g1",)},
        num_retries=2,
        max_wait=2.0,
        deadline=300.0,
        retry_after=1.0,
    )
    state, trace = run(world, engine_for(world))
    assert [c.deployment.id for c in trace.calls] == ["g1d0"]
    assert trace.sleeps == [] and state["visited"] == ["g0", "g1"]


def test_a_short_known_recovery_is_waited_for_when_nothing_else_remains() -> None:
    world = World(
        deps=(DepSpec("g0d0", "g0", "ok", "cooling", 0.3),),
        fallbacks={},
        num_retries=0,
        max_wait=2.0,
        deadline=300.0,
        retry_after=1.0,
    )
    state, trace = run(world, engine_for(world))
    assert trace.sleeps == [pytest.approx(0.3)]
    assert [c.trial for c in trace.calls] == [True] and state["result"] is not None


def test_a_trial_in_flight_elsewhere_is_not_queued_behind() -> None:
    world = World(
        deps=(DepSpec("g0d0", "g0", "ok", "trial_busy"),),
        fallbacks={},
        num_retries=2,
        max_wait=2.0,
        deadline=300.0,
        retry_after=1.0,
    )
    state, trace = run(world, engine_for(world))
    assert trace.calls == [] and trace.sleeps == []
    err = state["error"]
    assert isinstance(err, NoDeploymentAvailable) and err.retry_after is None
    assert "trial" in err.reasons["g0d0"]


def test_a_failed_trial_is_the_requests_only_call_there() -> None:
    """A half-open deployment that fails its trial is not called again by the same request,
    whatever its retry budget: it cools for twice as long, and the request fails fast."""
    world = World(
        deps=(DepSpec("g0d0", "g0", "server", "half_open"),),
        fallbacks={},
        num_retries=3,
        max_wait=60.0,
        deadline=300.0,
        retry_after=1.0,
    )
    engine = engine_for(world)
    state, trace = run(world, engine)
    assert [c.trial for c in trace.calls] == [True]
    view = engine.store.view(["g0d0"], trace.end)["g0d0"]
    assert view.trips == 2 and view.cooldown_until - trace.end == pytest.approx(10.0, abs=0.01)
    assert isinstance(state["error"], UpstreamError)


def test_a_long_retry_after_fails_fast_instead_of_sleeping() -> None:
    """A lone deployment answers 429 with Retry-After: 10 s > max_cooldown_wait: no sleep."""
    world = World(
        deps=(DepSpec("g0d0", "g0", "limited_ra", "healthy"),),
        fallbacks={},
        num_retries=3,
        max_wait=2.0,
        deadline=300.0,
        retry_after=10.0,
    )
    state, trace = run(world, engine_for(world))
    assert len(trace.calls) == 1 and trace.sleeps == []
    err = state["error"]
    assert isinstance(err, RateLimited) and err.retry_after == 10.0


def test_a_short_retry_after_is_honoured_once_nothing_else_can_serve() -> None:
    world = World(
        deps=(DepSpec("g0d0", "g0", "limited_ra", "healthy"),),
        fallbacks={},
        num_retries=2,
        max_wait=2.0,
        deadline=300.0,
        retry_after=1.0,
    )
    state, trace = run(world, engine_for(world))
    assert len(trace.calls) == 3 and trace.sleeps == [1.0, 1.0]
    assert isinstance(state["error"], RateLimited)


def test_sibling_that_said_it_has_no_requests_left_is_skipped() -> None:
    """A deployment whose last answer said ``x-ratelimit-remaining-requests: 0`` is treated as
    rate limited until its reset: the next call goes to its sibling, not into a 429."""
    world = World(
        deps=(DepSpec("g0d0", "g0", "ok", "healthy"), DepSpec("g0d1", "g0", "ok", "healthy")),
        fallbacks={},
        num_retries=0,
        max_wait=2.0,
        deadline=300.0,
        retry_after=1.0,
    )
    engine = engine_for(world)
    state = engine.start("g0", [HumanMessage(content="hi")], None, {}, stream=False)
    now = T0
    call = engine.decide(state, engine.observe(state, now), now)
    assert isinstance(call, Call)
    reserved = outcomes.reserve(engine, state, call, now)
    assert reserved is not None
    exhausted = AIMessage(
        content="ok",
        response_metadata={
            "gateway": {"rate_limit": {"remaining_requests": 0, "reset_requests_s": 20.0}}
        },
    )
    result = ChatResult(generations=[ChatGeneration(message=exhausted)])
    outcomes.record_success(engine, state, reserved, result, now, now=now + CALL_S)
    full = call.deployment.id
    view = engine.store.view([full], now + 1)[full]
    assert view.cooldown_until == pytest.approx(now + CALL_S + 20.0)
    assert not view.half_open  # a rate limit: full traffic when it resets, no trial
    nxt = engine.start("g0", [HumanMessage(content="hi")], None, {}, stream=False)
    for _ in range(20):
        pick = engine.decide(nxt, engine.observe(nxt, now + 1), now + 1)
        assert isinstance(pick, Call) and pick.deployment.id != full


def test_one_request_waits_for_a_cooldowns_end_the_others_fail_fast() -> None:
    """A health cooldown ends in one trial: one request may wait for it, not a queue."""
    world = World(
        deps=(DepSpec("g0d0", "g0", "ok", "cooling", 0.3),),
        fallbacks={},
        num_retries=2,
        max_wait=2.0,
        deadline=300.0,
        retry_after=1.0,
    )
    engine = engine_for(world)
    first = engine.start("g0", [HumanMessage(content="a")], None, {}, stream=False)
    second = engine.start("g0", [HumanMessage(content="b")], None, {}, stream=False)
    wait = engine.decide(first, engine.observe(first, T0), T0)
    assert isinstance(wait, Sleep) and wait.seconds == pytest.approx(0.3)
    assert isinstance(engine.decide(second, engine.observe(second, T0), T0), Done)
    err = second["error"]
    assert isinstance(err, NoDeploymentAvailable) and err.retry_after == pytest.approx(0.3)
    # The waiter, woken a little early, may wait again; then it makes the trial.
    early = T0 + 0.299
    again = engine.decide(first, engine.observe(first, early), early)
    assert isinstance(again, Sleep) and again.seconds <= 0.002
    late = T0 + 0.3
    call = engine.decide(first, engine.observe(first, late), late)
    assert isinstance(call, Call) and call.trial
