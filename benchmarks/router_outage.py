"""Sustained upstream failure: the two outage tables of ``router_overhead.py``.

Printed at the end of ``python benchmarks/router_overhead.py`` (and of ``--quick``), or alone
with ``--outage-only``. Every variant calls the same MockGateway as the other tables, but each
variant of a table gets upstream models of its own (``dp-sync-router-dead``...), so one
variant's requests never show up in another's counts, and each table builds fresh clients, so
no router starts a table with health state learnt in an earlier one.

1. ``dead primary fallback`` (sync and async): group ``g0`` is one deployment that always
   answers 500, ``g1`` one healthy deployment, ``router_settings: {num_retries: 0, fallbacks:
   [{g0: [g1]}]}`` (the same dict for RouterChatModel and litellm.Router); the LangChain
   baseline is ``ChatOpenAI(g0's model, max_retries=0).with_fallbacks([ChatOpenAI(g1's
   model)])``. Each variant first makes a warm-up of sequential calls, enough to trip a breaker
   (gatewaykit cools a lone deployment down after 5 consecutive failures), then the measured
   calls, one at a time: only those are counted, so the table shows what every call costs
   once the primary is known to be down. ``calls`` counts the measured calls that returned an
   answer (p50 and p99 are over those), ``errors`` those that raised; ``dead/100`` is how many
   requests the dead primary received per 100 measured calls (the mock's counts).
2. ``total outage`` (async): one group of two deployments that both always answer 500, default
   router settings (no fallbacks). 16 callers loop on the model for a fixed window; each call
   has a client-side cap. ``calls`` counts the calls that ended (an error, or an answer should
   one come), ``time to error`` (p50, p99) is over those that raised; ``hung`` counts the calls
   that hit the cap or were still running a grace period after the window closed (then
   cancelled); ``upstream/100`` is the requests both deployments received per 100 calls
   started; ``error seen most`` is the class name of the commonest exception. Bare
   ``ChatOpenAI(max_retries=2)`` on one of the two models is the reference row (no router).

Guards, so that a variant that waits or hangs cannot make the run endless: each variant's
warm-up and its measured phase are capped in wall time (``cap``), and every call is capped
(sync calls run in a daemon thread the runner stops waiting for; async calls run under
``asyncio.timeout``). A call still running at a cap is counted in ``cut`` and ends that
variant's phase (a sync one is left to finish in its thread, on that variant's own upstream
models); a variant whose warm-up was cut is not measured. Percentiles are over the calls that
finished. Ratios divide medians (dead primary) or p99s (total outage) measured in the same run;
``n/a`` when either side has no finished call.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from router_overhead import (
    API_KEY,
    BARE,
    LITELLM,
    MESSAGES,
    PROMPT,
    ROUTER,
    WITH_FALLBACKS,
    chat_openai,
    litellm_router,
    router_config,
)

from gatewaykit import RouterChatModel
from gatewaykit.testing import Behavior, MockGateway

PRIMARY = "g0"
FALLBACK = "g1"
OUTAGE_GROUP = "outage"


@dataclass(frozen=True)
class OutageSettings:
    dead_calls: int
    """Measured calls per variant in the dead-primary tables."""
    dead_warmup: int
    """Calls per variant before measuring (more than the 5 failures that trip a breaker)."""
    dead_cap_s: float
    """Wall-time cap of each variant's warm-up, and again of its measured phase."""
    outage_s: float
    """How long the callers of the total-outage table keep calling, per variant."""
    callers: int = 16
    call_cap_s: float = 30.0
    """Client-side cap of one call."""
    grace_s: float = 2.0
    """How long calls still running when the outage window closes may take to end."""
    pace_s: float = 0.05
    """In the paced total-outage table, each caller starts one call every ``pace_s`` (16
    callers at 0.05 s offer 320 calls/s, which every variant can sustain), so time to error is
    each call's own, not the wait behind the other callers' CPU of a saturated loop."""


FULL = OutageSettings(dead_calls=300, dead_warmup=10, dead_cap_s=60.0, outage_s=20.0)
QUICK = OutageSettings(dead_calls=40, dead_warmup=6, dead_cap_s=8.0, outage_s=4.0)


@dataclass(frozen=True)
class Variant:
    """One client of a table: the sync and async call, and the upstream models to count."""

    call: Callable[[], object]
    acall: Callable[[], Awaitable[object]]
    counted: tuple[str, ...]


def _langchain(model: Runnable[Any, Any], counted: Sequence[str]) -> Variant:
    return Variant(lambda: model.invoke(PROMPT), lambda: model.ainvoke(PROMPT), tuple(counted))


