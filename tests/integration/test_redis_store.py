"""RedisStore against a real Redis: the same behaviour as InMemoryStore, shared by processes.

Needs Redis on 127.0.0.1:6379 (``.ci/run`` starts one) and, for the restart test, the
``redis-server`` binary. Every test writes under its own key prefix and deletes it afterwards;
nothing here flushes a database.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import redis

from gatewaykit import GatewayConfig, RouterChatModel
from gatewaykit.routing import store as store_mod
from gatewaykit.routing.redis_store import RedisStore, store_from_config
from gatewaykit.routing.store import InMemoryStore, Outcome, StateStore
from gatewaykit.testing import Behavior, MockGateway

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
TOL = 0.05
"""Seconds of slack when comparing times moved between the server's clock and the caller's."""


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module", autouse=True)
def _need_redis() -> None:
    if not _port_open(6379):
        pytest.skip("no Redis on 127.0.0.1:6379 (.ci/run starts one)")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    p = f"gwk-test:{uuid.uuid4().hex[:12]}:"
    yield p
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=p + "*"))
    if keys:
        client.delete(*keys)
    client.close()


# ---------------------------------------------------------------------- parity with InMemoryStore

StoreFactory = Callable[..., StateStore]


@pytest.fixture(params=["memory", "redis"])
def make_store(
    request: pytest.FixtureRequest, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StoreFactory]:
    """Builds the store under test; ``window_s`` shortens the rpm/tpm window for both kinds."""
    made: list[RedisStore] = []

    def make(window_s: float | None = None) -> StateStore:
        if window_s is not None:
            monkeypatch.setattr(store_mod, "WINDOW_S", window_s)
        if request.param == "memory":
            return InMemoryStore()
        s = RedisStore(url=REDIS_URL, prefix=prefix, window_s=window_s)
        made.append(s)
        return s

    yield make
    for s in made:
        assert not s.degraded, "the shared Redis went away during a parity test"
        s.close()


def now() -> float:
    return time.monotonic()


def test_unseen_deployment_starts_empty(make_store: StoreFactory) -> None:
    store = make_store()
    t = now()
    st = store.view(["fresh"], t)["fresh"]
    assert (st.in_flight, st.rpm_used, st.tpm_used, st.successes, st.failures) == (0, 0, 0, 0, 0)
    assert st.latency_s is None and st.ttft_s is None and st.spend == 0.0
    assert st.cooldown_until <= t and not st.half_open and not st.trial_in_flight
    assert st.window_start == pytest.approx(t, abs=TOL)


def test_rpm_admission(make_store: StoreFactory) -> None:
    store = make_store()
    t = now()
    assert [store.acquire("d", t, rpm=3).ok for _ in range(3)] == [True, True, True]
    refused = store.acquire("d", t, rpm=3)
    assert not refused.ok
    assert refused.reason == "rpm limit 3 reached"
    st = store.view(["d"], t)["d"]
    assert st.rpm_used == 3 and st.in_flight == 3
    assert refused.retry_at == pytest.approx(st.window_start + 60.0, abs=TOL)


def test_tpm_admission_and_settlement(make_store: StoreFactory) -> None:
    store = make_store()
    t = now()
    assert store.acquire("d", t, tpm=100, tokens=60).ok
    refused = store.acquire("d", t, tpm=100, tokens=60)
    assert (refused.ok, refused.reason) == (False, "tpm limit 100 reached")
    # The call used 30 tokens, not the 60 reserved: the window gets 30 back.
    after = store.release("d", now(), Outcome(ok=True, tokens=30, reserved_tokens=60))
    assert after.tpm_used == 30
    assert store.acquire("d", now(), tpm=100, tokens=60).ok
    # A prompt larger than the whole tpm still gets through an empty window.
    assert store.acquire("big", t, tpm=100, tokens=500).ok


def test_max_parallel(make_store: StoreFactory) -> None:
    store = make_store()
    t = now()
    assert store.acquire("d", t, max_parallel=2).ok
    assert store.acquire("d", t, max_parallel=2).ok
    refused = store.acquire("d", t, max_parallel=2)
    assert (refused.ok, refused.reason) == (False, "2 calls in flight")
    assert refused.retry_at == pytest.approx(t + 0.01, abs=TOL)
    assert store.view(["d"], t)["d"].in_flight == 2
    assert store.release("d", now(), Outcome(ok=True)).in_flight == 1
    assert store.acquire("d", now(), max_parallel=2).ok


def test_cooldown_then_one_half_open_trial(make_store: StoreFactory) -> None:
    store = make_store()
    t = now()
    store.cool_down("d", t + 0.3, "upstream 500")
    refused = store.acquire("d", t)
    assert (refused.ok, refused.reason) == (False, "cooling down (upstream 500)")
    assert refused.retry_at == pytest.approx(t + 0.3, abs=TOL)
    st = store.view(["d"], t)["d"]
    assert st.cooldown_until == pytest.approx(t + 0.3, abs=TOL)
    assert st.half_open and not st.trial_in_flight and st.cooldown_reason == "upstream 500"
    # A shorter cooldown never shortens the current one.
    store.cool_down("d", t + 0.1, "rate_limited 429")
    assert store.view(["d"], t)["d"].cooldown_until == pytest.approx(t + 0.3, abs=TOL)

    time.sleep(0.35)
    t = now()
    assert store.acquire("d", t, trial=True).ok  # the one trial call
    st = store.view(["d"], t)["d"]
    assert st.half_open and st.trial_in_flight
    second = store.acquire("d", t)
    assert (second.ok, second.reason) == (False, "half-open: trial call in flight")
    assert second.retry_at == pytest.approx(t + 0.05, abs=TOL)

    closed = store.release("d", now(), Outcome(ok=True, latency_s=0.1))
    assert not closed.half_open and not closed.trial_in_flight
    assert store.acquire("d", now()).ok and store.acquire("d", now()).ok


def test_failed_trial(make_store: StoreFactory) -> None:
    store = make_store()
    t = now()
    store.cool_down("d", t - 1.0, "timeout")  # already expired: half-open at once
    assert store.acquire("d", t).ok
    # The trial fails and the health policy cools the deployment down again.
    again = store.release(
        "d", now(), Outcome(ok=False, kind="upstream", status=503, cooldown_s=0.5)
    )
    assert again.half_open and not again.trial_in_flight
    assert again.cooldown_until == pytest.approx(now() + 0.5, abs=TOL)
    assert again.cooldown_reason == "upstream 503"
    assert not store.acquire("d", now()).ok

    # One cooldown, then a second one after its trial failed: two trips in a row.
    assert again.trips == 2

    store2 = make_store()
    store2.cool_down("e", t - 1.0, "timeout")
    assert store2.acquire("e", t).ok
    # A failed trial without a new cooldown stays half-open: still one call at a time.
    still = store2.release("e", now(), Outcome(ok=False, kind="upstream", status=500))
    assert still.half_open and not still.trial_in_flight and still.failures == 1
    assert store2.acquire("e", now()).trial
    assert not store2.acquire("e", now()).ok
    # A success closes the breaker and forgets the trips.
    closed = store2.release("e", now(), Outcome(ok=True, latency_s=0.1))
    assert not closed.half_open and closed.trips == 0


def test_a_rate_limit_cooldown_has_no_trial_and_no_trip(make_store: StoreFactory) -> None:
    store = make_store()
    t = now()
    store.cool_down("r", t + 0.2, "rate_limited 429", trial=False)
    st = store.view(["r"], t)["r"]
    assert not st.half_open and st.trips == 0
    assert st.cooldown_until == pytest.approx(t + 0.2, abs=TOL)
    refused = store.acquire("r", t)
    assert (refused.ok, refused.kind) == (False, "cooldown")
    time.sleep(0.25)
    # Full traffic when it ends: two calls at once, neither a trial.
    first, second = store.acquire("r", now()), store.acquire("r", now())
    assert first.ok and second.ok and not first.trial and not second.trial


def test_success_and_failure_counters(make_store: StoreFactory) -> None:
    store = make_store()
    for ok in (False, False, True, False):
        assert store.acquire("d", now()).ok
        st = store.release("d", now(), Outcome(ok=ok, kind=None if ok else "upstream"))
    assert (st.successes, st.failures, st.consecutive_failures) == (1, 3, 1)
    # A caller's own error (a 400) says nothing about the deployment.
    store.acquire("d", now())
    st = store.release(
        "d", now(), Outcome(ok=False, kind="invalid_request", counts_as_failure=False)
    )
    assert (st.successes, st.failures, st.consecutive_failures, st.in_flight) == (1, 3, 1, 0)


def test_latency_moving_average(make_store: StoreFactory) -> None:
    store = make_store()
    st = store.release("d", now(), Outcome(ok=True, latency_s=1.0))
    assert st.latency_s == pytest.approx(1.0) and st.ttft_s is None
    t = now()
    st = store.release("d", t, Outcome(ok=True, latency_s=2.0, ttft_s=0.5, stream=True))
    assert st.latency_s == pytest.approx(0.7 * 1.0 + 0.3 * 2.0)
    assert st.ttft_s == pytest.approx(0.5)
    assert st.latency_at == pytest.approx(t, abs=TOL)
    st = store.release("d", now(), Outcome(ok=True, latency_s=1.3, ttft_s=1.0, stream=True))
    assert st.latency_s == pytest.approx(1.3)
    assert st.ttft_s == pytest.approx(0.7 * 0.5 + 0.3 * 1.0)
    # A timeout is a latency sample too; other failures are not.
    st = store.release("d", now(), Outcome(ok=False, kind="timeout", latency_s=2.3))
    assert st.latency_s == pytest.approx(0.7 * 1.3 + 0.3 * 2.3)
    before = st.latency_s
    st = store.release("d", now(), Outcome(ok=False, kind="upstream", latency_s=9.0))
    assert st.latency_s == pytest.approx(before)


def test_spend(make_store: StoreFactory) -> None:
    store = make_store()
    for cost in (0.25, 0.125, 0.0, 1e-6):
        store.acquire("d", now())
        st = store.release("d", now(), Outcome(ok=True, cost=cost))
    assert st.spend == pytest.approx(0.375001)
    assert store.view(["d"], now())["d"].spend == pytest.approx(0.375001)


def test_window_roll(make_store: StoreFactory) -> None:
    store = make_store(window_s=0.4)
    t = now()
    assert store.acquire("d", t, rpm=2).ok
    store.release("d", now(), Outcome(ok=False, kind="upstream"))
    assert store.acquire("d", now(), rpm=2).ok
    store.release("d", now(), Outcome(ok=True))
    refused = store.acquire("d", now(), rpm=2)
    assert not refused.ok
    first = store.view(["d"], now())["d"]
    assert (first.rpm_used, first.successes, first.failures) == (2, 1, 1)
    first_start = first.window_start  # InMemoryStore's view is live: keep the number
    assert refused.retry_at == pytest.approx(first_start + 0.4, abs=TOL)

    time.sleep(max(0.0, refused.retry_at - now()) + 0.05)
    assert store.acquire("d", now(), rpm=2).ok
    st = store.view(["d"], now())["d"]
    assert (st.rpm_used, st.successes, st.failures) == (1, 0, 0)
    assert st.consecutive_failures == 0  # not a window counter, and the last call succeeded
    assert st.window_start > first_start + 0.3


def test_release_returns_a_snapshot(make_store: StoreFactory) -> None:
    store = make_store()
    store.acquire("d", now())
    snap = store.release("d", now(), Outcome(ok=True, cost=1.0))
    snap.spend = 99.0
    assert store.view(["d"], now())["d"].spend == pytest.approx(1.0)


# ---------------------------------------------------------------------- Redis specifics


def test_every_key_has_a_ttl(prefix: str) -> None:
    store = RedisStore(url=REDIS_URL, prefix=prefix, key_ttl_s=600)
    t = now()
    store.view(["a", "b"], t)
    store.acquire("c", t, rpm=5)
    store.release("c", now(), Outcome(ok=True))
    store.cool_down("d", t + 3600, "authentication 401")
    keys = sorted(k.decode() for k in store.client.scan_iter(match=prefix + "*"))
    assert keys == [f"{prefix}dep:{x}" for x in "abcd"]
    for key in keys:
        ttl = store.client.ttl(key)
        assert 0 < ttl <= 600 or key.endswith(":d"), (key, ttl)
    assert store.client.ttl(f"{prefix}dep:c") > 590
    # A key outlives its cooldown (plus one window), whatever key_ttl_s says.
    assert store.client.ttl(f"{prefix}dep:d") >= 3600
    store.close()


def test_prefix_isolation(prefix: str) -> None:
    other = prefix + "other:"
    a = RedisStore(url=REDIS_URL, prefix=prefix)
    b = RedisStore(url=REDIS_URL, prefix=other)
    t = now()
    assert a.acquire("d", t, rpm=1).ok
    assert b.acquire("d", t, rpm=1).ok  # a different namespace: its own window
    assert not a.acquire("d", t, rpm=1).ok
    a.cool_down("d", t + 60, "upstream 500")
    assert b.view(["d"], t)["d"].cooldown_until == 0.0
    assert a.clear() == 1  # its own key only, though the other prefix starts with its own
    assert b.client.exists(b.key("d")) == 1
    assert b.clear() == 1
    a.close()
    b.close()


def test_one_round_trip_per_call(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisStore(url=REDIS_URL, prefix=prefix)
    t = now()
    # Warm up: loads each script on the server (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
    store.view(["a", "b"], t)
    store.acquire("a", t)
    store.release("a", t, Outcome(ok=True))
    store.cool_down("b", t + 1, "x")
    sent: list[str] = []
    real = store.client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(store.client, "execute_command", counting)
    for call in (
        lambda: store.view(["a", "b", "c"], now()),
        lambda: store.acquire("a", now(), rpm=10, tpm=1000, tokens=10, max_parallel=5),
        lambda: store.release("a", now(), Outcome(ok=True, latency_s=0.1, tokens=5, cost=0.1)),
        lambda: store.cool_down("b", now() + 1, "upstream 500"),
    ):
        sent.clear()
        call()
        assert sent == ["EVALSHA"]
    store.close()


def test_times_come_back_in_the_callers_clock(prefix: str) -> None:
    """A caller whose clock reads 1000.0 gets deadlines around 1000, not the server's epoch."""
    store = RedisStore(url=REDIS_URL, prefix=prefix)
    fake = 1000.0
    assert store.acquire("d", fake).ok
    store.cool_down("d", fake + 5.0, "upstream 500")
    st = store.view(["d"], fake)["d"]
    assert st.window_start == pytest.approx(fake, abs=TOL)
    assert st.cooldown_until == pytest.approx(fake + 5.0, abs=TOL)
    refused = store.acquire("d", fake)
    assert refused.retry_at == pytest.approx(fake + 5.0, abs=TOL)
    store.close()


