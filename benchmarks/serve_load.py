"""What agent calls in flight cost ``gatewaykit serve``: router latency and agent throughput.

    python benchmarks/serve_load.py                   # 3 rounds of 5 s, 50 agent calls in flight
    python benchmarks/serve_load.py --rounds 5 --seconds 10 --in-flight 100
    python benchmarks/serve_load.py --quick           # smoke run: one short round

Three processes besides this one, so that none shares the GIL with another:

- a MockGateway (``mode="process"``) standing for the providers: ``load-smart`` answers at
  once, ``load-agent`` after ``--latency-ms`` (150 ms);
- the **peer**: ``gatewaykit serve`` on a config whose group ``slow`` is ``load-agent``; its A2A
  face (a2a-sdk's server, ``/a2a/slow``) is an A2A agent that answers in about 150 ms;
- the **server measured**: ``gatewaykit serve`` on a config with a router group ``smart``
  (``load-smart``) and a group ``agent`` whose deployment is the peer (``a2a/slow``).

Each round has three phases, their order rotating from round to round:

1. ``idle``: sequential router calls (``smart``) through the server, nothing else running;
2. ``loaded``: ``--in-flight`` callers each keep one agent call (``agent``) in flight through
   the server for ``--seconds``, while the same sequential router calls are timed;
3. ``direct``: the same callers call the peer directly with ``A2AAgentChatModel`` for
   ``--seconds``, to see what the peer itself sustains.

Tables: ``[router call latency]``: milliseconds per router call, median and p90 over every
round's calls, and ``x idle`` (the loaded median over the idle one: an event loop that agent
calls block shows up here first). ``[agent calls]``: answered agent calls per second in each
round (median and best), and ``x direct`` (through the server over direct: what the server's
hop costs when the peer is the limit). Compare ratios across machines, not milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import SecretStr

from gatewaykit.agents import A2AAgentChatModel
from gatewaykit.testing import Behavior, MockGateway

KEY = "sk-serve-load"
ROUTER_BODY = {"model": "smart", "messages": [{"role": "user", "content": "a quick one"}]}
AGENT_BODY = {"model": "agent", "messages": [{"role": "user", "content": "hello agent"}]}


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: float
    in_flight: int
    latency_ms: float
    probe_gap_s: float = 0.01


@dataclass
class Results:
    idle: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    served_rate: list[float] = field(default_factory=list)
    direct_rate: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gatewaykit_serve(config: dict[str, Any], workdir: Path, name: str) -> Iterator[str]:
    """``gatewaykit serve`` on ``config`` in a child process; yields its root URL."""
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = _free_port()
    log = workdir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY", "OPENAI_"))}
    env["GATEWAYKIT_SERVE_KEYS"] = KEY
    argv = [sys.executable, "-m", "gatewaykit.cli", "serve", "--config", str(path)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gatewaykit serve ({name}) did not start:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def group(name: str, model: str, api_base: str, api_key: str = "k") -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": model, "api_base": api_base, "api_key": api_key},
    }


# ---------------------------------------------------------------------- phases


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


async def router_calls(http: httpx.AsyncClient, until: float, gap_s: float) -> list[float]:
    """Sequential router calls until ``until``; milliseconds each."""
    out: list[float] = []
    while time.monotonic() < until:
        start = time.perf_counter()
        r = await http.post("/chat/completions", json=ROUTER_BODY)
        r.raise_for_status()
        out.append(_ms(start))
        await asyncio.sleep(gap_s)
    return out


async def keep_in_flight(n: int, seconds: float, call: Any) -> float:
    """``n`` callers each keep one ``call()`` in flight for ``seconds``; answered calls/s."""
    stop = time.monotonic() + seconds
    answered = 0

    async def caller() -> None:
        nonlocal answered
        while time.monotonic() < stop:
            await call()
            if time.monotonic() <= stop:
                answered += 1

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(n)))
    return answered / max(1e-9, min(time.monotonic(), stop) - started)


async def run_rounds(server: str, peer: str, settings: Settings) -> Results:
    limits = httpx.Limits(max_connections=settings.in_flight + 10)
    headers = {"authorization": f"Bearer {KEY}"}
    direct = A2AAgentChatModel(url=f"{peer}/a2a/slow", api_key=SecretStr(KEY), timeout=120)
    results = Results()
    async with httpx.AsyncClient(
        base_url=f"{server}/v1", headers=headers, timeout=120, limits=limits
    ) as http:

        async def through_serve() -> None:
            r = await http.post("/chat/completions", json=AGENT_BODY)
            r.raise_for_status()

        async def to_peer() -> None:
            await direct.ainvoke("hello agent")

        for warm in (through_serve, to_peer):  # connections, the agent card, first imports
            await asyncio.gather(*(warm() for _ in range(5)))
        await router_calls(http, time.monotonic() + 0.5, settings.probe_gap_s)

        async def idle() -> None:
            results.idle += await router_calls(
                http, time.monotonic() + settings.seconds, settings.probe_gap_s
            )

        async def loaded() -> None:
            load = asyncio.create_task(
                keep_in_flight(settings.in_flight, settings.seconds, through_serve)
            )
            await asyncio.sleep(min(0.5, settings.seconds / 4))  # every caller has sent one
            results.loaded += await router_calls(
                http, time.monotonic() + settings.seconds * 0.7, settings.probe_gap_s
            )
            results.served_rate.append(await load)

        async def peer_alone() -> None:
            rate = await keep_in_flight(settings.in_flight, settings.seconds, to_peer)
            results.direct_rate.append(rate)

        phases = [idle, loaded, peer_alone]
        for rnd in range(settings.rounds):
            for phase in phases[rnd % 3 :] + phases[: rnd % 3]:
                await phase()
                await asyncio.sleep(0.2)
    return results


# ---------------------------------------------------------------------- report


def _p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def print_report(results: Results, settings: Settings) -> None:
    idle = statistics.median(results.idle)
    loaded = f"{settings.in_flight} agent calls in flight"
    width = max(len(loaded), 26) + 2
    print("\n[router call latency] ms per call through serve, sequential calls")
    print(f"  {'variant':<{width}}{'n':>6}{'median':>10}{'p90':>10}{'x idle':>10}")
    for name, values in (("idle", results.idle), (loaded, results.loaded)):
        med = statistics.median(values)
        print(
            f"  {name:<{width}}{len(values):>6}{med:>10.3f}{_p90(values):>10.3f}"
            f"{_ratio(med, idle):>10}"
        )
    direct = statistics.median(results.direct_rate)
    print(f"\n[agent calls] answered calls/s with {settings.in_flight} in flight, per round")
    print(f"  {'variant':<{width}}{'n':>6}{'median':>10}{'best':>10}{'x direct':>10}")
    for name, rates in (
        ("direct A2AAgentChatModel", results.direct_rate),
        ("through gatewaykit serve", results.served_rate),
    ):
        med = statistics.median(rates)
        print(
            f"  {name:<{width}}{len(rates):>6}{med:>10.1f}{max(rates):>10.1f}"
            f"{_ratio(med, direct):>10}"
        )
    sys.stdout.flush()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three phases")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--in-flight", type=int, default=50, help="agent calls kept in flight")
    parser.add_argument(
        "--latency-ms", type=float, default=150.0, help="how long the peer's agent takes"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: one short round")
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0 or args.in_flight < 1 or args.latency_ms < 0:
        parser.error("--rounds, --seconds and --in-flight must be positive, --latency-ms >= 0")
    settings = (
        Settings(rounds=1, seconds=1.5, in_flight=args.in_flight, latency_ms=args.latency_ms)
        if args.quick
        else Settings(args.rounds, args.seconds, args.in_flight, args.latency_ms)
    )
    print(
        f"serve load: {settings.in_flight} agent calls in flight (an A2A peer answering in "
        f"{settings.latency_ms:.0f} ms), {settings.rounds} round(s) of {settings.seconds:.1f} s "
        "per phase; MockGateway, peer and server in child processes\n"
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; gatewaykit "
        f"{_version('gatewaykit')}, a2a-sdk {_version('a2a-sdk')}, httpx {_version('httpx')}, "
        f"uvicorn {_version('uvicorn')}"
    )
    sys.stdout.flush()
    with (
        tempfile.TemporaryDirectory() as tmp,
        MockGateway("process", record=False) as gw,
    ):
        gw.script("load-agent", [Behavior(latency_ms=settings.latency_ms)])
        workdir = Path(tmp)
        peer_cfg = {"model_list": [group("slow", "openai/load-agent", gw.base_url)]}
        with gatewaykit_serve(peer_cfg, workdir, "peer") as peer:
            server_cfg = {
                "model_list": [
                    group("smart", "openai/load-smart", gw.base_url),
                    group("agent", "a2a/slow", f"{peer}/a2a/slow", KEY),
                ],
                "router_settings": {"num_retries": 0},
            }
            with gatewaykit_serve(server_cfg, workdir, "server") as server:
                results = asyncio.run(run_rounds(server, peer, settings))
    print_report(results, settings)


if __name__ == "__main__":
    main()