def _litellm(router: Any, group: str, counted: Sequence[str]) -> Variant:
    return Variant(
        lambda: router.completion(model=group, messages=MESSAGES),
        lambda: router.acompletion(model=group, messages=MESSAGES),
        tuple(counted),
    )


def _requests(gw: MockGateway, models: Sequence[str]) -> int:
    return sum(gw.count(m) for m in models)


# ---------------------------------------------------------------------- dead primary


def dead_primary_config(base_url: str, dead: str, live: str) -> dict[str, Any]:
    """``g0`` (``dead``) falls back to ``g1`` (``live``), without retries."""
    return {
        "model_list": [
            *router_config(base_url, PRIMARY, [dead])["model_list"],
            *router_config(base_url, FALLBACK, [live])["model_list"],
        ],
        "router_settings": {"num_retries": 0, "fallbacks": [{PRIMARY: [FALLBACK]}]},
    }


def dead_primary_variants(gw: MockGateway, litellm: Any, tag: str) -> dict[str, Variant]:
    """Fresh clients for one table, each over a dead primary and a live fallback of its own."""
    out: dict[str, Variant] = {}
    for name, slug in ((ROUTER, "router"), (WITH_FALLBACKS, "fallbacks"), (LITELLM, "litellm")):
        dead, live = f"dp-{tag}-{slug}-dead", f"dp-{tag}-{slug}-live"
        gw.script(dead, Behavior(status=500))
        gw.script(live, Behavior())
        cfg = dead_primary_config(gw.base_url, dead, live)
        if name == ROUTER:
            out[name] = _langchain(RouterChatModel.from_config(cfg, model=PRIMARY), [dead])
        elif name == WITH_FALLBACKS:
            chain = chat_openai(gw.base_url, dead).with_fallbacks([chat_openai(gw.base_url, live)])
            out[name] = _langchain(chain, [dead])
        else:
            out[name] = _litellm(litellm_router(litellm, cfg), PRIMARY, [dead])
    return out


@dataclass
class Phase:
    """Sequential calls of one variant: what finished, and how many calls were made."""

    latencies: list[float] = field(default_factory=list)
    """Milliseconds, calls that returned."""
    errors: int = 0
    started: int = 0
    cut: int = 0
    """Calls still running at a cap (at most one: it ends the phase)."""
    requests: int = 0
    """Requests the counted upstream models received during the phase."""
    skipped: bool = False
    """Not run: the warm-up before it was cut."""


Outcome = tuple[float, str | None]
"""A finished call: milliseconds, and the class name of what it raised (None: it returned)."""


def _in_thread(call: Callable[[], object], timeout: float) -> Outcome | None:
    """Runs ``call`` in a daemon thread (timed there); None if it is still running at
    ``timeout`` (it is left to finish on its own)."""
    box: list[Outcome] = []

    def work() -> None:
        start = time.perf_counter()
        try:
            call()
            error: str | None = None
        except Exception as exc:
            error = type(exc).__name__
        box.append(((time.perf_counter() - start) * 1e3, error))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    return box[0] if box else None


async def _capped(acall: Callable[[], Awaitable[object]], timeout: float) -> Outcome | None:
    """``acall`` under ``asyncio.timeout``; None if it hit ``timeout`` (then it is cancelled)."""
    cap = asyncio.timeout(timeout)
    start = time.perf_counter()
    try:
        async with cap:
            await acall()
        error: str | None = None
    except Exception as exc:
        if cap.expired():
            return None
        error = type(exc).__name__
    return (time.perf_counter() - start) * 1e3, error


def _record(phase: Phase, outcome: Outcome | None) -> bool:
    """Adds one call to ``phase``; False when the call was cut (the phase ends)."""
    if outcome is None:
        phase.cut += 1
        return False
    ms, error = outcome
    if error is None:
        phase.latencies.append(ms)
    else:
        phase.errors += 1
    return True


def sync_phase(gw: MockGateway, variant: Variant, calls: int, settings: OutageSettings) -> Phase:
    phase = Phase()
    before = _requests(gw, variant.counted)
    end = time.perf_counter() + settings.dead_cap_s
    while phase.started < calls and (left := end - time.perf_counter()) > 0:
        phase.started += 1
        if not _record(phase, _in_thread(variant.call, min(settings.call_cap_s, left))):
            break
    phase.requests = _requests(gw, variant.counted) - before
    return phase


