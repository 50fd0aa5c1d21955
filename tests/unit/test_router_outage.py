"""The router under sustained outage, against a MockGateway upstream, sync and async.

- a dead primary with a healthy fallback group: once the primary cools down, every call is
  answered from the fallback with no wait, the primary getting only its half-open trials;
- a total outage with no fallback: every call fails fast with ``NoDeploymentAvailable`` and a
  ``retry_after``, none hangs, and the upstream sees almost nothing once the breaker is open;
- a black-hole deployment (accepts, never answers) with LiteLLM's per-attempt ``timeout``:
  every call is answered by a sibling;
- a 429 burst on every deployment with a short Retry-After: every call is answered.

No test here times anything: "no wait" is what ``routing["waited_ms"]`` and the attempts say,
"fast" is a hard cap on each call that only a hang can reach.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from gatewaykit import GatewayError, NoDeploymentAvailable, RouterChatModel
from gatewaykit.testing import Behavior, MockGateway

HANG_CAP_S = 5.0
"""A call taking this long is hanging (every call here should take milliseconds)."""


@pytest.fixture(scope="module")
def server() -> Iterator[MockGateway]:
    with MockGateway(record=False) as gateway:
        yield gateway


@pytest.fixture
def gw(server: MockGateway) -> MockGateway:
    server.reset()
    return server


def deployment(gw: MockGateway, group: str, name: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"openai/{name}",
            "api_base": gw.base_url,
            "api_key": "sk-x",
            **params,
        },
        "model_info": {"id": name},
    }


def dead_primary(gw: MockGateway) -> dict[str, Any]:
    gw.script("g0-dead", Behavior(status=500))
    return {
        "model_list": [deployment(gw, "g0", "g0-dead"), deployment(gw, "g1", "g1-ok")],
        "router_settings": {"num_retries": 0, "fallbacks": [{"g0": ["g1"]}]},
    }


def served_by_fallback(msg: AIMessage) -> dict[str, Any]:
    routing: dict[str, Any] = msg.response_metadata["routing"]
    assert routing["deployment"] == "g1-ok" and routing["fallbacks"] == ["g1"], routing
    assert "waited_ms" not in routing, f"waited before falling back: {routing}"
    return routing


def test_dead_primary_falls_back_at_once_after_the_cooldown_starts_sync(gw: MockGateway) -> None:
    router = RouterChatModel.from_config(dead_primary(gw), model="g0")
    routings = [served_by_fallback(router.invoke(f"call {i}")) for i in range(60)]  # type: ignore[arg-type]
    # Five consecutive 500s cool the lone deployment down; from then on no call reaches it
    # (the 5 s cooldown outlasts the test, so no trial either).
    assert gw.count("g0-dead") == 5
    assert all(len(r["attempts"]) == 1 for r in routings[5:])
    assert [a["deployment"] for a in routings[5]["attempts"]] == ["g1-ok"]


async def test_dead_primary_falls_back_at_once_with_50_concurrent_callers(
    gw: MockGateway,
) -> None:
    router = RouterChatModel.from_config(dead_primary(gw), model="g0")
    first = await asyncio.gather(*(router.ainvoke(f"warm {i}") for i in range(8)))
    for msg in first:
        served_by_fallback(msg)  # type: ignore[arg-type]
    tripped = gw.count("g0-dead")
    later = await asyncio.wait_for(
        asyncio.gather(*(router.ainvoke(f"call {i}") for i in range(50))), HANG_CAP_S
    )
    for msg in later:
        routing = served_by_fallback(msg)  # type: ignore[arg-type]
        assert [a["deployment"] for a in routing["attempts"]] == ["g1-ok"]
    assert gw.count("g0-dead") == tripped <= 8


def test_dead_primary_gets_one_trial_per_expired_cooldown(gw: MockGateway) -> None:
    """With a short cooldown, the dead primary is tried once when it expires, fails, and cools
    for twice as long; callers meanwhile are answered by the fallback without waiting."""
    cfg = dead_primary(gw)
    cfg["router_settings"]["cooldown_time"] = 0.2
    router = RouterChatModel.from_config(cfg, model="g0")
    stop = time.monotonic() + 1.6
    trials: list[float] = []
    while time.monotonic() < stop:
        routing = served_by_fallback(router.invoke("hi"))  # type: ignore[arg-type]
        trial = [a for a in routing["attempts"] if a.get("trial")]
        if trial:
            assert [a["deployment"] for a in routing["attempts"]] == ["g0-dead", "g1-ok"]
            trials.append(time.monotonic())
        time.sleep(0.005)
    # Cooldowns of 0.2, 0.4, 0.8 s: trials at ~0.2, ~0.6, ~1.4 s after the trip. With the
    # old behaviour (one trial every 0.2 s) there would be seven.
    assert 2 <= len(trials) <= 3, trials
    gaps = [b - a for a, b in itertools.pairwise(trials)]
    assert all(g2 > g1 * 1.5 for g1, g2 in itertools.pairwise(gaps)), gaps


def total_outage(gw: MockGateway) -> dict[str, Any]:
    for name in ("down-a", "down-b"):
        gw.script(name, Behavior(status=500))
    return {"model_list": [deployment(gw, "chat", "down-a"), deployment(gw, "chat", "down-b")]}


async def test_total_outage_fails_every_call_fast_and_never_hangs(gw: MockGateway) -> None:
    router = RouterChatModel.from_config(total_outage(gw), model="chat")
    errors: list[GatewayError] = []
    stop = time.monotonic() + 2.0

    async def caller() -> None:
        while time.monotonic() < stop:
            with pytest.raises(GatewayError) as info:
                await asyncio.wait_for(router.ainvoke("hi"), HANG_CAP_S)
            errors.append(info.value)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(caller() for _ in range(16)))
    fast = [e for e in errors if isinstance(e, NoDeploymentAvailable)]
    # Once both deployments cool down, every call fails at once, without an upstream call,
    # saying when to come back.
    assert len(fast) > len(errors) * 0.8, (len(fast), len(errors))
    assert all(e.retry_after is not None and 0 < e.retry_after <= 5.0 for e in fast)
    assert all(e.attempts == [] and set(e.reasons) == {"down-a", "down-b"} for e in fast)
    upstream = gw.count("down-a") + gw.count("down-b")
    assert upstream < len(errors) * 0.2, (upstream, len(errors))


def test_total_outage_sync_caller_in_a_loop_never_waits_out_the_cooldown(
    gw: MockGateway,
) -> None:
    router = RouterChatModel.from_config(total_outage(gw), model="chat", max_retries=0)
    durations: list[float] = []
    for _ in range(40):
        started = time.monotonic()
        with pytest.raises(GatewayError):
            router.invoke("hi")
        durations.append(time.monotonic() - started)
    # Nothing close to the 5 s cooldown: the breaker answers instead of sleeping.
    assert max(durations) < HANG_CAP_S / 2, max(durations)
    with pytest.raises(NoDeploymentAvailable) as info:
        router.invoke("hi")
    assert info.value.retry_after is not None and info.value.retry_after > 2.0


def black_hole(gw: MockGateway) -> dict[str, Any]:
    gw.script("hole", Behavior(error="timeout", hang_s=10))
    return {
        "model_list": [
            deployment(gw, "chat", "hole"),
            deployment(gw, "chat", "ok-a"),
            deployment(gw, "chat", "ok-b"),
        ],
        # A LiteLLM config carried over unchanged: timeout is per attempt there, and here.
        "router_settings": {"timeout": 0.3, "num_retries": 2},
    }


def test_litellm_timeout_is_per_attempt_so_a_black_hole_is_retried_elsewhere(
    gw: MockGateway,
) -> None:
    router = RouterChatModel.from_config(black_hole(gw), model="chat", seed=1)
    assert router.engine.timeout == 0.3 and router.engine.deadline == 300.0
    served = []
    for i in range(24):
        msg = router.invoke(f"call {i}")
        served.append(msg.response_metadata["routing"])
    assert all(r["deployment"] in ("ok-a", "ok-b") for r in served)
    timed_out = [a for r in served for a in r["attempts"] if not a["ok"]]
    assert timed_out and all(a["kind"] == "timeout" for a in timed_out)


async def test_black_hole_with_concurrent_callers_answers_every_call(gw: MockGateway) -> None:
    router = RouterChatModel.from_config(black_hole(gw), model="chat", seed=2)
    msgs = await asyncio.wait_for(
        asyncio.gather(*(router.ainvoke(f"call {i}") for i in range(30))), HANG_CAP_S * 2
    )
    assert all(m.response_metadata["routing"]["deployment"] in ("ok-a", "ok-b") for m in msgs)


def test_deadline_is_its_own_setting(gw: MockGateway) -> None:
    cfg = black_hole(gw)
    cfg["router_settings"]["deadline"] = 0.5
    router = RouterChatModel.from_config(cfg, model="chat")
    assert (router.engine.timeout, router.engine.deadline) == (0.3, 0.5)
    gw.script("ok-a", Behavior(error="timeout", hang_s=10))
    gw.script("ok-b", Behavior(error="timeout", hang_s=10))
    started = time.monotonic()
    with pytest.raises(GatewayError) as info:
        router.invoke("hi")
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < HANG_CAP_S / 2


@pytest.mark.parametrize("use_async", [False, True])
def test_a_429_burst_on_every_deployment_is_waited_out(gw: MockGateway, use_async: bool) -> None:
    """Both deployments answer 429 with Retry-After: 1 for 2 s; 8 concurrent calls all get
    an answer (the recovery is known and short, and rate limits need no trial)."""
    for name in ("busy-a", "busy-b"):
        gw.script(name, Behavior(error="rate_limit", retry_after=1))
    cfg = {"model_list": [deployment(gw, "chat", "busy-a"), deployment(gw, "chat", "busy-b")]}
    router = RouterChatModel.from_config(cfg, model="chat")
    recover = threading.Timer(2.0, lambda: [gw.script(n, Behavior()) for n in ("busy-a", "busy-b")])
    recover.start()
    try:
        if use_async:

            async def all_calls() -> list[Any]:
                return list(await asyncio.gather(*(router.ainvoke(f"c{i}") for i in range(8))))

            msgs = asyncio.run(all_calls())
        else:
            msgs = router.batch([f"c{i}" for i in range(8)], config={"max_concurrency": 8})
    finally:
        recover.cancel()
    assert len(msgs) == 8
    assert all(m.response_metadata["routing"]["deployment"] in ("busy-a", "busy-b") for m in msgs)


async def test_fallbacks_after_the_cooldowns_fail_fast_instead_of_spending_every_attempt(
    gw: MockGateway,
) -> None:
    """num_retries 2, fallbacks g1 -> g2, everything failing: once both groups are cooling,
    each call moves through both at once and fails without a wait or an upstream request."""
    names = ("g1-a", "g1-b", "g2-a", "g2-b")
    for name in names:
        gw.script(name, Behavior(status=500))
    cfg = {
        "model_list": [deployment(gw, name[:2], name) for name in names],
        "router_settings": {"num_retries": 2, "fallbacks": [{"g1": ["g2"]}]},
    }
    router = RouterChatModel.from_config(cfg, model="g1")
    for _ in range(6):  # trips the breakers of all four deployments
        with pytest.raises(GatewayError):
            await asyncio.wait_for(router.ainvoke("hi"), HANG_CAP_S * 2)
    tripped = sum(gw.count(n) for n in names)
    for _ in range(30):
        with pytest.raises(NoDeploymentAvailable) as info:
            await asyncio.wait_for(router.ainvoke("hi"), HANG_CAP_S / 5)
        err = info.value
        assert err.attempts == [] and err.routing["fallbacks"] == ["g2"]
        assert "waited_ms" not in err.routing
        assert set(err.reasons) == set(names) and err.retry_after is not None
    assert sum(gw.count(n) for n in names) == tripped