def test_two_routers_share_windows_in_flight_and_trials(prefix: str) -> None:
    a = RedisStore(url=REDIS_URL, prefix=prefix)
    b = RedisStore(url=REDIS_URL, prefix=prefix)
    t = now()
    assert a.acquire("d", t, rpm=3, max_parallel=2).ok
    assert b.acquire("d", t, rpm=3, max_parallel=2).ok
    assert b.acquire("d", t, rpm=3, max_parallel=2).reason == "2 calls in flight"
    assert a.view(["d"], t)["d"].in_flight == 2
    a.release("d", now(), Outcome(ok=True))
    assert b.view(["d"], now())["d"].in_flight == 1
    assert b.acquire("d", now(), rpm=3, max_parallel=2).ok
    assert a.acquire("d", now(), rpm=3).reason == "rpm limit 3 reached"
    # Half-open: one trial for all routers.
    a.cool_down("e", now() - 1.0, "timeout")
    assert a.acquire("e", now()).ok
    assert b.acquire("e", now()).reason == "half-open: trial call in flight"
    assert b.view(["e"], now())["e"].trial_in_flight
    a.release("e", now(), Outcome(ok=True))
    assert b.acquire("e", now()).ok
    a.close()
    b.close()


def test_a_dead_routers_calls_and_trial_stop_counting(prefix: str) -> None:
    """A process that dies mid-call never releases: its in-flight count and its half-open trial
    expire instead of blocking the deployment for good."""
    crashed = RedisStore(url=REDIS_URL, prefix=prefix, inflight_ttl_s=0.3, trial_ttl_s=0.3)
    alive = RedisStore(url=REDIS_URL, prefix=prefix, inflight_ttl_s=0.3, trial_ttl_s=0.3)
    t = now()
    assert crashed.acquire("d", t, max_parallel=1).ok
    assert not alive.acquire("d", t, max_parallel=1).ok
    crashed.cool_down("e", t - 1.0, "timeout")
    assert crashed.acquire("e", t).ok
    assert not alive.acquire("e", t).ok
    time.sleep(0.35)
    assert alive.acquire("d", now(), max_parallel=1).ok
    assert alive.acquire("e", now()).ok
    crashed.close()
    alive.close()