async def async_phase(
    gw: MockGateway, variant: Variant, calls: int, settings: OutageSettings
) -> Phase:
    phase = Phase()
    before = _requests(gw, variant.counted)
    end = time.perf_counter() + settings.dead_cap_s
    while phase.started < calls and (left := end - time.perf_counter()) > 0:
        phase.started += 1
        if not _record(phase, await _capped(variant.acall, min(settings.call_cap_s, left))):
            break
    phase.requests = _requests(gw, variant.counted) - before
    return phase


def dead_primary_sync(gw: MockGateway, litellm: Any, settings: OutageSettings) -> None:
    results: dict[str, Phase] = {}
    for name, variant in dead_primary_variants(gw, litellm, "sync").items():
        warm = sync_phase(gw, variant, settings.dead_warmup, settings)
        results[name] = (
            Phase(skipped=True)
            if warm.cut
            else sync_phase(gw, variant, settings.dead_calls, settings)
        )
    print_dead_primary("dead primary fallback sync", results, settings)


async def dead_primary_async(gw: MockGateway, litellm: Any, settings: OutageSettings) -> None:
    results: dict[str, Phase] = {}
    for name, variant in dead_primary_variants(gw, litellm, "async").items():
        warm = await async_phase(gw, variant, settings.dead_warmup, settings)
        results[name] = (
            Phase(skipped=True)
            if warm.cut
            else await async_phase(gw, variant, settings.dead_calls, settings)
        )
    print_dead_primary("dead primary fallback async", results, settings)


# ---------------------------------------------------------------------- total outage


@dataclass
class Outage:
    """What the callers of one variant saw during the window."""

    errors: list[float] = field(default_factory=list)
    """Time to error, milliseconds, calls that raised."""
    kinds: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    started: int = 0
    hung: int = 0
    requests: int = 0

    @property
    def completed(self) -> int:
        return len(self.errors) + self.answered


def total_outage_variants(gw: MockGateway, litellm: Any) -> dict[str, Variant]:
    out: dict[str, Variant] = {}
    for name, slug in ((ROUTER, "router"), (LITELLM, "litellm"), (BARE, "bare")):
        models = [f"out-{slug}-a", f"out-{slug}-b"]
        for m in models:
            gw.script(m, Behavior(status=500))
        cfg = {
            "model_list": router_config(gw.base_url, OUTAGE_GROUP, models)["model_list"],
            "router_settings": {},
        }
        if name == ROUTER:
            out[name] = _langchain(RouterChatModel.from_config(cfg, model=OUTAGE_GROUP), models)
        elif name == LITELLM:
            out[name] = _litellm(litellm_router(litellm, cfg), OUTAGE_GROUP, models)
        else:
            bare = ChatOpenAI(base_url=gw.base_url, api_key=API_KEY, model=models[0], max_retries=2)  # type: ignore[arg-type]
            out[name] = _langchain(bare, models)
    return out


async def outage_window(
    gw: MockGateway, variant: Variant, settings: OutageSettings, pace_s: float = 0.0
) -> Outage:
    """``settings.callers`` loops calling ``variant`` until the window closes; with ``pace_s``
    each loop starts a call every ``pace_s`` seconds at most (an open load, the loops' starts
    spread over the period), else back to back (a saturated loop: how many failed calls a
    second the client can turn around, background work included)."""
    seen = Outage()
    before = _requests(gw, variant.counted)
    end = time.perf_counter() + settings.outage_s

    async def caller(index: int) -> None:
        # Paced callers are independent clients: their starts are spread over the period,
        # not fired together as one burst.
        next_start = time.perf_counter() + pace_s * index / settings.callers
        while time.perf_counter() < end:
            if pace_s:
                await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
                next_start += pace_s
            seen.started += 1
            outcome = await _capped(variant.acall, settings.call_cap_s)
            if outcome is None:
                seen.hung += 1
            elif outcome[1] is None:
                seen.answered += 1
            else:
                seen.errors.append(outcome[0])
                seen.kinds[outcome[1]] += 1

    tasks = [asyncio.create_task(caller(i)) for i in range(settings.callers)]
    _, running = await asyncio.wait(tasks, timeout=settings.outage_s + settings.grace_s)
    for task in running:  # each is inside one call
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    seen.hung += len(running)
    seen.requests = _requests(gw, variant.counted) - before
    return seen


async def total_outage(gw: MockGateway, litellm: Any, settings: OutageSettings) -> None:
    for pace in (0.0, settings.pace_s):
        results = {
            name: await outage_window(gw, variant, settings, pace)
            for name, variant in total_outage_variants(gw, litellm).items()
        }
        print_total_outage(results, settings, pace)


