"""Switching models for an A/B test, and measuring each arm from what the gateway reported.

Two ways, on an embedded MockGateway standing in for a LiteLLM proxy (point GATEWAY_URL /
GATEWAY_KEY at a real proxy whose model_list has the aliases ``support-a`` and ``support-b`` to
run part 1 there):

1. **Sticky per-user split.** One chain, two model aliases behind LangChain's
   ``configurable_alternatives``. A stable hash of the user id picks the arm, so a user sees the
   same model on every request and in every process; each arm tags its calls (``arm:a`` /
   ``arm:b``) so the proxy's spend logs split by arm too. Cost and latency per arm come from
   ``response_metadata["gateway"]`` (the cost the gateway billed, its measured duration).
   Raising the share of arm B is a one-number change; at 1.0 everyone is on B.
2. **Weighted split inside one router group.** Both models are deployments of one group with
   ``weight: 4`` and ``weight: 1``; the router's simple-shuffle picks per request (no stickiness),
   keeps failover between the arms, and ``response_metadata["routing"]`` says which arm served.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField, Runnable

from gatewaykit import GatewayChatModel, RouterChatModel
from gatewaykit.testing import Behavior, MockGateway

EXPERIMENT = "support-v2"
ARMS = {"a": "support-a", "b": "support-b"}  # arm -> model alias on the proxy


def arm_for(user_id: str, share_b: float) -> str:
    """The user's arm: stable across calls, processes and restarts (unlike ``hash()``)."""
    digest = hashlib.sha256(f"{EXPERIMENT}:{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return "b" if bucket < share_b else "a"


def build_chain(base_url: str, api_key: str) -> Runnable[dict[str, Any], AIMessage]:
    """One chain; the model behind it is chosen per call through ``configurable={"arm": ...}``."""

    def model(arm: str) -> GatewayChatModel:
        return GatewayChatModel(
            base_url=base_url,
            api_key=api_key,
            model=ARMS[arm],
            gateway_tags=[f"ab:{EXPERIMENT}", f"arm:{arm}"],
            max_retries=0,
        )

    llm = model("a").configurable_alternatives(
        ConfigurableField(id="arm"), default_key="a", b=model("b")
    )
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a support assistant."), ("human", "{question}")]
    )
    return prompt | llm


@dataclass
class ArmStats:
    """What one arm cost and how fast it answered."""

    costs: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, cost: float | None, latency_ms: float) -> None:
        self.costs.append(cost or 0.0)
        self.latencies_ms.append(latency_ms)

    @property
    def mean_cost(self) -> float:
        return statistics.fmean(self.costs) if self.costs else 0.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0

    def line(self, name: str) -> str:
        return (
            f"  arm {name}: {len(self.costs)} calls, mean cost ${self.mean_cost:.5f}, "
            f"median latency {self.median_ms:.0f} ms"
        )


def sticky_split(
    chain: Runnable[dict[str, Any], AIMessage], users: list[str], share_b: float
) -> dict[str, ArmStats]:
    stats: dict[str, ArmStats] = defaultdict(ArmStats)
    for i, user in enumerate(users):
        arm = arm_for(user, share_b)
        started = time.perf_counter()
        msg = chain.invoke(
            {"question": f"Where is my order #{i}?"},
            config={"configurable": {"arm": arm}, "metadata": {"user": user}},
        )
        wall_ms = (time.perf_counter() - started) * 1000
        info = msg.response_metadata.get("gateway", {})
        stats[arm].add(info.get("response_cost"), wall_ms)
    return stats


def router_split(base_url: str, calls: int) -> dict[str, ArmStats]:
    def deployment(arm: str, weight: int) -> dict[str, Any]:
        return {
            "model_name": "support",
            "litellm_params": {
                "model": f"openai/{ARMS[arm]}",
                "api_base": base_url,
                "api_key": "sk-provider-key",
                "weight": weight,
            },
            "model_info": {"id": ARMS[arm]},
        }

    config = {"model_list": [deployment("a", 4), deployment("b", 1)]}
    router = RouterChatModel.from_config(config, model="support", seed=7)
    stats: dict[str, ArmStats] = defaultdict(ArmStats)
    for i in range(calls):
        routing = router.invoke(f"Where is my order #{i}?").response_metadata["routing"]
        stats[routing["deployment"]].add(routing["cost"], routing["latency_ms"])
    return stats


def main(base_url: str, api_key: str) -> None:
    users = [f"user-{n}" for n in range(40)]
    chain = build_chain(base_url, api_key)

    print("1. sticky per-user split, 25% on arm b")
    again = [arm_for(u, 0.25) for u in users]
    print("  assignment is sticky:", again == [arm_for(u, 0.25) for u in users])
    stats = sticky_split(chain, users, share_b=0.25)
    for arm in sorted(stats):
        print(stats[arm].line(f"{arm} ({ARMS[arm]})"))
    a, b = stats["a"], stats["b"]
    print("  b costs less per call:", b.mean_cost < a.mean_cost)
    print("  b answers faster:", b.median_ms < a.median_ms)

    rollout = {arm_for(u, 1.0) for u in users}
    print("  share_b=1.0 puts everyone on:", sorted(rollout))


if __name__ == "__main__":
    if os.environ.get("GATEWAY_URL"):
        main(os.environ["GATEWAY_URL"], os.environ.get("GATEWAY_KEY", ""))
    else:
        with MockGateway() as gw:
            # Arm a: a stronger, slower, pricier model; arm b: a small fast one.
            gw.script("support-a", Behavior(latency_ms=40, cost=0.0021))
            gw.script("support-b", Behavior(latency_ms=5, cost=0.0004))
            main(gw.base_url, "sk-example")

            tags = gw.requests_for("support-b")[0].headers.get("x-litellm-tags")
            print("  the gateway saw tags:", tags)

            print("2. weighted split inside one router group (weights 4:1)")
            stats = router_split(gw.base_url, calls=50)
            for name in sorted(stats):
                print(stats[name].line(name))
            print("  both arms served:", sorted(stats) == ["support-a", "support-b"])