def test_threads_keep_in_flight_counts_exact(prefix: str) -> None:
    """Many threads of one process acquiring and releasing: max_parallel is never exceeded and
    the count returns to zero (each process writes its own absolute count)."""
    import threading

    store = RedisStore(url=REDIS_URL, prefix=prefix)
    peak = 0
    current = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal peak, current
        for _ in range(40):
            if store.acquire("d", now(), max_parallel=3).ok:
                with guard:
                    current += 1
                    peak = max(peak, current)
                time.sleep(0.001)
                with guard:
                    current -= 1
                store.release("d", now(), Outcome(ok=True))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak <= 3
    assert store.view(["d"], now())["d"].in_flight == 0
    fields = [f.decode() for f in store.client.hkeys(store.key("d"))]
    assert not [f for f in fields if f.startswith("if:")]
    store.close()


def test_a_refused_half_open_call_does_not_hold_the_trial(prefix: str) -> None:
    store = RedisStore(url=REDIS_URL, prefix=prefix)
    t = now()
    assert store.acquire("d", t, rpm=1).ok
    store.release("d", now(), Outcome(ok=True))
    store.cool_down("d", now() - 1.0, "timeout")
    assert store.acquire("d", now(), rpm=1).reason == "rpm limit 1 reached"
    assert not store.view(["d"], now())["d"].trial_in_flight
    store.close()