# ---------------------------------------------------------------------- report


def _p99(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[-1]


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "n/a"


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def _per_100(requests: int, calls: int) -> str:
    return f"{100 * requests / calls:.1f}" if calls else "n/a"


def print_dead_primary(title: str, results: Mapping[str, Phase], settings: OutageSettings) -> None:
    p50 = {n: statistics.median(r.latencies) if r.latencies else None for n, r in results.items()}
    base, ref = p50.get(WITH_FALLBACKS), p50.get(LITELLM)
    width = max(len(n) for n in results) + 2
    print(
        f"\n[{title}] ms per call once the primary is down ({PRIMARY}: 1 deployment answering "
        f"500, fallbacks {PRIMARY} -> {FALLBACK}, num_retries 0; {settings.dead_warmup} warm-up "
        f"calls, then up to {settings.dead_calls}; cap {settings.dead_cap_s:g} s per phase)"
    )
    print(
        f"  {'variant':<{width}}{'calls':>7}{'errors':>8}{'cut':>5}{'p50':>10}{'p99':>10}"
        f"{'dead/100':>10}{'x ' + WITH_FALLBACKS:>{len(WITH_FALLBACKS) + 6}}"
        f"{'x ' + LITELLM:>20}"
    )
    for name, r in results.items():
        p99 = _p99(r.latencies) if r.latencies else None
        print(
            f"  {name:<{width}}{len(r.latencies):>7}{r.errors:>8}{r.cut:>5}"
            f"{_ms(p50[name]):>10}{_ms(p99):>10}{_per_100(r.requests, r.started):>10}"
            f"{_ratio(p50[name], base):>{len(WITH_FALLBACKS) + 6}}{_ratio(p50[name], ref):>20}"
        )
    skipped = [name for name, r in results.items() if r.skipped]
    if skipped:
        print(
            f"  (not measured, warm-up cut off at {settings.dead_cap_s:g} s: {', '.join(skipped)})"
        )
    sys.stdout.flush()


def print_total_outage(
    results: Mapping[str, Outage], settings: OutageSettings, pace_s: float
) -> None:
    p50 = {n: statistics.median(r.errors) if r.errors else None for n, r in results.items()}
    p99 = {n: _p99(r.errors) if r.errors else None for n, r in results.items()}
    base, ref = p99.get(BARE), p99.get(LITELLM)
    width = max(len(n) for n in results) + 2
    kind_width = max([len("error seen most"), *(len(k) for r in results.values() for k in r.kinds)])
    if pace_s:
        title = f"total outage paced] time to error, ms (each of {settings.callers} callers "
        title += f"starts a call every {pace_s * 1000:g} ms for"
    else:
        title = (
            f"total outage async] time to error, ms ({settings.callers} callers back to back for"
        )
    print(
        f"\n[{title} "
        f"{settings.outage_s:g} s; 2 deployments answering 500, default router settings; "
        f"cap {settings.call_cap_s:g} s per call; hung: capped, or still running "
        f"{settings.grace_s:g} s after the window; ratios divide p99s)"
    )
    print(
        f"  {'variant':<{width}}{'calls':>7}{'calls/s':>9}{'hung':>6}{'p50':>10}{'p99':>10}"
        f"{'upstream/100':>13}  {'error seen most':<{kind_width}}"
        f"{'x ' + BARE:>{len(BARE) + 6}}{'x ' + LITELLM:>20}"
    )
    for name, r in results.items():
        kind = r.kinds.most_common(1)[0][0] if r.kinds else "-"
        print(
            f"  {name:<{width}}{r.completed:>7}{r.completed / settings.outage_s:>9.0f}"
            f"{r.hung:>6}{_ms(p50[name]):>10}"
            f"{_ms(p99[name]):>10}{_per_100(r.requests, r.started):>13}  {kind:<{kind_width}}"
            f"{_ratio(p99[name], base):>{len(BARE) + 6}}{_ratio(p99[name], ref):>20}"
        )
    sys.stdout.flush()


# ---------------------------------------------------------------------- the run


def run(gw: MockGateway, litellm: Any, settings: OutageSettings) -> None:
    """The dead-primary tables (sync, async) and the total-outage table, on ``gw``."""
    dead_primary_sync(gw, litellm, settings)

    async def run_async() -> None:
        await dead_primary_async(gw, litellm, settings)
        await total_outage(gw, litellm, settings)

    asyncio.run(run_async())
