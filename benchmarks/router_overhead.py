"""What a call costs through gatewaykit, next to bare ChatOpenAI and LiteLLM's Router.

    python benchmarks/router_overhead.py                # the full run (`make bench`), minutes
    python benchmarks/router_overhead.py --calls 500    # more samples per variant
    python benchmarks/router_overhead.py --quick        # smoke run: a few calls per variant
    python benchmarks/router_overhead.py --outage-only  # only the outage tables (5. and 6.)

Every variant calls the same MockGateway, run in a child process (``mode="process"``: it does not
share the GIL with the client) with zero latency, so what is measured is the client side:

- ``ChatOpenAI``: bare ``langchain_openai.ChatOpenAI(base_url=..., max_retries=0)``, the baseline;
- ``GatewayChatModel``: the same call through gatewaykit's ChatOpenAI subclass;
- ``RouterChatModel``: ``RouterChatModel.from_config(cfg, model=...)`` over a 2-deployment group
  (default transport), i.e. choosing a deployment, the LangGraph graph, and the call;
- ``litellm.Router``: LiteLLM's router over the same group (``openai/<model>`` + ``api_base``).

Sections, each printed as one table per API (sync and async):

1. ``invoke``: latency of one non-streaming call.
2. ``stream``: time to the first chunk that carries text (``ttft``) and to the end of the stream
   (``stream total``). RouterChatModel's sync ``stream`` runs the graph in a worker thread that
   hands chunks over a queue; when the whole answer arrives at once, as from this mock, that
   thread keeps the GIL for up to one switch interval (``sys.getswitchinterval()``, 5 ms) before
   the caller sees the first chunk, so the sync ``ttft`` row overstates what a real stream, with
   gaps between tokens, pays.
3. ``failover`` (half as many timed calls): a group whose deployment ``fo-bad`` answers 500 and
   ``fo-good`` is healthy, with ``num_retries: 2`` and ``disable_cooldowns: true`` (the same dict
   for both routers), so that each call picks afresh instead of learning to avoid ``fo-bad``.
   Only calls that hit ``fo-bad`` exactly once and then got their answer from ``fo-good`` are
   timed (the mock's request counts say which); ``ChatOpenAI.with_fallbacks`` (``fo-bad``, then
   ``fo-good``) is the LangChain baseline for this table.
4. ``memory``: after a warm-up, N sync ``invoke`` calls under tracemalloc: ``retained`` is what is
   still allocated after the calls and a gc (per-call state that is never freed shows up here),
   ``growth/call`` is the retained growth over the second half of the calls divided by their
   number (~0 means no state grows with traffic; a bounded cache that is still filling shows up
   too: raise ``--memory-calls`` to tell the two apart), ``peak`` is the allocation high-water
   mark above the start, and ``rss`` is the process's resident-set growth over the phase.
5. ``dead primary fallback`` (sync and async): every call once a group's only deployment is
   down and its fallback group answers; and 6. ``total outage`` (async): 16 concurrent callers
   while every deployment of a group fails, no fallback. Both are in ``router_outage.py``
   (its docstring says what the columns mean); ``--quick`` runs them shorter.

Reading the tables: milliseconds per call, median and p90 over the timed calls of each variant;
``+ms`` is the median minus the baseline's median; ``x <name>`` divides the variant's median by
that variant's median measured in the same run (below 1.00x: faster). Variants run interleaved
in round-robin batches (the starting variant rotates) so machine noise hits all of them alike.
Compare ratios across machines, not absolute numbers. The memory table's ratios divide peaks.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import logging
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

from gatewaykit import GatewayChatModel, RouterChatModel
from gatewaykit.testing import Behavior, MockGateway

PROMPT = "Say something short about gateways, in a few words please."
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": PROMPT}]
API_KEY = "sk-bench"
GROUP = "bench"
FAILOVER_GROUP = "failover"
BAD = "fo-bad"
GOOD = "fo-good"

BARE = "ChatOpenAI"
GATEWAY = "GatewayChatModel"
ROUTER = "RouterChatModel"
LITELLM = "litellm.Router"
WITH_FALLBACKS = "ChatOpenAI.with_fallbacks"

Sample = tuple[float, ...]
"""One call's measurements in milliseconds (latency; or time to first token and total)."""
Probe = Callable[[], Sample | None]
"""Makes one call and returns its measurements, or None when the call does not qualify."""
AsyncProbe = Callable[[], Awaitable[Sample | None]]


