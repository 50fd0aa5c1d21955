"""Chaos: thousands of calls through RouterChatModel over one MockGateway group of three
deployments: one always down (HTTP 500), one failing 30 % of calls at random, one healthy.

Every call must be answered within its attempt budget, every attempt must be recorded, and the
dead deployment must leave rotation after ``hard_down_after`` failures in a row, receiving
afterwards no more than the calls already in flight plus one half-open trial per expired
cooldown (bounded below from the documented escalation of cooldowns).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from gatewaykit import CooldownPolicy, GatewayConfig, RetryPolicy, RouterChatModel, RouterEngine
from gatewaykit.routing.store import DeploymentState
from gatewaykit.testing import Behavior, MockGateway

DOWN, FLAKY, HEALTHY = "chaos-down", "chaos-flaky", "chaos-healthy"
DEPLOYMENTS = (DOWN, FLAKY, HEALTHY)
FAIL_RATE = 0.3

RETRY = RetryPolicy(num_retries=2, initial_backoff=0.001, max_backoff=0.002)
COOLDOWN = CooldownPolicy(cooldown_time=1.0)
MAX_ATTEMPTS = 6


@pytest.fixture(scope="module")
def server() -> Iterator[MockGateway]:
    with MockGateway(record=False) as gateway:
        yield gateway


@pytest.fixture
def gw(server: MockGateway) -> MockGateway:
    server.reset()
    server.script(DOWN, Behavior(status=500))
    server.script(FLAKY, Behavior(fail_rate=FAIL_RATE, seed=20240611))
    return server


def chaos_router(
    gw: MockGateway, seed: int, cooldown: CooldownPolicy = COOLDOWN
) -> RouterChatModel:
    cfg = GatewayConfig.from_dict(
        {
            "model_list": [
                {
                    "model_name": "chat",
                    "litellm_params": {"model": name, "api_base": gw.base_url, "api_key": "sk-x"},
                    "model_info": {"id": name},
                }
                for name in DEPLOYMENTS
            ]
        }
    )
    engine = RouterEngine(cfg, retry=RETRY, cooldown=cooldown, max_attempts=MAX_ATTEMPTS, seed=seed)
    return RouterChatModel(config=cfg, model="chat", engine=engine)


def max_trials(policy: CooldownPolicy, elapsed: float) -> int:
    """Most half-open trial calls a deployment that fails every call can get in ``elapsed``
    seconds after it first cools down.

    Each expired cooldown lets one trial through; its failure cools the deployment again for
    twice the last cooldown (``cooldown_time`` x 2 per cooldown in a row), capped at
    ``max_cooldown``. Failures of calls that were in flight only extend a running cooldown.
    """
    spent, trials = 0.0, 0
    while True:
        spent += min(policy.cooldown_time * 2**trials, policy.max_cooldown)
        if spent > elapsed:
            return trials
        trials += 1


def dead_deployment_bound(elapsed: float, concurrency: int) -> int:
    """Calls the dead deployment may receive: the failures that trip it, the calls of the other
    concurrent requests already in flight at that moment, then the half-open trials."""
    return COOLDOWN.hard_down_after + (concurrency - 1) + max_trials(COOLDOWN, elapsed)


def check_calls(results: Sequence[Any], gw: MockGateway) -> list[dict[str, Any]]:
    """Every call answered within its budget, by a deployment that can answer; every attempt
    recorded (the mock received exactly the attempts the answers report)."""
    routings: list[dict[str, Any]] = []
    for r in results:
        assert isinstance(r, AIMessage), f"a call failed: {r!r}"
        routings.append(r.response_metadata["routing"])
    attempts = Counter[str]()
    for routing in routings:
        tried = routing["attempts"]
        # Retries go to deployments not tried yet, and the healthy one never fails: at most one
        # attempt per deployment.
        assert 1 <= len(tried) <= min(len(DEPLOYMENTS), MAX_ATTEMPTS, RETRY.num_retries + 1)
        assert len({a["deployment"] for a in tried}) == len(tried)
        assert [a["ok"] for a in tried] == [False] * (len(tried) - 1) + [True]
        assert all(a["kind"] == "upstream" and a["status"] == 500 for a in tried[:-1])
        assert routing["deployment"] in (FLAKY, HEALTHY) and routing["fallbacks"] == []
        # The path's latency is recorded, attempt by attempt, and covers every attempt.
        assert all(a["latency_ms"] > 0 for a in tried)
        assert routing["latency_ms"] >= sum(a["latency_ms"] for a in tried) - 0.001 * len(tried)
        attempts.update(a["deployment"] for a in tried)
    assert {d: gw.count(d) for d in DEPLOYMENTS} == {d: attempts[d] for d in DEPLOYMENTS}
    return routings


def check_dead_deployment(
    router: RouterChatModel, gw: MockGateway, elapsed: float, concurrency: int
) -> None:
    state: DeploymentState = router.engine.store.view([DOWN], time.monotonic())[DOWN]
    received = gw.count(DOWN)
    assert state.successes == 0 and state.consecutive_failures == received
    # Out of rotation at the end: cooling down, or half-open waiting for a single trial call.
    assert state.half_open and state.cooldown_until > 0
    bound = dead_deployment_bound(elapsed, concurrency)
    assert received <= bound, f"{received} calls reached the dead deployment (bound {bound})"


def check_fallback_latency(routings: Sequence[dict[str, Any]]) -> None:
    """Calls that needed another deployment exist, and their latency reports each hop."""
    by_hops = Counter(len(r["attempts"]) for r in routings)
    assert by_hops[1] > 0 and by_hops[2] > 0, by_hops
    for r in routings:
        if len(r["attempts"]) > 1:
            failed = r["attempts"][:-1]
            assert all(a["deployment"] in (DOWN, FLAKY) for a in failed)


CALLS = 2000
BATCH = 10


@pytest.mark.slow
async def test_chaos_async(gw: MockGateway) -> None:
    router = chaos_router(gw, seed=1)
    results: list[Any] = []
    started = time.monotonic()
    for b in range(CALLS // BATCH):
        results += await asyncio.gather(
            *(router.ainvoke(f"call {b}-{i}") for i in range(BATCH)), return_exceptions=True
        )
    elapsed = time.monotonic() - started
    assert len(results) == CALLS
    routings = check_calls(results, gw)
    check_dead_deployment(router, gw, elapsed, concurrency=BATCH)
    check_fallback_latency(routings)
    # The flaky deployment still serves most of the calls it is sent.
    served = Counter(r["deployment"] for r in routings)
    assert served[FLAKY] > 0.5 * gw.count(FLAKY)
    assert served[HEALTHY] + served[FLAKY] == CALLS


SYNC_CALLS = 300
THREADS = 6


def test_chaos_sync_threads(gw: MockGateway) -> None:
    router = chaos_router(gw, seed=2)
    started = time.monotonic()
    results = router.batch(
        [f"call {i}" for i in range(SYNC_CALLS)],
        config={"max_concurrency": THREADS},
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    assert len(results) == SYNC_CALLS
    routings = check_calls(results, gw)
    check_dead_deployment(router, gw, elapsed, concurrency=THREADS)
    check_fallback_latency(routings)


def test_one_call_at_a_time_the_dead_deployment_trips_at_hard_down_after(
    gw: MockGateway,
) -> None:
    long = CooldownPolicy(cooldown_time=60.0)
    router = chaos_router(gw, seed=3, cooldown=long)
    for i in range(60):
        msg = router.invoke(f"call {i}")
        assert msg.response_metadata["routing"]["deployment"] in (FLAKY, HEALTHY)
    # Nothing in flight when it trips, and no cooldown expires during the test: no trial.
    assert gw.count(DOWN) == long.hard_down_after


def test_max_trials_follows_the_escalation() -> None:
    policy = CooldownPolicy(cooldown_time=1.0, min_requests=5)
    assert max_trials(policy, 0.5) == 0
    assert max_trials(policy, 1.0) == 1
    # Cooldowns of 1, 2, 4, 8 s: trials at 1, 3, 7 and 15 s.
    assert max_trials(policy, 5.0) == 2
    assert max_trials(policy, 14.9) == 3
    assert max_trials(policy, 15.0) == 4
