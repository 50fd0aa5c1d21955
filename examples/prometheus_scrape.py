"""Prometheus metrics for routed calls, scraped from the served app's ``/metrics``.

A router over two groups (``smart`` with two deployments, ``cheap`` as its fallback), with a
response cache and a $1/day budget, serves as an OpenAI-compatible app. The script breaks both
``smart`` deployments on an embedded MockGateway (one 500, one 429), asks the same question
twice (the second answer comes from the cache), then scrapes ``/metrics`` like Prometheus would:
requests, retries, fallbacks, cooldowns, cache hits, spend and the budget left are all there,
under names that mirror the LiteLLM proxy's (``gatewaykit_*`` for ``litellm_*``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from gatewaykit import Budget, InMemoryResponseCache, RetryPolicy, RouterChatModel
from gatewaykit.agents.serve import create_app
from gatewaykit.observability import GatewayMetrics, mount_metrics
from gatewaykit.testing import Behavior, MockGateway


def config(base_url: str) -> dict[str, Any]:
    def deployment(group: str, name: str, order: int = 1) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": base_url,
                "api_key": "sk-provider-key",
                "order": order,
            },
            "model_info": {"id": name},
        }

    return {
        "model_list": [
            deployment("smart", "primary-a", order=1),
            deployment("smart", "primary-b", order=2),
            deployment("cheap", "cheap-a"),
        ],
        "router_settings": {"num_retries": 1, "fallbacks": [{"smart": ["cheap"]}]},
    }


async def main() -> None:
    with MockGateway() as gw:
        gw.script("primary-a", Behavior(status=500))
        gw.script("primary-b", Behavior(error="rate_limit", retry_after=0))
        gw.script(
            "cheap-a", Behavior(cost=0.25, usage={"prompt_tokens": 11, "completion_tokens": 7})
        )

        metrics = GatewayMetrics()  # its own registry: nothing leaks into other apps
        router = RouterChatModel.from_config(
            config(gw.base_url),
            model="smart",
            retry=RetryPolicy(num_retries=1, initial_backoff=0.01),
            budgets=[Budget(1.0, "1d")],
            cache=InMemoryResponseCache(),
            seed=7,
        )
        app = create_app({"smart": metrics.instrument(router)})
        mount_metrics(app, metrics.registry)  # GET /metrics

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            for _ in range(2):
                r = await client.post(
                    "/v1/chat/completions",
                    json={"model": "smart", "messages": [{"role": "user", "content": "Status?"}]},
                )
                r.raise_for_status()
            scrape = await client.get("/metrics")

        print(f"scrape: {scrape.status_code} {scrape.headers['content-type'].split(';')[0]}")
        wanted = (
            "gatewaykit_requests_metric_total",
            "gatewaykit_retries_metric_total",
            "gatewaykit_deployment_successful_fallbacks_total",
            "gatewaykit_deployment_cooled_down_total",
            "gatewaykit_cache_hits_metric_total",
            "gatewaykit_spend_metric_total",
            "gatewaykit_remaining_budget_metric",
        )
        for line in scrape.text.splitlines():
            if line.startswith(wanted):
                print(" ", line)

        def total(name: str) -> float:
            return sum(
                s.value
                for family in metrics.registry.collect()
                for s in family.samples
                if s.name == name
            )

        print(
            "proof: "
            f"requests={total('gatewaykit_requests_metric_total'):g} "
            f"retries={total('gatewaykit_retries_metric_total'):g} "
            f"fallbacks={total('gatewaykit_deployment_successful_fallbacks_total'):g} "
            f"cooldowns={total('gatewaykit_deployment_cooled_down_total'):g} "
            f"cache_hits={total('gatewaykit_cache_hits_metric_total'):g} "
            f"spend=${total('gatewaykit_spend_metric_total'):g} "
            f"budget_remaining=${total('gatewaykit_remaining_budget_metric'):g}"
        )


if __name__ == "__main__":
    asyncio.run(main())