@dataclass(frozen=True)
class Settings:
    calls: int
    failover_calls: int
    rounds: int
    warmup: int
    memory_calls: int
    memory_warmup: int
    settle_s: float


# ---------------------------------------------------------------------- clients


def import_litellm() -> Any:
    """LiteLLM, imported offline: without these two variables the import fetches its model cost
    map and sends telemetry over the network (and hangs without one)."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["LITELLM_TELEMETRY"] = "False"
    import litellm

    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


def router_config(base_url: str, group: str, models: Sequence[str]) -> dict[str, Any]:
    """A LiteLLM-dialect config (what config.yaml holds): one group over ``models``."""
    settings: dict[str, Any] = {"routing_strategy": "simple-shuffle", "num_retries": 2}
    if group == FAILOVER_GROUP:
        settings["disable_cooldowns"] = True
    return {
        "model_list": [
            {
                "model_name": group,
                "litellm_params": {
                    "model": f"openai/{m}",
                    "api_base": base_url,
                    "api_key": API_KEY,
                },
            }
            for m in models
        ],
        "router_settings": settings,
    }


def litellm_router(litellm: Any, config: Mapping[str, Any]) -> Any:
    """LiteLLM's Router for the same config dict."""
    return litellm.Router(model_list=config["model_list"], **config["router_settings"])


