"""``gatewaykit bench``: what gatewaykit adds to a call, measured against bare ChatOpenAI.

A quick, in-process version of ``benchmarks/router_overhead.py`` (which has streams, async,
failover and memory too): sync ``invoke`` latency of the same prompt, on the same zero-latency
MockGateway, through

- bare ``ChatOpenAI`` (the baseline),
- :class:`~gatewaykit.GatewayChatModel`,
- :class:`~gatewaykit.RouterChatModel` over a two-deployment group,
- LiteLLM's ``Router`` over the same group, when ``litellm`` is importable.

Variants run interleaved in rounds so machine noise hits them alike; ratios divide each
variant's median by ChatOpenAI's median from the same run. Compare ratios, not milliseconds,
across machines.

Example::

    results = measure(n=100)
    results["RouterChatModel"].median / results["ChatOpenAI"].median
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["BenchResult", "measure", "run_bench"]

PROMPT = "Say something short about gateways, in a few words please."
BASELINE = "ChatOpenAI"
_KEY = "sk-bench"


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Milliseconds per call of one variant.

    Example::

        r = measure(n=50)["RouterChatModel"]
        r.median, r.p90
    """

    name: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def _import_litellm() -> Any:
    """LiteLLM, offline: without these variables its import fetches a cost map over the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    try:
        import litellm
    except ImportError:
        return None
    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


def _variants(base_url: str, litellm: bool) -> dict[str, Callable[[], object]]:
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    from gatewaykit import GatewayChatModel, RouterChatModel

    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "bench",
                "litellm_params": {"model": f"openai/{m}", "api_base": base_url, "api_key": _KEY},
            }
            for m in ("bench-a", "bench-b")
        ],
        "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": 2},
    }
    bare = ChatOpenAI(base_url=base_url, api_key=SecretStr(_KEY), model="bench-a", max_retries=0)
    gateway = GatewayChatModel(
        base_url=base_url, api_key=SecretStr(_KEY), model="bench-a", max_retries=0
    )
    router = RouterChatModel.from_config(config, model="bench", seed=1)
    calls: dict[str, Callable[[], object]] = {
        BASELINE: lambda: bare.invoke(PROMPT),
        "GatewayChatModel": lambda: gateway.invoke(PROMPT),
        "RouterChatModel": lambda: router.invoke(PROMPT),
    }
    lib = _import_litellm() if litellm else None
    if lib is not None:
        lrouter = lib.Router(model_list=config["model_list"], **config["router_settings"])
        messages = [{"role": "user", "content": PROMPT}]
        calls["litellm.Router"] = lambda: lrouter.completion(model="bench", messages=messages)
    return calls


def measure(
    n: int = 200,
    *,
    warmup: int = 10,
    mock_mode: Literal["process", "thread"] = "process",
    litellm: bool = True,
    rounds: int = 10,
) -> dict[str, BenchResult]:
    """Median-ready samples per variant: ``n`` timed calls each, after ``warmup`` calls."""
    from gatewaykit.testing import MockGateway

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    samples: dict[str, list[float]] = {}
    with MockGateway(mode=mock_mode, record=False) as gw:
        calls = _variants(gw.base_url, litellm)
        for call in calls.values():
            for _ in range(warmup):
                call()
        samples = {name: [] for name in calls}
        names = list(calls)
        rounds = max(1, min(rounds, n))
        for r in range(rounds):
            batch = n // rounds + (1 if r < n % rounds else 0)
            start = r % len(names)  # rotate who goes first
            for name in names[start:] + names[:start]:
                call = calls[name]
                for _ in range(batch):
                    t0 = time.perf_counter()
                    call()
                    samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: BenchResult(name, tuple(s)) for name, s in samples.items()}


def render_bench(results: dict[str, BenchResult], *, as_json: bool = False) -> str:
    """A table of medians, p90 and ratios against ChatOpenAI, then one ratio line per variant."""
    base = results[BASELINE].median
    if as_json:
        return json.dumps(
            {
                name: {
                    "n": len(r.samples),
                    "median_ms": round(r.median, 4),
                    "p90_ms": round(r.p90, 4),
                    "ratio_vs_chatopenai": round(r.median / base, 3),
                }
                for name, r in results.items()
            },
            indent=2,
        )
    lines = [f"{'variant':<18} {'n':>5} {'median ms':>10} {'p90 ms':>9} {'+ms':>8} {'ratio':>7}"]
    for name, r in results.items():
        lines.append(
            f"{name:<18} {len(r.samples):>5} {r.median:>10.3f} {r.p90:>9.3f} "
            f"{r.median - base:>+8.3f} {r.median / base:>6.2f}x"
        )
    lines.append("")
    for name, r in results.items():
        if name != BASELINE:
            lines.append(f"{name} / {BASELINE}: {r.median / base:.2f}x (median, same run)")
    return "\n".join(lines)


def run_bench(
    *,
    n: int,
    warmup: int,
    mock_mode: Literal["process", "thread"],
    litellm: bool,
    as_json: bool,
) -> int:
    """``gatewaykit bench``: measure and print."""
    if not as_json:
        print(f"sync invoke, {n} calls per variant, MockGateway in a {mock_mode}, no latency")
    print(
        render_bench(
            measure(n, warmup=warmup, mock_mode=mock_mode, litellm=litellm), as_json=as_json
        )
    )
    return 0
