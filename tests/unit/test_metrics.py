"""GatewayMetrics: exact counter values after scripted runs against MockGateway."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gatewaykit import (
    Budget,
    BudgetManager,
    ConfigError,
    GatewayChatModel,
    InMemoryResponseCache,
    RateLimited,
    RetryPolicy,
    RouterChatModel,
    load_config,
)
from gatewaykit.agents.serve import create_app
from gatewaykit.observability import (
    METRIC_NAMES,
    GatewayMetrics,
    UnsupportedCallbackWarning,
    callbacks_from_config,
    default_metrics,
    metrics_app,
    mount_metrics,
)
from gatewaykit.testing import Behavior, MockGateway

ROOT = Path(__file__).resolve().parents[2]
USAGE = {"prompt_tokens": 11, "completion_tokens": 7}


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _reset(gw: MockGateway) -> None:
    gw.reset()


def config(base_url: str) -> dict[str, Any]:
    def dep(group: str, name: str, order: int = 1) -> dict[str, Any]:
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
            dep("smart", "primary-a", 1),
            dep("smart", "primary-b", 2),
            dep("cheap", "cheap-a"),
        ],
        "router_settings": {"num_retries": 1, "fallbacks": [{"smart": ["cheap"]}]},
    }


def router(gw: MockGateway, **kw: Any) -> RouterChatModel:
    return RouterChatModel.from_config(
        config(gw.base_url),
        model="smart",
        retry=RetryPolicy(num_retries=1, initial_backoff=0.01),
        seed=7,
        **kw,
    )


def test_scripted_router_run_gives_exact_counters(gw: MockGateway) -> None:
    metrics = GatewayMetrics()
    budgets = BudgetManager([Budget(1.0, "1d")])
    llm = metrics.instrument(router(gw, budgets=budgets, cache=InMemoryResponseCache()))
    gw.script("primary-a", Behavior(status=500))
    gw.script("primary-b", Behavior(error="rate_limit", retry_after=0))
    gw.script("cheap-a", Behavior(cost=0.25, usage=USAGE))

    first = llm.invoke("What broke?")  # a 500, a 429 (cooldown), then the fallback group
    assert [a["deployment"] for a in first.response_metadata["routing"]["attempts"]] == [
        "primary-a",
        "primary-b",
        "cheap-a",
    ]
    second = llm.invoke("What broke?")  # the same question: a response-cache hit
    assert second.response_metadata["cache"]["hit"] is True

    v = metrics.value
    assert (
        v(
            "gatewaykit_requests_metric_total",
            requested_model="smart",
            model="cheap",
            deployment="cheap-a",
            status="success",
            status_code="200",
        )
        == 1
    )
    assert (
        v(
            "gatewaykit_requests_metric_total",
            requested_model="smart",
            model="smart",
            deployment="cache",
            status="success",
            status_code="200",
        )
        == 1
    )
    served = {"requested_model": "smart", "model": "cheap"}
    assert v("gatewaykit_input_tokens_metric_total", **served) == 11
    assert v("gatewaykit_output_tokens_metric_total", **served) == 7
    assert v("gatewaykit_total_tokens_metric_total", **served) == 18
    # the cache hit replays the first answer's metadata but spends nothing
    assert v("gatewaykit_spend_metric_total", **served) == pytest.approx(0.25)
    assert v("gatewaykit_spend_metric_total", requested_model="smart", model="smart") == 0
    assert v("gatewaykit_request_total_latency_metric_count", **served) == 1
    assert v("gatewaykit_llm_api_time_to_first_token_metric_count", **served) == 0
    failure = {"requested_model": "smart", "model_group": "smart"}
    assert (
        v(
            "gatewaykit_deployment_failure_responses_total",
            **failure,
            deployment="primary-a",
            exception_status="500",
            exception_class="upstream",
        )
        == 1
    )
    assert (
        v(
            "gatewaykit_deployment_failure_responses_total",
            **failure,
            deployment="primary-b",
            exception_status="429",
            exception_class="rate_limited",
        )
        == 1
    )
    assert (
        v(
            "gatewaykit_deployment_success_responses_total",
            requested_model="smart",
            model_group="cheap",
            deployment="cheap-a",
        )
        == 1
    )
    assert v("gatewaykit_retries_metric_total", **failure) == 1
    assert (
        v(
            "gatewaykit_deployment_successful_fallbacks_total",
            requested_model="smart",
            fallback_model="cheap",
        )
        == 1
    )
    assert (
        v(
            "gatewaykit_deployment_cooled_down_total",
            model_group="smart",
            deployment="primary-b",
            exception_status="429",
            exception_class="rate_limited",
        )
        == 1
    )
    assert v("gatewaykit_cache_hits_metric_total", requested_model="smart", cache="local") == 1
    assert v("gatewaykit_cache_misses_metric_total", requested_model="smart", cache="local") == 1
    budget = {"scope": "global", "key": "", "window": "1d"}
    assert v("gatewaykit_remaining_budget_metric", **budget) == pytest.approx(0.75)
    assert v("gatewaykit_max_budget_metric", **budget) == 1.0
    assert 0 < v("gatewaykit_budget_remaining_hours_metric", **budget) <= 24


def test_failed_call_counts_its_kind_status_and_failed_fallback(gw: MockGateway) -> None:
    metrics = GatewayMetrics()
    llm = metrics.instrument(router(gw))
    gw.script("primary-a", Behavior(status=500))
    gw.script("primary-b", Behavior(status=500))
    gw.script("cheap-a", Behavior(error="rate_limit", retry_after=0))
    with pytest.raises(RateLimited):
        llm.invoke("Anyone there?")
    assert (
        metrics.value(
            "gatewaykit_requests_metric_total",
            requested_model="smart",
            model="cheap",
            deployment="cheap-a",
            status="rate_limited",
            status_code="429",
        )
        == 1
    )
    assert (
        metrics.value(
            "gatewaykit_deployment_failed_fallbacks_total",
            requested_model="smart",
            fallback_model="cheap",
        )
        == 1
    )
    assert (
        metrics.value(
            "gatewaykit_deployment_successful_fallbacks_total",
            requested_model="smart",
            fallback_model="cheap",
        )
        == 0
    )


async def test_plain_model_stream_ttft_cost_and_async_error(gw: MockGateway) -> None:
    metrics = GatewayMetrics()
    llm = GatewayChatModel(
        base_url=gw.base_url, api_key="sk-test", model="plain", max_retries=0, callbacks=[metrics]
    )
    gw.script("plain", Behavior(cost=0.125, usage=USAGE, model_id="dep-plain", ttft_ms=5))
    text = "".join([str(c.content) async for c in llm.astream("Stream it.")])
    assert text
    ok = {"requested_model": "plain", "model": "plain"}
    assert metrics.value("gatewaykit_llm_api_time_to_first_token_metric_count", **ok) == 1
    assert metrics.value("gatewaykit_llm_api_time_to_first_token_metric_sum", **ok) > 0.004
    assert metrics.value("gatewaykit_spend_metric_total", **ok) == pytest.approx(0.125)
    assert metrics.value("gatewaykit_output_tokens_metric_total", **ok) == 7
    assert (
        metrics.value(
            "gatewaykit_deployment_success_responses_total",
            requested_model="plain",
            model_group="plain",
            deployment="dep-plain",
        )
        == 1
    )

    gw.script("plain", Behavior(error="rate_limit", retry_after=0))
    with pytest.raises(RateLimited):
        await llm.ainvoke("Again.")
    assert (
        metrics.value(
            "gatewaykit_requests_metric_total",
            requested_model="plain",
            model="plain",
            deployment="",
            status="rate_limited",
            status_code="429",
        )
        == 1
    )


def test_any_chat_model_is_counted(gw: MockGateway) -> None:
    from langchain_openai import ChatOpenAI

    metrics = GatewayMetrics()
    llm = ChatOpenAI(base_url=gw.base_url, api_key="sk-test", model="other", max_retries=0)
    gw.script("other", Behavior(usage=USAGE))
    llm.batch(["one", "two"], config={"callbacks": [metrics]})
    labels = {"requested_model": "other", "model": "other"}
    assert (
        metrics.value(
            "gatewaykit_requests_metric_total",
            **labels,
            deployment="",
            status="success",
            status_code="200",
        )
        == 2
    )
    assert metrics.value("gatewaykit_input_tokens_metric_total", **labels) == 22
    assert metrics.value("gatewaykit_spend_metric_total", **labels) == 0  # no cost reported


def test_registries_are_private_by_default_and_watch_is_idempotent(gw: MockGateway) -> None:
    a, b = GatewayMetrics(), GatewayMetrics()
    assert a.registry is not b.registry
    llm = router(gw)
    a.watch(llm).watch(llm.engine)
    assert llm.engine.listeners.count(a._on_engine_event) == 1
    with pytest.raises(TypeError, match="RouterEngine"):
        a.watch(object())
    assert default_metrics() is default_metrics()
    shared = CollectorRegistry()
    GatewayMetrics(shared)
    with pytest.raises(ValueError, match="already holds gatewaykit metrics"):
        GatewayMetrics(shared)


def test_a_broken_budget_ledger_does_not_break_the_scrape() -> None:
    class Broken(BudgetManager):
        def status(self, ctx: Any = None) -> Any:
            raise ConnectionError("ledger down")

    metrics = GatewayMetrics(budgets=Broken([Budget(1.0, "1d")]))
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert "gatewaykit_requests_metric" in text
    assert "gatewaykit_remaining_budget_metric{" not in text


async def test_metrics_route_on_the_serve_app(gw: MockGateway) -> None:
    metrics = GatewayMetrics()
    gw.script("primary-a", Behavior(usage=USAGE))
    llm = metrics.instrument(router(gw))
    app = mount_metrics(create_app({"smart": llm}), metrics.registry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200
        scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    assert (
        'gatewaykit_requests_metric_total{deployment="primary-a",model="smart",'
        'requested_model="smart",status="success",status_code="200"} 1.0'
    ) in scrape.text


async def test_metrics_app_bearer_token_and_method() -> None:
    app = metrics_app(CollectorRegistry(), bearer_tokens=["scrape-secret"])
    assert "scrape-secret" not in repr(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as client:
        assert (await client.get("/")).status_code == 401
        wrong = await client.get("/", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = await client.get("/", headers={"Authorization": "Bearer scrape-secret"})
        assert good.status_code == 200
        assert (await client.post("/", headers={"Authorization": "Bearer x"})).status_code == 405


def test_mount_metrics_rejects_what_it_cannot_mount() -> None:
    with pytest.raises(TypeError, match="Starlette"):
        mount_metrics(object(), CollectorRegistry())
    from starlette.applications import Starlette

    with pytest.raises(ValueError, match="start with '/'"):
        mount_metrics(Starlette(), CollectorRegistry(), "metrics")


def test_every_dashboard_query_uses_a_metric_the_registry_exposes() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [
        t["expr"]
        for p in dashboard["panels"]
        for t in p.get("targets", [])
        if isinstance(t.get("expr"), str)
    ]
    assert len(exprs) >= 8
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for e in exprs
        for name in re.findall(r"\bgatewaykit_[a-z_]+", e)
    }
    exposed = set(GatewayMetrics().families())
    assert used, "the dashboard queries no gatewaykit metric"
    assert used <= exposed, f"not in the registry: {sorted(used - exposed)}"
    assert exposed == set(METRIC_NAMES)


def test_every_documented_metric_is_in_the_docs_table() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    missing = [name for name in METRIC_NAMES if f"`{name}" not in doc]
    assert not missing


# ---------------------------------------------------------------------- config switches


def _cfg(settings: dict[str, Any]) -> Any:
    return load_config(
        {
            "model_list": [
                {"model_name": "m", "litellm_params": {"model": "openai/m", "api_key": "sk-x"}}
            ],
            "litellm_settings": settings,
        }
    )


def test_config_switches_prometheus_and_langfuse_without_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    cfg = load_config(ROOT / "tests" / "fixtures" / "configs" / "production.yaml")
    mine = GatewayMetrics()
    handlers = callbacks_from_config(cfg, metrics=mine)
    assert handlers == [mine]  # langfuse without keys is off, prometheus on once
    assert callbacks_from_config(_cfg({})) == []


def test_unknown_callbacks_warn_once_or_fail_in_strict_mode() -> None:
    cfg = _cfg({"callbacks": ["otel"], "success_callback": ["slack-alerts", "prometheus"]})
    mine = GatewayMetrics()
    with pytest.warns(UnsupportedCallbackWarning) as record:
        assert callbacks_from_config(cfg, metrics=mine) == [mine]
    messages = " | ".join(str(w.message) for w in record)
    assert "callbacks[0]: callback 'otel'" in messages
    assert "success_callback[0]: callback 'slack-alerts'" in messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callbacks_from_config(cfg, metrics=mine)  # reported once per name, not per model
    with pytest.raises(ConfigError) as info:
        callbacks_from_config(cfg, metrics=mine, strict=True)
    assert info.value.paths == [
        "litellm_settings.callbacks[0]",
        "litellm_settings.success_callback[0]",
    ]
    with pytest.raises(ConfigError, match=r"success_callback\[1\]"):
        callbacks_from_config(_cfg({"success_callback": ["prometheus", 3]}))
    with pytest.raises(ConfigError, match="must be a list"):
        callbacks_from_config(_cfg({"failure_callback": {"langfuse": True}}))


def test_config_prometheus_with_engine_counts_its_cooldowns(gw: MockGateway) -> None:
    mine = GatewayMetrics()
    llm = router(gw)
    cfg = _cfg({"success_callback": ["prometheus"]})
    assert callbacks_from_config(cfg, metrics=mine, engine=llm.engine) == [mine]
    assert mine._on_engine_event in llm.engine.listeners


def test_engine_listeners_hear_retry_cooldown_and_fallback(gw: MockGateway) -> None:
    llm = router(gw)
    events: list[tuple[str, dict[str, Any]]] = []
    llm.engine.listeners.append(lambda event, info: events.append((event, info)))
    gw.script("primary-a", Behavior(status=500))
    gw.script("primary-b", Behavior(error="rate_limit", retry_after=0))
    llm.invoke("Route me.")
    assert [e for e, _ in events] == ["retry", "cooldown", "fallback"]
    retry, cooldown, fallback = (info for _, info in events)
    assert (retry["deployment"], retry["kind"], retry["status"]) == ("primary-a", "upstream", 500)
    assert (cooldown["deployment"], cooldown["status"]) == ("primary-b", 429)
    assert cooldown["seconds"] > 0
    assert fallback == {"from_group": "smart", "to_group": "cheap", "kind": "rate_limited"}


def test_the_config_switch_reaches_the_models_built_from_it(gw: MockGateway) -> None:
    cfg = config(gw.base_url)
    cfg["litellm_settings"] = {"success_callback": ["prometheus"]}
    shared = default_metrics()
    llm = RouterChatModel.from_config(cfg, model="smart")
    assert llm.callbacks == [shared]
    assert shared._on_engine_event in llm.engine.listeners  # cooldowns counted too
    direct = GatewayChatModel.from_config(cfg, "cheap")
    assert direct.callbacks == [shared]
    before = shared.value(
        "gatewaykit_requests_metric_total",
        requested_model="cheap-a",
        model="cheap-a",
        deployment="cheap-a",
        status="success",
        status_code="200",
    )
    direct.invoke("hi")
    after = shared.value(
        "gatewaykit_requests_metric_total",
        requested_model="cheap-a",
        model="cheap-a",
        deployment="cheap-a",
        status="success",
        status_code="200",
    )
    assert after == before + 1, shared.registry
    # No switch: no handler, and a caller's own callbacks always win.
    assert RouterChatModel.from_config(config(gw.base_url), model="smart").callbacks is None
    mine = GatewayMetrics()
    assert RouterChatModel.from_config(cfg, model="smart", callbacks=[mine]).callbacks == [mine]
