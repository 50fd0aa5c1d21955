"""The router when a deployment stays down: fall back at once, fail fast, never hang.

Three outages on an embedded MockGateway, each from a LiteLLM-dialect config:

1. a dead primary with a healthy fallback group: after five 500s the primary cools down, and
   every later call goes straight to the fallback, with no wait and no call to the dead one;
2. a total outage with no fallback: once the breaker is open, each call fails in about a
   millisecond with ``NoDeploymentAvailable``, saying when to come back (``retry_after``) and
   why each deployment was skipped;
3. a deployment that accepts calls and never answers, with LiteLLM's per-attempt ``timeout``:
   each timed-out attempt is retried on a sibling, so every call is answered.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from gatewaykit import GatewayError, NoDeploymentAvailable, RouterChatModel
from gatewaykit.testing import Behavior, MockGateway


def deployment(base_url: str, group: str, name: str) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {"model": f"openai/{name}", "api_base": base_url, "api_key": "sk-x"},
        "model_info": {"id": name},
    }


def dead_primary(gw: MockGateway) -> None:
    gw.script("primary", Behavior(status=500))
    cfg = {
        "model_list": [
            deployment(gw.base_url, "smart", "primary"),
            deployment(gw.base_url, "backup", "backup-a"),
        ],
        "router_settings": {"num_retries": 0, "fallbacks": [{"smart": ["backup"]}]},
    }
    router = RouterChatModel.from_config(cfg, model="smart")
    slowest = 0.0
    for i in range(50):
        started = time.monotonic()
        msg = router.invoke(f"question {i}")
        if i >= 5:  # the primary is cooling down from here on
            slowest = max(slowest, time.monotonic() - started)
        assert msg.response_metadata["routing"]["deployment"] == "backup-a"
    print("1. dead primary, healthy fallback group")
    print(f"  50 calls answered by backup-a; the dead primary saw {gw.count('primary')} of them")
    print(
        f"  slowest call once it cooled down: {slowest * 1000:.1f} ms (its 5 s cooldown unwaited)"
    )


def total_outage(gw: MockGateway) -> None:
    for name in ("east", "west"):
        gw.script(name, Behavior(status=500))
    cfg = {
        "model_list": [
            deployment(gw.base_url, "chat", "east"),
            deployment(gw.base_url, "chat", "west"),
        ]
    }
    router = RouterChatModel.from_config(cfg, model="chat")
    for _ in range(4):  # enough failures to open the breaker on both
        with contextlib.suppress(GatewayError):
            router.invoke("hello")
    before = gw.count("east") + gw.count("west")
    started = time.monotonic()
    try:
        router.invoke("hello")
    except NoDeploymentAvailable as exc:
        took = (time.monotonic() - started) * 1000
        print("2. total outage, no fallback")
        print(f"  NoDeploymentAvailable after {took:.1f} ms, retry_after={exc.retry_after:.1f}s")
        for dep, why in sorted(exc.reasons.items()):
            print(f"    {dep}: {why}")
    print(f"  upstream requests for that call: {gw.count('east') + gw.count('west') - before}")


def black_hole(gw: MockGateway) -> None:
    gw.script("hole", Behavior(error="timeout", hang_s=10))
    cfg = {
        "model_list": [
            deployment(gw.base_url, "chat", "hole"),
            deployment(gw.base_url, "chat", "ok-a"),
            deployment(gw.base_url, "chat", "ok-b"),
        ],
        "router_settings": {"timeout": 0.5, "num_retries": 2},  # per attempt, as in LiteLLM
    }
    router = RouterChatModel.from_config(cfg, model="chat", seed=7)
    served = [router.invoke(f"call {i}").response_metadata["routing"] for i in range(12)]
    timeouts = sum(1 for r in served for a in r["attempts"] if a.get("kind") == "timeout")
    print("3. a deployment that never answers, timeout: 0.5 per attempt")
    print(f"  12 of 12 calls answered; {timeouts} attempts timed out and were retried elsewhere")


def main() -> None:
    with MockGateway() as gw:
        dead_primary(gw)
        gw.reset()
        total_outage(gw)
        gw.reset()
        black_hole(gw)


if __name__ == "__main__":
    main()