def test_unreachable_redis_never_raises_and_never_logs_credentials(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()  # nothing listens there
    secret = "sup3r-secret-pw"
    store = RedisStore(url=f"redis://admin:{secret}@127.0.0.1:{port}/0", prefix=prefix)
    assert secret not in repr(store)
    caplog.set_level(logging.DEBUG, logger="gatewaykit.routing")
    t = now()
    assert store.view(["d"], t)["d"].in_flight == 0
    assert store.acquire("d", t, rpm=1).ok
    assert not store.acquire("d", t, rpm=1).ok  # the local fallback still enforces limits
    store.release("d", now(), Outcome(ok=True))
    store.cool_down("d", now() + 5, "upstream 500")
    assert store.view(["d"], now())["d"].cooldown_until > now()
    assert store.degraded and store.fallbacks == 1 and store.errors >= 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].name == "gatewaykit.routing"
    assert secret not in caplog.text and "admin" not in caplog.text
    assert f"127.0.0.1:{port}" in warnings[0].getMessage()
    store.close()


def test_store_from_config(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def cfg(router: dict[str, Any]) -> GatewayConfig:
        return GatewayConfig.from_dict(
            {
                "model_list": [
                    {"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "k"}}
                ],
                "router_settings": router,
            }
        )

    assert isinstance(store_from_config(cfg({})), InMemoryStore)

    monkeypatch.setenv("GWK_TEST_REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("GWK_TEST_REDIS_PORT", "6379")
    store = store_from_config(
        cfg(
            {
                "redis_host": "os.environ/GWK_TEST_REDIS_HOST",
                "redis_port": "os.environ/GWK_TEST_REDIS_PORT",
                "redis_prefix": prefix,
            }
        )
    )
    assert isinstance(store, RedisStore) and store.prefix == prefix
    assert store.acquire("d", now()).ok and not store.degraded
    assert store.client.exists(store.key("d")) == 1
    store.close()

    by_url = store_from_config(cfg({"redis_url": REDIS_URL, "redis_prefix": prefix}))
    assert isinstance(by_url, RedisStore) and by_url.ping()
    by_url.close()


# ---------------------------------------------------------------------- several processes

GROUP = "chat"
LIMITED = "up-limited"
OPEN = "up-open"
RPM = 20


def _router_config(base_url: str, **router: Any) -> dict[str, Any]:
    def dep(name: str, **params: Any) -> dict[str, Any]:
        return {
            "model_name": GROUP,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": base_url,
                "api_key": "sk-test",
                **params,
            },
            "model_info": {"id": name},
        }

    return {
        "model_list": [dep(LIMITED, rpm=RPM), dep(OPEN)],
        "router_settings": {"num_retries": 2, **router},
    }


def _wait_for(client: redis.Redis, key: str, count: int, timeout: float = 300.0) -> None:
    """Block until ``key`` (a counter in Redis) reaches ``count``: a barrier across processes."""
    deadline = time.monotonic() + timeout
    while int(client.get(key) or 0) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} did not reach {count}")
        time.sleep(0.01)


def _signal(client: redis.Redis, key: str) -> None:
    client.incr(key)
    client.expire(key, 600)


def _hammer(base_url: str, prefix: str, calls: int, processes: int) -> dict[str, Any]:
    """One router process: ``calls`` requests, 8 at a time, once every process is ready."""
    import asyncio

    store = RedisStore(url=REDIS_URL, prefix=prefix)
    router = RouterChatModel.from_config(_router_config(base_url), model=GROUP, store=store)
    served: dict[str, int] = {}
    errors: list[str] = []

    async def main() -> None:
        sem = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with sem:
                try:
                    msg = await router.ainvoke(f"call {i}")
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                dep = msg.response_metadata["routing"]["deployment"]
                served[dep] = served.get(dep, 0) + 1

        await asyncio.gather(*(one(i) for i in range(calls)))

    router.invoke("warm-up")  # lazy imports, connections and scripts before the start line
    control = redis.Redis.from_url(REDIS_URL)
    _signal(control, prefix + "ready")
    _wait_for(control, prefix + "ready", processes)
    asyncio.run(main())
    control.close()
    out = {"served": served, "errors": errors, "fallbacks": store.fallbacks, "pid": os.getpid()}
    store.close()
    return out


def _route_once(base_url: str, prefix: str, wait_for: str | None) -> dict[str, Any]:
    """One router process, one call (after ``wait_for`` is signalled): the attempts it made."""
    store = RedisStore(url=REDIS_URL, prefix=prefix)
    config = _router_config(base_url, cooldown_time=30)
    config["model_list"][0]["litellm_params"]["order"] = 1
    config["model_list"][1]["litellm_params"]["order"] = 2
    router = RouterChatModel.from_config(config, model=GROUP, store=store)
    control = redis.Redis.from_url(REDIS_URL)
    if wait_for is not None:
        _wait_for(control, prefix + wait_for, 1)
    msg = router.invoke("hello")
    _signal(control, prefix + "done")
    control.close()
    store.close()
    return {"attempts": msg.response_metadata["routing"]["attempts"], "pid": os.getpid()}


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """Four spawned router processes, shared by the tests below (each imports gatewaykit once)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=ctx) as executor:
        yield executor


def test_four_processes_never_exceed_rpm(prefix: str, pool: ProcessPoolExecutor) -> None:
    with MockGateway() as gw:
        futures = [pool.submit(_hammer, gw.base_url, prefix, 40, 4) for _ in range(4)]
        results = [f.result(timeout=600) for f in futures]
        limited = gw.requests_for(LIMITED)
        opened = gw.requests_for(OPEN)
    assert len({r["pid"] for r in results}) == 4
    assert all(not r["errors"] for r in results), [r["errors"] for r in results]
    assert all(r["fallbacks"] == 0 for r in results)
    served_limited = sum(r["served"].get(LIMITED, 0) for r in results)
    served_open = sum(r["served"].get(OPEN, 0) for r in results)
    assert served_limited + served_open == 160
    # The mock's own log: 4 warm-up calls plus 160, all within one 60 s window of the store.
    times = sorted(r.time for r in limited + opened)
    assert len(times) == 164
    assert times[-1] - times[0] < 60.0
    assert len(limited) <= RPM, f"{len(limited)} requests reached the rpm={RPM} deployment"
    assert len(limited) >= RPM - 4  # and the limit was actually contended
    assert served_limited >= RPM - 8


def test_a_cooldown_set_by_one_process_is_seen_by_another(
    prefix: str, pool: ProcessPoolExecutor
) -> None:
    with MockGateway() as gw:
        gw.script(LIMITED, Behavior(status=401))  # a bad key: cools down at once
        # Submitted together, so they run in two different worker processes; B waits for A.
        a = pool.submit(_route_once, gw.base_url, prefix, None)
        b = pool.submit(_route_once, gw.base_url, prefix, "done")
        first, second = a.result(timeout=600), b.result(timeout=600)
        hits = gw.count(LIMITED)
    assert first["pid"] != second["pid"]
    assert [x["deployment"] for x in first["attempts"]] == [LIMITED, OPEN]
    assert first["attempts"][0]["status"] == 401
    assert [x["deployment"] for x in second["attempts"]] == [OPEN]
    assert hits == 1


# ---------------------------------------------------------------------- private servers

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server binary"
)


def _private_redis(port: int, *args: str) -> subprocess.Popen[bytes]:
    """A throwaway redis-server on ``port`` (no persistence), running once it answers."""
    proc = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", *args),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _port_open(port):
        assert proc.poll() is None, "redis-server exited"
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return proc


@needs_redis_server
def test_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()
    secret = "pw-from-env-1234567"
    server = _private_redis(port, "--requirepass", secret)
    caplog.set_level(logging.DEBUG, logger="gatewaykit.routing")

    def cfg(password: str) -> GatewayConfig:
        return GatewayConfig.from_dict(
            {
                "model_list": [
                    {"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "k"}}
                ],
                "router_settings": {
                    "redis_url": f"redis://127.0.0.1:{port}/0",
                    "redis_password": password,
                },
            }
        )

    try:
        monkeypatch.setenv("GWK_TEST_REDIS_PASSWORD", secret)
        good = store_from_config(cfg("os.environ/GWK_TEST_REDIS_PASSWORD"))
        assert isinstance(good, RedisStore)
        assert good.acquire("d", now()).ok and not good.degraded
        assert good.client.exists(good.key("d")) == 1
        good.close()

        wrong = "wrong-password-7654321"
        bad = store_from_config(cfg(wrong))
        assert isinstance(bad, RedisStore)
        assert bad.acquire("d", now()).ok  # served locally
        assert bad.degraded and bad.fallbacks == 1
        bad.close()
    finally:
        server.kill()
        server.wait(10)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert secret not in caplog.text and wrong not in caplog.text


# ---------------------------------------------------------------------- Redis goes away


@needs_redis_server
def test_redis_stopped_and_restarted_mid_run(prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()

    caplog.set_level(logging.INFO, logger="gatewaykit.routing")
    server = _private_redis(port)
    store = RedisStore(port=port, prefix=prefix, retry_interval_s=0.5)
    check = redis.Redis(port=port)
    failed: list[str] = []
    try:
        with MockGateway() as gw:
            config = _router_config(gw.base_url)
            router = RouterChatModel.from_config(config, model=GROUP, store=store)

            def call() -> None:
                try:
                    router.invoke("hi")
                except Exception as exc:  # the test counts them: there must be none
                    failed.append(f"{type(exc).__name__}: {exc}")

            for _ in range(10):
                call()
            assert not store.degraded
            assert check.exists(store.key(OPEN)) + check.exists(store.key(LIMITED)) >= 1

            server.kill()
            server.wait(10)
            for _ in range(20):
                call()
            assert store.degraded and store.fallbacks == 1

            server = _private_redis(port)
            deadline = time.monotonic() + 10
            while store.degraded and time.monotonic() < deadline:
                call()
                time.sleep(0.05)
            assert not store.degraded, "the store did not go back to Redis"
            for _ in range(5):
                call()
            counted = sum(int(check.hget(store.key(d), "rpm") or 0) for d in (LIMITED, OPEN))
            assert counted >= 5  # the last calls were counted in the restarted Redis
    finally:
        server.kill()
        server.wait(10)
        check.close()
        store.close()
    assert failed == []
    assert store.fallbacks == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert any("answers again" in r.getMessage() for r in caplog.records)
