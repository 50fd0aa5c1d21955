"""What observability costs per call: GatewayMetrics, and Langfuse with its server down.

    python benchmarks/metrics_overhead.py             # 300 timed calls per variant
    python benchmarks/metrics_overhead.py --quick     # smoke run: a few calls per variant

Every variant calls the same MockGateway, run in a child process (``mode="process"``, so it does
not share the GIL with the client) with zero latency, through the same model object; only the
``callbacks`` differ:

- ``none``: no handler (the baseline);
- ``metrics``: :class:`gatewaykit.observability.GatewayMetrics` (own registry);
- ``langfuse up``: :func:`gatewaykit.observability.langfuse_callbacks` with an exporter that
  accepts and drops every span (what tracing costs when Langfuse answers at once);
- ``langfuse down``: the same, pointed at a closed port (every export fails and retries in the
  SDK's background thread);
- ``metrics + langfuse down``: both.

Each is measured for a :class:`~gatewaykit.GatewayChatModel` and a
:class:`~gatewaykit.RouterChatModel` (sync ``invoke``). Variants run interleaved in round-robin
batches so machine noise hits all of them alike. Tables: median and p90 in milliseconds, ``+ms``
(median minus the baseline's median) and ``x none`` (median over the baseline's median, same run).
A last table times the metrics handler alone, without any call around it: its start and end
events replayed on a recorded routed answer (microseconds), the part of ``+ms`` that is the
handler's own work rather than machine noise.
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gatewaykit import GatewayChatModel, RouterChatModel
from gatewaykit.observability import GatewayMetrics, langfuse_callbacks
from gatewaykit.testing import MockGateway


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(base_url: str) -> dict[str, Any]:
    def dep(name: str) -> dict[str, Any]:
        return {
            "model_name": "bench",
            "litellm_params": {"model": f"openai/{name}", "api_base": base_url, "api_key": "sk-b"},
            "model_info": {"id": name},
        }

    return {"model_list": [dep("bench-a"), dep("bench-b")]}


class _DropSpans(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _variants() -> dict[str, list[Any]]:
    metrics = GatewayMetrics()
    up = langfuse_callbacks(
        public_key=f"pk-lf-bench-{uuid.uuid4().hex[:8]}",
        secret_key="sk-lf-bench",
        base_url="http://127.0.0.1:9",
        span_exporter=_DropSpans(),
    )
    down = langfuse_callbacks(
        public_key=f"pk-lf-bench-{uuid.uuid4().hex[:8]}",
        secret_key="sk-lf-bench",
        base_url=f"http://127.0.0.1:{_closed_port()}",
        timeout=2,
    )
    return {
        "none": [],
        "metrics": [metrics],
        "langfuse up": up,
        "langfuse down": down,
        "metrics + langfuse down": [metrics, *down],
    }


def _measure(
    call: Callable[[list[Any]], None], variants: dict[str, list[Any]], calls: int, batch: int
) -> dict[str, list[float]]:
    names = list(variants)
    for name in names:  # warm-up: clients, connection pools, first-use imports
        for _ in range(5):
            call(variants[name])
    samples: dict[str, list[float]] = {n: [] for n in names}
    rounds = max(1, calls // batch)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            callbacks = variants[name]
            for _ in range(batch):
                t0 = time.perf_counter()
                call(callbacks)
                samples[name].append((time.perf_counter() - t0) * 1000)
    return samples


def _table(title: str, samples: dict[str, list[float]]) -> None:
    base = statistics.median(samples["none"])
    print(f"[{title}: ms per call, {len(samples['none'])} calls per variant]")
    print(f"  {'variant':<26}{'median':>9}{'p90':>9}{'+ms':>9}{'x none':>9}")
    for name, values in samples.items():
        med = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"  {name:<26}{med:>9.3f}{p90:>9.3f}{med - base:>+9.3f}{med / base:>8.2f}x")
    print()


def _handler_alone(answer: Any, n: int) -> None:
    """Replay one routed answer's callback events into a fresh GatewayMetrics, n times."""
    from langchain_core.outputs import ChatGeneration, LLMResult

    metrics = GatewayMetrics()
    result = LLMResult(generations=[[ChatGeneration(message=answer)]])
    metadata = {"ls_model_name": "bench", "ls_provider": "gatewaykit"}
    params = {"model": "bench"}
    runs = [uuid.uuid4() for _ in range(n)]
    t0 = time.perf_counter()
    for run_id in runs:
        metrics.on_chat_model_start(
            {}, [[]], run_id=run_id, metadata=metadata, invocation_params=params
        )
        metrics.on_llm_end(result, run_id=run_id)
    per_call_us = (time.perf_counter() - t0) / n * 1e6
    print(f"[metrics handler alone: start + end events, {n} calls]")
    print(f"  {per_call_us:.1f} us per call")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per variant")
    parser.add_argument("--quick", action="store_true", help="a few calls per variant")
    args = parser.parse_args(argv)
    calls = 20 if args.quick else args.calls
    batch = 5 if args.quick else 25
    # the SDK logs every failed export of the "down" variant; that noise is not the result
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    logging.getLogger("langfuse").setLevel(logging.CRITICAL)

    with MockGateway(mode="process", record=False) as gw:
        variants = _variants()
        plain = GatewayChatModel(
            base_url=gw.base_url, api_key="sk-b", model="bench-plain", max_retries=0
        )
        router = RouterChatModel.from_config(_config(gw.base_url), model="bench", seed=1)
        messages = "Say hi."

        def plain_call(callbacks: list[Any]) -> None:
            plain.invoke(messages, config={"callbacks": callbacks})

        def router_call(callbacks: list[Any]) -> None:
            router.invoke(messages, config={"callbacks": callbacks})

        print(f"python {sys.version.split()[0]}; MockGateway in a child process, zero latency\n")
        _table("GatewayChatModel invoke", _measure(plain_call, variants, calls, batch))
        _table("RouterChatModel invoke", _measure(router_call, variants, calls, batch))
        metrics = variants["metrics"][0]
        counted = metrics.value(
            "gatewaykit_requests_metric_total",
            requested_model="bench",
            model="bench",
            deployment="bench-a",
            status="success",
            status_code="200",
        ) + metrics.value(
            "gatewaykit_requests_metric_total",
            requested_model="bench",
            model="bench",
            deployment="bench-b",
            status="success",
            status_code="200",
        )
        print(f"router calls counted by the metrics variants: {int(counted)}")
        print()
        _handler_alone(router.invoke(messages), 2000 if not args.quick else 200)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
