"""What sharing router state in Redis costs, next to the process-local InMemoryStore.

    python benchmarks/store_overhead.py            # the full run, about a minute
    python benchmarks/store_overhead.py --quick    # smoke run: a few calls per variant
    python benchmarks/store_overhead.py --redis-url redis://10.0.0.5:6379/0

Two sections, each variant measured in interleaved rounds (the starting variant alternates) so
machine noise hits both alike:

1. ``hot path``: what the router asks the store for each call it makes, without the router:
   ``view`` of a two-deployment group, ``acquire`` on one (rpm, tpm and max_parallel checked)
   and ``release`` of it. Microseconds per call (the three methods together): median and p90 of
   every call.
2. ``throughput``: ``RouterChatModel.ainvoke`` over a two-deployment group at concurrency 64
   against MockGateway (zero latency, in a child process so it does not share this process's
   GIL). Calls per second of each round; the median round is printed.

Each line starts with the section and the store; ``x InMemoryStore`` divides the variant's median
by InMemoryStore's median measured in the same run (hot path: above 1.00x is slower; throughput:
below 1.00x is slower). Compare ratios across machines, not absolute numbers. Keys go under a
fresh ``gatewaykit-bench:<random>:`` prefix and are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gatewaykit import RouterChatModel
from gatewaykit.routing.redis_store import RedisStore
from gatewaykit.routing.store import InMemoryStore, Outcome, StateStore
from gatewaykit.testing import MockGateway

MEMORY = "InMemoryStore"
REDIS = "RedisStore"
GROUP = "bench"
DEPLOYMENTS = ("bench-a", "bench-b")
CONCURRENCY = 64


@dataclass(frozen=True)
class Settings:
    hot_calls: int
    hot_rounds: int
    calls: int
    rounds: int
    warmup: int


# ---------------------------------------------------------------------- 1. hot path


def hot_path_round(store: StateStore, calls: int) -> list[float]:
    """``calls`` times view + acquire + release; microseconds of each."""
    ids = list(DEPLOYMENTS)
    out: list[float] = []
    clock = time.perf_counter
    for _ in range(calls):
        start = clock()
        now = time.monotonic()
        store.view(ids, now)
        adm = store.acquire(
            ids[0], now, rpm=10_000_000, tpm=10_000_000_000, tokens=20, max_parallel=10_000
        )
        if not adm.ok:
            raise RuntimeError(f"benchmark store refused a call: {adm.reason}")
        store.release(ids[0], time.monotonic(), Outcome(ok=True, latency_s=0.001, tokens=20))
        out.append((clock() - start) * 1e6)
    return out


def bench_hot_path(stores: Mapping[str, StateStore], s: Settings) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in stores}
    for store in stores.values():
        hot_path_round(store, s.warmup)
    names = list(stores)
    for r in range(s.hot_rounds):
        for name in names[r % 2 :] + names[: r % 2]:
            samples[name] += hot_path_round(stores[name], s.hot_calls)
    return samples


# ---------------------------------------------------------------------- 2. router throughput


def router_config(base_url: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": GROUP,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": base_url,
                    "api_key": "sk-bench",
                    "rpm": 10_000_000,
                },
                "model_info": {"id": name},
            }
            for name in DEPLOYMENTS
        ],
        "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": 2},
    }


async def throughput_round(router: RouterChatModel, calls: int) -> float:
    """Calls per second of ``calls`` ainvoke calls, CONCURRENCY at a time."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await router.ainvoke("Say something short about gateways.")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return calls / (time.perf_counter() - start)


async def bench_throughput(
    routers: Mapping[str, RouterChatModel], s: Settings
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {name: [] for name in routers}
    for router in routers.values():
        await throughput_round(router, s.warmup)
    names = list(routers)
    for r in range(s.rounds):
        for name in names[r % 2 :] + names[: r % 2]:
            rates[name].append(await throughput_round(routers[name], s.calls))
    return rates


# ---------------------------------------------------------------------- report


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def print_hot_path(samples: Mapping[str, list[float]]) -> None:
    base = statistics.median(samples[MEMORY])
    print(f"\nhot path: view + acquire + release, us per call ({len(samples[MEMORY])} calls each)")
    for name, values in samples.items():
        med = statistics.median(values)
        print(
            f"hot path    {name:<14} median {med:9.1f} us   p90 {_p90(values):9.1f} us"
            f"   {med / base:6.2f}x {MEMORY}"
        )


def print_throughput(rates: Mapping[str, list[float]]) -> None:
    base = statistics.median(rates[MEMORY])
    rounds = len(rates[MEMORY])
    print(f"\nthroughput: RouterChatModel.ainvoke at concurrency {CONCURRENCY} ({rounds} rounds)")
    for name, values in rates.items():
        med = statistics.median(values)
        print(
            f"throughput  {name:<14} median {med:9.1f} calls/s   min {min(values):9.1f}"
            f"   max {max(values):9.1f}   {med / base:6.2f}x {MEMORY}"
        )


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--hot-calls", type=int, default=2000, help="hot-path calls per round")
    parser.add_argument("--hot-rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=1000, help="router calls per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="smoke run: a few calls each")
    args = parser.parse_args()
    if args.quick:
        s = Settings(hot_calls=50, hot_rounds=2, calls=64, rounds=2, warmup=10)
    else:
        s = Settings(args.hot_calls, args.hot_rounds, args.calls, args.rounds, warmup=200)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    prefix = f"gatewaykit-bench:{uuid.uuid4().hex[:12]}:"
    redis_store = RedisStore(url=args.redis_url, prefix=prefix)
    if not redis_store.ping():
        sys.exit(f"no Redis answers at {args.redis_url.split('@')[-1]}")
    info: Mapping[str, Any] = redis_store.client.info("server")
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"redis {info.get('redis_version', '?')}; gatewaykit store overhead"
        + (" (--quick: numbers are not meaningful)" if args.quick else "")
    )
    try:
        hot = bench_hot_path({MEMORY: InMemoryStore(), REDIS: redis_store}, s)
        print_hot_path(hot)
        redis_store.clear()

        with MockGateway("process", record=False) as gw:
            make: dict[str, Callable[[], StateStore]] = {
                MEMORY: InMemoryStore,
                REDIS: lambda: redis_store,
            }
            routers = {
                name: RouterChatModel.from_config(
                    router_config(gw.base_url), model=GROUP, store=factory()
                )
                for name, factory in make.items()
            }
            rates = asyncio.run(bench_throughput(routers, s))
        print_throughput(rates)
        if redis_store.degraded or redis_store.fallbacks:
            print(f"\nwarning: Redis failed during the run ({redis_store.fallbacks} fallbacks)")
    finally:
        redis_store.clear()
        redis_store.close()


if __name__ == "__main__":
    main()
