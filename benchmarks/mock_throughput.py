"""How many chat completions per second MockGateway serves, so it is never the bottleneck.

    python benchmarks/mock_throughput.py --mode process --client httpx --concurrency 64
    python benchmarks/mock_throughput.py --mode process --client raw --clients 1

``--client httpx`` drives the mock with ``httpx.AsyncClient`` (what gatewaykit's clients use);
on a small machine one httpx process saturates its own core before the mock does, so
``--clients N`` runs N client processes at once and ``--client raw`` uses a minimal keep-alive
HTTP/1.1 client (uvloop streams) to measure the mock's own ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from typing import Any

import httpx

from gatewaykit.testing import Behavior, MockGateway

PAYLOAD: dict[str, Any] = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say something short about gateways."}],
}


async def _httpx_worker(url: str, total: int, concurrency: int, stream: bool) -> int:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    payload = dict(PAYLOAD, stream=stream)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        remaining = total

        async def one() -> int:
            nonlocal remaining
            done = 0
            while remaining > 0:
                remaining -= 1
                if stream:
                    async with client.stream("POST", "/chat/completions", json=payload) as r:
                        async for _ in r.aiter_bytes():
                            pass
                        r.raise_for_status()
                else:
                    r = await client.post("/chat/completions", json=payload)
                    r.raise_for_status()
                done += 1
            return done

        return sum(await asyncio.gather(*(one() for _ in range(concurrency))))


async def _raw_worker(host: str, port: int, total: int, concurrency: int, stream: bool) -> int:
    body = json.dumps(dict(PAYLOAD, stream=stream)).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % (host.encode(), len(body))
    ) + body
    remaining = total

    async def connection() -> int:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        done = 0
        while remaining > 0:
            remaining -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            lowered = head.lower()
            if b"transfer-encoding: chunked" in lowered:
                await reader.readuntil(b"\r\n0\r\n\r\n")
            else:
                length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            done += 1
        writer.close()
        return done

    return sum(await asyncio.gather(*(connection() for _ in range(concurrency))))


def _client_process(args: tuple[str, str, int, int, int, bool, Any]) -> tuple[int, float]:
    client, host, port, total, concurrency, stream, barrier = args
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    url = f"http://{host}:{port}/v1"

    async def main() -> int:
        if client == "raw":
            return await _raw_worker(host, port, total, concurrency, stream)
        return await _httpx_worker(url, total, concurrency, stream)

    barrier.wait()
    started = time.perf_counter()
    done: int = run(main())
    return done, time.perf_counter() - started


def measure(
    mode: str, client: str, clients: int, total: int, concurrency: int, stream: bool
) -> float:
    with MockGateway(mode, record=False) as gw:  # type: ignore[arg-type]
        gw.script("*", Behavior())
        ctx = multiprocessing.get_context("spawn")
        # warm-up (connection set-up, first imports in the server)
        _client_process((client, gw.host, gw.port, 500, concurrency, stream, _NoBarrier()))
        barrier = ctx.Manager().Barrier(clients)
        per = total // clients
        jobs = [(client, gw.host, gw.port, per, concurrency, stream, barrier)] * clients
        cpu_before = _cpu_seconds(gw.pid)
        with ctx.Pool(clients) as pool:
            results = pool.map(_client_process, jobs)
        cpu = _cpu_seconds(gw.pid) - cpu_before
        done = sum(r[0] for r in results)
        elapsed = max(r[1] for r in results)
        assert gw.count("bench") >= done
        if cpu > 0:
            print(
                f"mock process CPU: {cpu / done * 1e6:,.0f} us per request "
                f"({cpu / elapsed:.0%} of one core; ceiling ~{done / cpu:,.0f} req/s per core)"
            )
        return done / elapsed


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _NoBarrier:
    def wait(self) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["thread", "process"], default="process")
    parser.add_argument("--client", choices=["httpx", "raw"], default="httpx")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64, help="per client process")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    if args.mode == "thread" and args.clients != 1:
        parser.error("thread mode serves from the measuring process: use --clients 1")
    if args.mode == "thread":
        with MockGateway("thread", record=False) as gw:
            run: Any
            try:
                import uvloop

                run = uvloop.run
            except ImportError:  # pragma: no cover
                run = asyncio.run

            async def go(n: int) -> int:
                if args.client == "raw":
                    return await _raw_worker(gw.host, gw.port, n, args.concurrency, args.stream)
                return await _httpx_worker(gw.base_url, n, args.concurrency, args.stream)

            run(go(500))
            started = time.perf_counter()
            done = run(go(args.requests))
            rate = done / (time.perf_counter() - started)
    else:
        rate = measure(
            args.mode, args.client, args.clients, args.requests, args.concurrency, args.stream
        )
    kind = "streamed" if args.stream else "non-streaming"
    print(
        f"mode={args.mode} client={args.client} x{args.clients} concurrency={args.concurrency}: "
        f"{rate:,.0f} {kind} chat completions/s"
    )


if __name__ == "__main__":
    main()
