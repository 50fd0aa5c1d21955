"""GatewayChatModel against MockGateway: request controls, gateway metadata, typed errors,
honest streams, secrets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool

from gatewaykit import (
    AuthenticationFailed,
    BudgetExceeded,
    ContentPolicyViolation,
    ContextWindowExceeded,
    GatewayChatModel,
    GatewayTimeout,
    GuardrailBlocked,
    ModelAccessDenied,
    NoDeploymentAvailable,
    RateLimited,
    StreamInterrupted,
    UpstreamError,
)
from gatewaykit.testing import Behavior, MockGateway

SECRET = "sk-very-secret-virtual-key-0123456789"


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as g:
        yield g


@pytest.fixture(autouse=True)
def _reset(gw: MockGateway) -> None:
    gw.reset()


def make(gw: MockGateway, **kw: object) -> GatewayChatModel:
    params: dict[str, object] = {
        "base_url": gw.base_url,
        "api_key": SECRET,
        "model": "m1",
        "max_retries": 0,
    }
    params.update(kw)
    return GatewayChatModel(**params)  # type: ignore[arg-type]


def last_body(gw: MockGateway) -> dict:
    body = gw.requests[-1].body
    assert body is not None
    return body


# ---------------------------------------------------------------- request controls


def test_instance_and_call_controls_are_merged(gw: MockGateway) -> None:
    llm = make(
        gw,
        gateway_tags=["team-a"],
        gateway_metadata={"app": "search"},
        end_user="user-1",
        extra_body={"custom": 1},
    )
    llm.invoke(
        "hi",
        gateway_tags=["code-review"],
        gateway_metadata={"pr": "42"},
        call_id="call-123",
        trace_id="trace-9",
        guardrails={"pii-mask": True, "toxicity": False},
        cache_control={"no_cache": True, "ttl": 60, "namespace": "ns1"},
        num_retries=0,
        disable_fallbacks=True,
    )
    req = gw.requests[-1]
    body = last_body(gw)
    assert req.headers["x-litellm-tags"] == "team-a,code-review"
    assert req.headers["x-litellm-call-id"] == "call-123"
    assert req.headers["x-litellm-num-retries"] == "0"
    assert body["metadata"] == {
        "app": "search",
        "pr": "42",
        "tags": ["team-a", "code-review"],
        "trace_id": "trace-9",
        "guardrails": {"pii-mask": True, "toxicity": False},
    }
    assert body["user"] == "user-1"
    assert body["guardrails"] == ["pii-mask"]
    assert body["cache"] == {"no-cache": True, "ttl": 60, "namespace": "ns1"}
    assert body["disable_fallbacks"] is True
    assert body["custom"] == 1  # the instance's extra_body survives per-call options


def test_bind_and_configurable_options(gw: MockGateway) -> None:
    llm = make(gw).bind(end_user="bound-user", gateway_tags=["bound"])
    llm.invoke("hi", config={"configurable": {"gateway": {"cache_control": {"no_store": True}}}})
    body = last_body(gw)
    assert body["user"] == "bound-user"
    assert body["metadata"]["tags"] == ["bound"]
    assert body["cache"] == {"no-store": True}


def test_unknown_configurable_option_is_a_clear_error(gw: MockGateway) -> None:
    with pytest.raises(ValueError, match=r"configurable.gateway.tagz: unknown gateway option"):
        make(gw).invoke("hi", config={"configurable": {"gateway": {"tagz": ["x"]}}})


def test_run_tags_and_metadata_mapping_in_a_chain(gw: MockGateway) -> None:
    llm = make(gw, map_run_tags=True, map_run_metadata=True)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm
    chain.invoke(
        {"q": "hello"}, config={"tags": ["nightly"], "metadata": {"job": "etl", "obj": object()}}
    )
    req = gw.requests[-1]
    assert "nightly" in req.headers["x-litellm-tags"].split(",")
    assert last_body(gw)["metadata"]["job"] == "etl"
    assert "obj" not in last_body(gw)["metadata"]  # non-JSON values are not sent


def test_run_tags_not_mapped_by_default(gw: MockGateway) -> None:
    make(gw).invoke("hi", config={"tags": ["private"]})
    assert "x-litellm-tags" not in gw.requests[-1].headers


def test_openai_dialect_sends_only_standard_fields(gw: MockGateway) -> None:
    make(gw, dialect="openai", gateway_tags=["t"], end_user="u").invoke("hi")
    body = last_body(gw)
    assert body["user"] == "u"
    assert "metadata" not in body and "x-litellm-tags" not in gw.requests[-1].headers


# ---------------------------------------------------------------- gateway metadata


def test_gateway_metadata_on_invoke(gw: MockGateway) -> None:
    gw.script(
        "m1", Behavior(cost=0.0042, model_id="dep-east", model_group="smart", attempted_fallbacks=1)
    )
    msg = make(gw).invoke("hi")
    info = msg.response_metadata["gateway"]
    assert info["deployment_id"] == "dep-east"
    assert info["model_group"] == "smart"
    assert info["response_cost"] == 0.0042
    assert info["attempted_fallbacks"] == 1
    assert "headers" not in msg.response_metadata  # parsed, not dumped raw


async def test_gateway_metadata_on_ainvoke_and_streams(gw: MockGateway) -> None:
    gw.script("m1", Behavior(cost=0.5, model_id="dep-x"))
    llm = make(gw)
    msg = await llm.ainvoke("hi")
    assert msg.response_metadata["gateway"]["deployment_id"] == "dep-x"
    chunks = [c async for c in llm.astream("stream please")]
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert isinstance(merged, AIMessageChunk)
    assert merged.response_metadata["gateway"]["response_cost"] == 0.5
    assert merged.usage_metadata and merged.usage_metadata["input_tokens"] > 0
    sync_chunks = list(llm.stream("stream please"))
    assert sum("gateway" in c.response_metadata for c in sync_chunks) == 1


def test_keep_raw_headers(gw: MockGateway) -> None:
    msg = make(gw, include_response_headers=True).invoke("hi")
    assert "x-litellm-model-id" in msg.response_metadata["headers"]
    assert "gateway" in msg.response_metadata


# ---------------------------------------------------------------- typed errors

ERROR_CASES = [
    (Behavior(error="budget_exceeded"), "legacy", BudgetExceeded, 400),
    (
        Behavior(error="budget_exceeded"),
        "1.106.2",
        BudgetExceeded,
        422,
    ),  # litellm.budget_exceeded_status_code
    (Behavior(error="model_not_allowed"), "legacy", ModelAccessDenied, 401),
    (Behavior(error="model_not_allowed"), "1.106.2", ModelAccessDenied, 403),
    (Behavior(error="guardrail_blocked"), "1.106.2", GuardrailBlocked, 400),
    (Behavior(error="rate_limit", retry_after=4), "1.106.2", RateLimited, 429),
    (Behavior(error="context_window"), "1.106.2", ContextWindowExceeded, 400),
    (Behavior(error="content_policy"), "1.106.2", ContentPolicyViolation, 400),
    (Behavior(error="no_deployments"), "1.106.2", NoDeploymentAvailable, 429),
    (Behavior(error="auth"), "1.106.2", AuthenticationFailed, 401),
    (Behavior(error="server"), "1.106.2", UpstreamError, 500),
]


@pytest.fixture(scope="module")
def legacy_gw() -> Iterator[MockGateway]:
    with MockGateway(litellm_version="legacy") as g:
        yield g


@pytest.mark.parametrize(("behavior", "version", "cls", "status"), ERROR_CASES)
@pytest.mark.parametrize("path", ["invoke", "ainvoke", "stream", "astream"])
def test_errors_are_typed_on_every_path(
    gw: MockGateway,
    legacy_gw: MockGateway,
    behavior: Behavior,
    version: str,
    cls: type,
    status: int,
    path: str,
) -> None:
    target = legacy_gw if version == "legacy" else gw
    target.reset()
    target.script("m1", behavior)
    llm = make(target)
    with pytest.raises(cls) as info:
        if path == "invoke":
            llm.invoke("hi")
        elif path == "ainvoke":
            asyncio.run(llm.ainvoke("hi"))
        elif path == "stream":
            list(llm.stream("hi"))
        else:

            async def consume() -> None:
                async for _ in llm.astream("hi"):
                    pass

            asyncio.run(consume())
    err = info.value
    assert err.status == status
    assert isinstance(err, openai.APIStatusError)  # still the SDK's class too
    if cls is RateLimited:
        assert err.retry_after == 4.0
    assert SECRET not in str(err) and SECRET not in repr(err)


def test_virtual_key_budget_runs_out(gw: MockGateway) -> None:
    gw.add_key("sk-team-key-000000001", models=["m1"], max_budget=0.00005)
    llm = make(gw, api_key="sk-team-key-000000001")
    spent = []
    with pytest.raises(BudgetExceeded) as info:
        for _ in range(50):
            spent.append(llm.invoke("hello budget").response_metadata["gateway"]["key_spend"])
    assert spent and spent == sorted(spent)  # key spend grows call by call
    assert info.value.max_budget == pytest.approx(0.00005)
    assert "sk-team-key-000000001" not in str(info.value)


def test_virtual_key_model_access(gw: MockGateway) -> None:
    gw.add_key("sk-team-key-000000002", models=["m1"])
    llm = make(gw, api_key="sk-team-key-000000002", model="m-other")
    with pytest.raises(ModelAccessDenied) as info:
        llm.invoke("hi")
    assert info.value.model == "m-other"


# ---------------------------------------------------------------- honest streams


def test_stream_cut_raises_stream_interrupted_with_partial_text(gw: MockGateway) -> None:
    gw.script("m1", Behavior(content="one two three four five six seven", stream_cut_after=2))
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        for c in make(gw).stream("hi"):
            got.append(str(c.content))
    assert info.value.partial_text == "".join(got) and info.value.partial_text
    assert info.value.chunks_received >= 1


async def test_stream_error_event_after_tokens(gw: MockGateway) -> None:
    gw.script(
        "m1", Behavior(content="alpha beta gamma delta", stream_error_after=2, error="server")
    )
    with pytest.raises(StreamInterrupted) as info:
        async for _ in make(gw).astream("hi"):
            pass
    assert info.value.partial_text


async def test_ttft_timeout_async_is_exact(gw: MockGateway) -> None:
    gw.script("m1", Behavior(ttft_ms=2000))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(GatewayTimeout) as info:
        async for _ in make(gw, ttft_timeout=0.3).astream("hi"):
            pass
    assert info.value.phase == "ttft"
    assert loop.time() - t0 < 1.5


def test_ttft_timeout_sync(gw: MockGateway) -> None:
    gw.script("m1", Behavior(ttft_ms=3000))
    with pytest.raises(GatewayTimeout):
        list(make(gw, ttft_timeout=0.3).stream("hi"))


async def test_idle_timeout_after_tokens_is_an_interruption(gw: MockGateway) -> None:
    gw.script("m1", Behavior(content="a b c d e f g h", stall_after=2, stall_s=3))
    with pytest.raises(StreamInterrupted) as info:
        async for _ in make(gw, idle_timeout=0.3).astream("hi"):
            pass
    assert info.value.partial_text


def test_content_filter_without_answer_is_a_policy_error(gw: MockGateway) -> None:
    gw.script("m1", Behavior(content="", finish_reason="content_filter"))
    with pytest.raises(ContentPolicyViolation):
        make(gw).invoke("hi")


# ---------------------------------------------------------------- tools, composition, secrets


@tool
def magic(x: int) -> int:
    """Apply magic to x."""
    return x + 1


def test_tool_calls_and_batch(gw: MockGateway) -> None:
    llm = make(gw).bind_tools([magic], tool_choice="magic")
    msg = llm.invoke("use magic on 5")
    assert msg.tool_calls[0]["name"] == "magic" and msg.tool_calls[0]["args"] == {"x": 5}
    outs = make(gw).batch(["a", "b", "c"])
    assert [o.content for o in outs] == ["Echo: a", "Echo: b", "Echo: c"]


def test_secrets_never_in_repr_or_logs(gw: MockGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    llm = make(gw)
    llm.invoke("hi")
    assert SECRET not in repr(llm) and SECRET not in str(llm)
    assert SECRET not in caplog.text


def test_ls_params_and_serialization_flags(gw: MockGateway) -> None:
    llm = make(gw)
    params = llm._get_ls_params(model="other")
    assert params["ls_provider"] == "litellm" and params["ls_model_name"] == "other"
    assert GatewayChatModel.is_lc_serializable() is False


def test_async_calls_from_several_event_loops(gw: MockGateway) -> None:
    # langchain-openai's shared client breaks on the second asyncio.run(); ours does not.
    llm = make(gw)
    for i in range(3):
        msg = asyncio.run(llm.ainvoke(f"loop {i}"))
        assert msg.content == f"Echo: loop {i}"