def chat_openai(base_url: str, model: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=base_url, api_key=API_KEY, model=model, max_retries=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- probes


def _ms(start: float, end: float) -> float:
    return (end - start) * 1e3


def timed(call: Callable[[], object]) -> Probe:
    def probe() -> Sample:
        start = time.perf_counter()
        call()
        return (_ms(start, time.perf_counter()),)

    return probe


def atimed(call: Callable[[], Awaitable[object]]) -> AsyncProbe:
    async def probe() -> Sample:
        start = time.perf_counter()
        await call()
        return (_ms(start, time.perf_counter()),)

    return probe


def lc_stream(model: BaseChatModel) -> Probe:
    def probe() -> Sample:
        start = time.perf_counter()
        first: float | None = None
        for chunk in model.stream(PROMPT):
            if first is None and chunk.content:
                first = time.perf_counter()
        end = time.perf_counter()
        return (_ms(start, first or end), _ms(start, end))

    return probe


def lc_astream(model: BaseChatModel) -> AsyncProbe:
    async def probe() -> Sample:
        start = time.perf_counter()
        first: float | None = None
        async for chunk in model.astream(PROMPT):
            if first is None and chunk.content:
                first = time.perf_counter()
        end = time.perf_counter()
        return (_ms(start, first or end), _ms(start, end))

    return probe


def _has_text(chunk: Any) -> bool:
    return bool(chunk.choices and chunk.choices[0].delta.content)


def litellm_stream(router: Any, group: str) -> Probe:
    def probe() -> Sample:
        start = time.perf_counter()
        first: float | None = None
        for chunk in router.completion(model=group, messages=MESSAGES, stream=True):
            if first is None and _has_text(chunk):
                first = time.perf_counter()
        end = time.perf_counter()
        return (_ms(start, first or end), _ms(start, end))

    return probe


def litellm_astream(router: Any, group: str) -> AsyncProbe:
    async def probe() -> Sample:
        start = time.perf_counter()
        first: float | None = None
        response = await router.acompletion(model=group, messages=MESSAGES, stream=True)
        async for chunk in response:
            if first is None and _has_text(chunk):
                first = time.perf_counter()
        end = time.perf_counter()
        return (_ms(start, first or end), _ms(start, end))

    return probe


class FailoverCounts:
    """The mock's request counts for ``fo-bad`` and ``fo-good``, read once after each call.

    Only the failover probes call those two models, one call at a time, so the counts read after
    one call are the counts before the next."""

    def __init__(self, gw: MockGateway) -> None:
        self._gw = gw
        self._last: tuple[int, int] | None = None

    def _read(self) -> tuple[int, int]:
        self._last = (self._gw.count(BAD), self._gw.count(GOOD))
        return self._last

    def before(self) -> tuple[int, int]:
        return self._last if self._last is not None else self._read()

    def failed_over_once(self, before: tuple[int, int]) -> bool:
        """Whether the call since ``before`` hit ``fo-bad`` once, then ``fo-good`` once."""
        bad, good = self._read()
        return bad - before[0] == 1 and good - before[1] == 1


def failover(counts: FailoverCounts, call: Callable[[], object]) -> Probe:
    """Times a call; it qualifies when it hit ``fo-bad`` once, then was answered by ``fo-good``."""

    def probe() -> Sample | None:
        before = counts.before()
        start = time.perf_counter()
        try:
            call()
            elapsed: float | None = _ms(start, time.perf_counter())
        except Exception:  # every attempt drew fo-bad: not a fail-over
            elapsed = None
        once = counts.failed_over_once(before)
        return (elapsed,) if once and elapsed is not None else None

    return probe


def afailover(counts: FailoverCounts, call: Callable[[], Awaitable[object]]) -> AsyncProbe:
    async def probe() -> Sample | None:
        before = counts.before()
        start = time.perf_counter()
        try:
            await call()
            elapsed: float | None = _ms(start, time.perf_counter())
        except Exception:
            elapsed = None
        once = counts.failed_over_once(before)
        return (elapsed,) if once and elapsed is not None else None

    return probe


# ---------------------------------------------------------------------- runners


@dataclass
class Result:
    """Accepted samples per variant, and how many calls were made to get them."""

    samples: dict[str, list[Sample]]
    attempts: dict[str, int]

    def metric(self, index: int) -> dict[str, list[float]]:
        return {name: [s[index] for s in rows] for name, rows in self.samples.items()}


def _rotated(names: list[str], shift: int) -> list[str]:
    shift %= len(names)
    return names[shift:] + names[:shift]


def run_sync(
    probes: Mapping[str, Probe], calls: int, settings: Settings, max_tries: int = 1
) -> Result:
    """Round-robin batches over the variants until each has ``calls`` samples.

    ``max_tries`` bounds the calls per wanted sample when probes may reject a call."""
    for probe in probes.values():
        for _ in range(settings.warmup):
            probe()
    names = list(probes)
    result = Result({n: [] for n in names}, dict.fromkeys(names, 0))
    batch = max(1, -(-calls // settings.rounds))
    for rnd in range(settings.rounds):
        for name in _rotated(names, rnd):
            samples = result.samples[name]
            want = min(calls, len(samples) + batch)
            budget = batch * max_tries
            while len(samples) < want and budget > 0:
                budget -= 1
                result.attempts[name] += 1
                sample = probes[name]()
                if sample is not None:
                    samples.append(sample)
            time.sleep(settings.settle_s)  # let background work of this batch finish
    return result


async def run_async(
    probes: Mapping[str, AsyncProbe], calls: int, settings: Settings, max_tries: int = 1
) -> Result:
    """:func:`run_sync` for coroutines, one call at a time on the running loop."""
    for probe in probes.values():
        for _ in range(settings.warmup):
            await probe()
    names = list(probes)
    result = Result({n: [] for n in names}, dict.fromkeys(names, 0))
    batch = max(1, -(-calls // settings.rounds))
    for rnd in range(settings.rounds):
        for name in _rotated(names, rnd):
            samples = result.samples[name]
            want = min(calls, len(samples) + batch)
            budget = batch * max_tries
            while len(samples) < want and budget > 0:
                budget -= 1
                result.attempts[name] += 1
                sample = await probes[name]()
                if sample is not None:
                    samples.append(sample)
            await asyncio.sleep(settings.settle_s)
    return result


@dataclass(frozen=True)
class Memory:
    retained_kib: float
    growth_b_per_call: float
    peak_kib: float
    rss_kib: float


def _rss_kib() -> float:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1024
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 if sys.platform == "darwin" else float(peak)


def _settle(seconds: float) -> None:
    time.sleep(seconds)  # background threads (logging executors) finish here
    gc.collect()


def measure_memory(
    calls: Mapping[str, Callable[[], object]], settings: Settings
) -> dict[str, Memory]:
    """Allocation growth of N sequential calls per variant, after a warm-up (see the docstring).

    Sync calls: an event loop keeps cancelled timer handles (each holding the context of the
    call that made it) until they reach the head of its heap or a cleanup pass, so async
    numbers would depend on what else ran on the loop before."""
    out: dict[str, Memory] = {}
    n = settings.memory_calls
    half = n // 2
    for name, call in calls.items():
        for _ in range(settings.memory_warmup):
            call()
        _settle(0.2)
        rss_before = _rss_kib()
        tracemalloc.start()
        for _ in range(half):
            call()
        _settle(0.2)
        at_half = tracemalloc.get_traced_memory()[0]
        for _ in range(n - half):
            call()
        _settle(0.2)
        retained, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[name] = Memory(
            retained_kib=retained / 1024,
            growth_b_per_call=(retained - at_half) / max(1, n - half),
            peak_kib=peak / 1024,
            rss_kib=_rss_kib() - rss_before,
        )
    return out


# ---------------------------------------------------------------------- report


def _p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def print_table(
    title: str, rows: Mapping[str, Sequence[float]], baseline: str, *, note: str = ""
) -> None:
    """Median, p90 and the ratios of each variant's median to the baseline's and LiteLLM's."""
    medians = {name: statistics.median(v) for name, v in rows.items() if v}
    base = medians.get(baseline)
    ref = medians.get(LITELLM)
    width = max(len(n) for n in rows) + 2
    print(f"\n[{title}] ms per call{f' ({note})' if note else ''}")
    print(
        f"  {'variant':<{width}}{'n':>6}{'median':>10}{'p90':>10}{'+ms':>9}"
        f"{'x ' + baseline:>{len(baseline) + 6}}{'x ' + LITELLM:>20}"
    )
    for name, values in rows.items():
        if not values:
            print(f"  {name:<{width}}{0:>6}  no qualifying call")
            continue
        med = medians[name]
        delta = f"{med - base:+.3f}" if base is not None else "n/a"
        print(
            f"  {name:<{width}}{len(values):>6}{med:>10.3f}{_p90(values):>10.3f}{delta:>9}"
            f"{_ratio(med, base):>{len(baseline) + 6}}{_ratio(med, ref):>20}"
        )
    sys.stdout.flush()


def print_memory(title: str, rows: Mapping[str, Memory], baseline: str) -> None:
    base = rows[baseline].peak_kib if baseline in rows else None
    ref = rows[LITELLM].peak_kib if LITELLM in rows else None
    width = max(len(n) for n in rows) + 2
    print(f"\n[{title}]")
    print(
        f"  {'variant':<{width}}{'retained KiB':>14}{'growth/call B':>15}{'peak KiB':>10}"
        f"{'rss KiB':>10}{'x ' + baseline:>{len(baseline) + 6}}{'x ' + LITELLM:>20}"
    )
    for name, m in rows.items():
        print(
            f"  {name:<{width}}{m.retained_kib:>14.1f}{m.growth_b_per_call:>15.1f}"
            f"{m.peak_kib:>10.1f}{m.rss_kib:>10.0f}"
            f"{_ratio(m.peak_kib, base):>{len(baseline) + 6}}{_ratio(m.peak_kib, ref):>20}"
        )
    sys.stdout.flush()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=100, help="timed calls per variant and table (default 100)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="round-robin batches per table")
    parser.add_argument("--memory-calls", type=int, default=None, help="default: 2 x --calls")
    parser.add_argument("--quick", action="store_true", help="smoke run: a few calls each")
    parser.add_argument(
        "--outage-only", action="store_true", help="only the dead-primary and total-outage tables"
    )
    args = parser.parse_args()
    import router_outage  # here, not at the top: it imports this module's helpers

    outage = router_outage.QUICK if args.quick else router_outage.FULL
    if args.quick:
        settings = Settings(
            calls=12,
            failover_calls=6,
            rounds=3,
            warmup=2,
            memory_calls=20,
            memory_warmup=50,
            settle_s=0.0,
        )
    else:
        if args.calls < 1 or args.rounds < 1:
            parser.error("--calls and --rounds must be >= 1")
        settings = Settings(
            calls=args.calls,
            failover_calls=max(1, args.calls // 2),
            rounds=min(args.rounds, args.calls),
            warmup=10,
            memory_calls=args.memory_calls or 2 * args.calls,
            memory_warmup=300,
            settle_s=0.01,
        )

    litellm = import_litellm()
    scope = (
        "router outage tables only"
        if args.outage_only
        else f"router overhead: {settings.calls} timed calls per variant per table "
        f"({settings.failover_calls} for failover), {settings.rounds} round-robin batches"
    )
    print(
        f"{scope}; MockGateway in a child process, zero latency\n"
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; gatewaykit "
        f"{_version('gatewaykit')}, langchain-openai {_version('langchain-openai')}, "
        f"langgraph {_version('langgraph')}, openai {_version('openai')}, "
        f"litellm {_version('litellm')}"
    )
    sys.stdout.flush()

    with MockGateway("process", record=False) as gw:
        gw.script("*", Behavior())
        if args.outage_only:
            router_outage.run(gw, litellm, outage)
            return
        gw.script(BAD, Behavior(status=500))
        base_url = gw.base_url
        cfg = router_config(base_url, GROUP, ["dep-a", "dep-b"])
        fo_cfg = router_config(base_url, FAILOVER_GROUP, [BAD, GOOD])

        bare = chat_openai(base_url, "dep-a")
        gateway = GatewayChatModel(
            base_url=base_url,
            api_key=API_KEY,  # type: ignore[arg-type]
            model="dep-a",
            max_retries=0,
        )
        router = RouterChatModel.from_config(cfg, model=GROUP)
        lite = litellm_router(litellm, cfg)
        fo_router = RouterChatModel.from_config(fo_cfg, model=FAILOVER_GROUP)
        fo_lite = litellm_router(litellm, fo_cfg)
        counts = FailoverCounts(gw)
        fo_bare: Runnable[Any, Any] = chat_openai(base_url, BAD).with_fallbacks(
            [chat_openai(base_url, GOOD)]
        )

        # -- sync
        invoke = run_sync(
            {
                BARE: timed(lambda: bare.invoke(PROMPT)),
                GATEWAY: timed(lambda: gateway.invoke(PROMPT)),
                ROUTER: timed(lambda: router.invoke(PROMPT)),
                LITELLM: timed(lambda: lite.completion(model=GROUP, messages=MESSAGES)),
            },
            settings.calls,
            settings,
        )
        print_table("invoke sync", invoke.metric(0), BARE)

        stream = run_sync(
            {
                BARE: lc_stream(bare),
                GATEWAY: lc_stream(gateway),
                ROUTER: lc_stream(router),
                LITELLM: litellm_stream(lite, GROUP),
            },
            settings.calls,
            settings,
        )
        print_table("ttft sync", stream.metric(0), BARE, note="first chunk with text")
        print_table("stream total sync", stream.metric(1), BARE)

        fo = run_sync(
            {
                WITH_FALLBACKS: failover(counts, lambda: fo_bare.invoke(PROMPT)),
                ROUTER: failover(counts, lambda: fo_router.invoke(PROMPT)),
                LITELLM: failover(
                    counts, lambda: fo_lite.completion(model=FAILOVER_GROUP, messages=MESSAGES)
                ),
            },
            settings.failover_calls,
            settings,
            max_tries=8,
        )
        print_table("failover sync", fo.metric(0), WITH_FALLBACKS, note=_qualified(fo))

        memory = measure_memory(
            {
                BARE: lambda: bare.invoke(PROMPT),
                ROUTER: lambda: router.invoke(PROMPT),
                LITELLM: lambda: lite.completion(model=GROUP, messages=MESSAGES),
            },
            settings,
        )
        print_memory(f"memory: {settings.memory_calls} invoke calls", memory, BARE)

        # -- async: one event loop for every async table
        async def run_all_async() -> None:
            ainvoke = await run_async(
                {
                    BARE: atimed(lambda: bare.ainvoke(PROMPT)),
                    GATEWAY: atimed(lambda: gateway.ainvoke(PROMPT)),
                    ROUTER: atimed(lambda: router.ainvoke(PROMPT)),
                    LITELLM: atimed(lambda: lite.acompletion(model=GROUP, messages=MESSAGES)),
                },
                settings.calls,
                settings,
            )
            print_table("invoke async", ainvoke.metric(0), BARE)

            astream = await run_async(
                {
                    BARE: lc_astream(bare),
                    GATEWAY: lc_astream(gateway),
                    ROUTER: lc_astream(router),
                    LITELLM: litellm_astream(lite, GROUP),
                },
                settings.calls,
                settings,
            )
            print_table("ttft async", astream.metric(0), BARE, note="first chunk with text")
            print_table("stream total async", astream.metric(1), BARE)

            afo = await run_async(
                {
                    WITH_FALLBACKS: afailover(counts, lambda: fo_bare.ainvoke(PROMPT)),
                    ROUTER: afailover(counts, lambda: fo_router.ainvoke(PROMPT)),
                    LITELLM: afailover(
                        counts,
                        lambda: fo_lite.acompletion(model=FAILOVER_GROUP, messages=MESSAGES),
                    ),
                },
                settings.failover_calls,
                settings,
                max_tries=8,
            )
            print_table("failover async", afo.metric(0), WITH_FALLBACKS, note=_qualified(afo))

        asyncio.run(run_all_async())
        router_outage.run(gw, litellm, outage)


def _qualified(result: Result) -> str:
    """How many calls each variant made to get its failed-over-once samples."""
    return "calls that failed over once, of calls made: " + ", ".join(
        f"{name} {len(result.samples[name])}/{result.attempts[name]}" for name in result.samples
    )


if __name__ == "__main__":
    main()
