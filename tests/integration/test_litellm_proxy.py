"""GatewayChatModel against a real LiteLLM proxy (pinned litellm[proxy]) in front of MockGateway."""

from __future__ import annotations

import asyncio

import pytest

from gatewaykit import (
    AuthenticationFailed,
    ContentPolicyViolation,
    ContextWindowExceeded,
    GatewayChatModel,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
)

from .conftest import Proxy

pytestmark = pytest.mark.proxy


def model(proxy: Proxy, name: str, **kw: object) -> GatewayChatModel:
    params: dict[str, object] = {
        "base_url": proxy.base_url,
        "api_key": proxy.master_key,
        "model": name,
        "max_retries": 0,
    }
    params.update(kw)
    return GatewayChatModel(**params)  # type: ignore[arg-type]


def test_headers_land_in_response_metadata(litellm_proxy: Proxy) -> None:
    msg = model(litellm_proxy, "chat").invoke("hello proxy", call_id="call-from-client-1")
    info = msg.response_metadata["gateway"]
    assert info["deployment_id"] == "dep-ok"
    assert info["model_group"] == "chat"
    assert info["gateway_version"] == "1.106.2"
    assert info["call_id"] == "call-from-client-1"  # the proxy adopted our call id
    assert info["response_cost"] > 0  # priced from input/output_cost_per_token
    assert info["attempted_fallbacks"] == 0
    assert "overhead_duration_ms" in info
    assert msg.usage_metadata and msg.usage_metadata["input_tokens"] > 0


def test_streamed_headers_on_the_last_chunk(litellm_proxy: Proxy) -> None:
    chunks = list(model(litellm_proxy, "chat").stream("stream through the proxy please"))
    assert "".join(str(c.content) for c in chunks).startswith("Echo:")
    with_gateway = [c for c in chunks if "gateway" in c.response_metadata]
    assert len(with_gateway) == 1 and with_gateway[0] is chunks[-2]  # core adds an empty closer
    assert with_gateway[0].response_metadata["gateway"]["deployment_id"] == "dep-ok"


def test_tags_reach_the_proxy_and_drive_its_tag_routing(litellm_proxy: Proxy) -> None:
    tagged = model(litellm_proxy, "tagged", gateway_tags=["team-a"])
    served = {tagged.invoke("hi").response_metadata["gateway"]["deployment_id"] for _ in range(6)}
    assert served == {"dep-team-a"}
    untagged = model(litellm_proxy, "tagged")
    served = {untagged.invoke("hi").response_metadata["gateway"]["deployment_id"] for _ in range(6)}
    assert served == {"dep-default"}
    # and the upstream saw calls for the team-a deployment only when tagged
    assert litellm_proxy.upstream.count("up-team-a") >= 6


def test_proxy_side_fallback_shows_in_metadata(litellm_proxy: Proxy) -> None:
    msg = model(litellm_proxy, "flaky").invoke("hello")
    info = msg.response_metadata["gateway"]
    assert info["attempted_fallbacks"] == 1
    assert info["deployment_id"] == "dep-ok"  # served by the fallback group's deployment
    assert info["model_group"] == "chat"


def test_disable_fallbacks_reaches_the_proxy(litellm_proxy: Proxy) -> None:
    from gatewaykit import UpstreamError

    with pytest.raises(UpstreamError):
        model(litellm_proxy, "flaky").invoke("hello", disable_fallbacks=True)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("limited", RateLimited),
        ("long", ContextWindowExceeded),
        ("unsafe", ContentPolicyViolation),
        ("no-such-model", ModelNotFound),
    ],
)
def test_proxy_errors_become_typed_exceptions(litellm_proxy: Proxy, name: str, cls: type) -> None:
    llm = model(litellm_proxy, name)
    with pytest.raises(cls):
        llm.invoke("hi")
    with pytest.raises(cls):
        asyncio.run(llm.ainvoke("hi"))
    with pytest.raises(cls):
        list(llm.stream("hi"))


def test_rate_limit_carries_retry_after(litellm_proxy: Proxy) -> None:
    with pytest.raises(RateLimited) as info:
        model(litellm_proxy, "limited").invoke("hi")
    assert info.value.status == 429
    assert info.value.retry_after is not None


def test_unknown_key_without_database(litellm_proxy: Proxy) -> None:
    # Virtual keys need the proxy's database; without one the proxy answers 400
    # no_db_connection, which is an authentication problem for the caller.
    secret = "sk-not-a-real-virtual-key-123456"
    with pytest.raises((AuthenticationFailed, InvalidRequest)) as info:
        model(litellm_proxy, "chat", api_key=secret).invoke("hi")
    assert secret not in str(info.value)


def test_task_selector_reads_the_proxy_model_group_info(litellm_proxy: Proxy) -> None:
    from gatewaykit import ProxyModelInfo

    info = ProxyModelInfo(litellm_proxy.base_url, api_key=litellm_proxy.master_key)
    groups = info.groups()
    assert info.last_error is None, info.last_error
    assert {"chat", "flaky", "tagged"} <= set(groups)
    chat = groups["chat"]
    assert chat["input_cost_per_token"] == pytest.approx(0.000001)
    assert chat["output_cost_per_token"] == pytest.approx(0.000002)
