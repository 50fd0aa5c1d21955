"""RouterChatModel as a chat model: calls, failover, streaming honesty, tools, structure, graphs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from pydantic import BaseModel

from gatewaykit import (
    ConfigError,
    ContextWindowExceeded,
    InvalidRequest,
    NoDeploymentAvailable,
    RetryPolicy,
    RouterChatModel,
    StreamInterrupted,
    UpstreamError,
)
from gatewaykit.testing import Behavior, MockGateway

FAST = RetryPolicy(num_retries=2, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _fresh(gw: MockGateway) -> None:
    gw.reset()


def dep(gw: MockGateway, group: str, name: str, **params: Any) -> dict[str, Any]:
    info = params.pop("model_info", {})
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"openai/{name}",
            "api_base": gw.base_url,
            "api_key": "sk-deployment-key",
            **params,
        },
        "model_info": {"id": name, **info},
    }


def config(gw: MockGateway, **router: Any) -> dict[str, Any]:
    return {
        "model_list": [
            dep(gw, "chat", "chat-a", order=1),
            dep(gw, "chat", "chat-b", order=2),
            dep(gw, "backup", "backup-a"),
            dep(gw, "big", "big-a", model_info={"max_input_tokens": 100_000}),
            dep(gw, "safe", "safe-a"),
        ],
        "router_settings": {
            "fallbacks": [{"chat": ["backup"]}],
            "context_window_fallbacks": [{"chat": ["big"]}],
            "content_policy_fallbacks": [{"chat": ["safe"]}],
            **router,
        },
    }


def router(gw: MockGateway, model: str = "chat", **kw: Any) -> RouterChatModel:
    router_settings = kw.pop("router_settings", {})
    kw.setdefault("retry", FAST)
    kw.setdefault("seed", 3)
    return RouterChatModel.from_config(config(gw, **router_settings), model=model, **kw)


def tried(msg: AIMessage) -> list[tuple[str, bool]]:
    return [(a["deployment"], a["ok"]) for a in msg.response_metadata["routing"]["attempts"]]


# ---------------------------------------------------------------------- plain calls


def test_invoke_reports_the_route_and_the_gateway(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(cost=0.002))
    msg = router(gw).invoke("hello")
    routing = msg.response_metadata["routing"]
    assert routing["group"] == "chat"
    assert routing["deployment"] == "chat-a"  # order 1 first
    assert tried(msg) == [("chat-a", True)]
    assert routing["fallbacks"] == []
    assert routing["cost"] == pytest.approx(0.002)
    assert msg.response_metadata["gateway"]["response_cost"] == pytest.approx(0.002)
    assert msg.usage_metadata and msg.usage_metadata["total_tokens"] > 0


def test_constructor_builds_its_engine_and_validates_the_alias(gw: MockGateway) -> None:
    llm = RouterChatModel(config=config(gw), model="chat", max_retries=0, temperature=0.3)
    assert llm.engine.retry.num_retries == 0
    llm.invoke("hi")
    assert gw.requests_for("chat-a")[-1].body["temperature"] == 0.3  # type: ignore[index]
    with pytest.raises(ConfigError, match="nope"):
        RouterChatModel(config=config(gw), model="nope")
    with pytest.raises(ValueError, match="extra"):
        RouterChatModel(config=config(gw), model="chat", temprature=0.1)  # type: ignore[call-arg]


def test_one_key_for_every_deployment_never_shows(gw: MockGateway) -> None:
    secret = "sk-virtual-key-for-the-whole-router-0001"
    llm = RouterChatModel(config=config(gw), model="chat", api_key=secret)  # type: ignore[arg-type]
    llm.invoke("hi")
    assert gw.requests_for("chat-a")[-1].headers["authorization"] == f"Bearer {secret}"
    assert secret not in repr(llm) and secret not in str(llm.model_dump())


def test_retry_goes_to_a_deployment_not_yet_tried(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(status=500))
    llm = router(gw)
    for _ in range(3):
        msg = llm.invoke("hi")
        assert tried(msg)[-1] == ("chat-b", True)
        assert [d for d, _ in tried(msg)].count("chat-a") <= 1


def test_group_exhausted_moves_to_the_general_fallback(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(status=500))
    gw.script("chat-b", Behavior(status=503))
    msg = router(gw, retry=RetryPolicy(num_retries=1, initial_backoff=0.0)).invoke("hi")
    routing = msg.response_metadata["routing"]
    assert routing["deployment"] == "backup-a"
    assert routing["fallbacks"] == ["backup"]
    assert tried(msg)[-1] == ("backup-a", True)
    assert all(not ok for _, ok in tried(msg)[:-1])


def test_context_window_error_takes_the_context_window_fallback(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(error="context_window"))
    msg = router(gw).invoke("a long prompt")
    routing = msg.response_metadata["routing"]
    assert routing["fallbacks"] == ["big"]
    assert routing["deployment"] == "big-a"
    assert tried(msg) == [("chat-a", False), ("big-a", True)]  # deterministic: no retry


def test_content_policy_error_takes_the_content_policy_fallback(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(error="content_policy"))
    msg = router(gw).invoke("something edgy")
    assert msg.response_metadata["routing"]["fallbacks"] == ["safe"]
    assert tried(msg) == [("chat-a", False), ("safe-a", True)]


def test_a_bad_request_is_never_retried(gw: MockGateway) -> None:
    # As in LiteLLM, a fallback group may accept what this group refused; the same group is
    # never asked the same malformed question twice.
    gw.script("chat-a", Behavior(error="bad_request"))
    msg = router(gw).invoke("hi")
    assert tried(msg) == [("chat-a", False), ("backup-a", True)]
    assert gw.count("chat-a") == 1 and gw.count("chat-b") == 0


def test_a_bad_request_without_fallbacks_raises_after_one_call(gw: MockGateway) -> None:
    cfg = {"model_list": [dep(gw, "solo", "solo-a"), dep(gw, "solo", "solo-b")]}
    gw.script("solo-a", Behavior(error="bad_request"))
    gw.script("solo-b", Behavior(error="bad_request"))
    with pytest.raises(InvalidRequest) as info:
        RouterChatModel.from_config(cfg, model="solo", retry=FAST).invoke("hi")
    assert gw.count("solo-a") + gw.count("solo-b") == 1
    routing = info.value.routing  # type: ignore[attr-defined]
    assert len(routing["attempts"]) == 1


def test_a_deployment_key_error_hops_within_the_group(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(error="auth"))
    msg = router(gw).invoke("hi")
    assert tried(msg) == [("chat-a", False), ("chat-b", True)]
    assert msg.response_metadata["routing"]["fallbacks"] == []


def test_prompt_too_large_for_every_deployment_is_typed(gw: MockGateway) -> None:
    cfg = {
        "model_list": [dep(gw, "tiny", "tiny-a", model_info={"max_input_tokens": 10})],
    }
    with pytest.raises(ContextWindowExceeded, match="context window"):
        RouterChatModel.from_config(cfg, model="tiny").invoke("word " * 400)
    assert gw.count("tiny-a") == 0  # the pre-call check saved a doomed call


def test_every_failure_raises_with_every_attempt(gw: MockGateway) -> None:
    for name in ("chat-a", "chat-b", "backup-a"):
        gw.script(name, Behavior(status=500))
    llm = router(gw, retry=RetryPolicy(num_retries=1, initial_backoff=0.0), max_attempts=5)
    with pytest.raises(UpstreamError) as info:
        llm.invoke("hi")
    attempts = info.value.routing["attempts"]  # type: ignore[attr-defined]
    assert 1 < len(attempts) <= 5
    assert {a["deployment"] for a in attempts} <= {"chat-a", "chat-b", "backup-a"}


def test_rate_limit_retry_after_is_honoured(gw: MockGateway) -> None:
    cfg = {"model_list": [dep(gw, "solo", "solo-a")]}
    gw.script("solo-a", [Behavior(error="rate_limit", retry_after=0.3), Behavior()])
    llm = RouterChatModel.from_config(cfg, model="solo", retry=FAST)
    msg = llm.invoke("hi")
    assert tried(msg) == [("solo-a", False), ("solo-a", True)]
    first, second = gw.requests_for("solo-a")
    assert second.time - first.time >= 0.28


def test_waits_for_the_earliest_cooldown_instead_of_failing(gw: MockGateway) -> None:
    cfg = {
        "model_list": [dep(gw, "solo", "solo-a")],
        "router_settings": {"cooldown_time": 0.3, "allowed_fails": 0, "num_retries": 0},
    }
    llm = RouterChatModel.from_config(cfg, model="solo")
    gw.script("solo-a", [Behavior(status=500), Behavior()])
    with pytest.raises(UpstreamError):
        llm.invoke("hi")  # trips the breaker
    msg = llm.invoke("hi again")  # cooling down: wait, then the half-open trial succeeds
    routing = msg.response_metadata["routing"]
    assert routing.get("waited_ms", 0) > 0
    assert tried(msg) == [("solo-a", True)]


def test_batch_and_abatch(gw: MockGateway) -> None:
    llm = router(gw)
    out = llm.batch(["one", "two", "three"])
    assert [m.response_metadata["routing"]["deployment"] for m in out] == ["chat-a"] * 3
    out = asyncio.run(llm.abatch(["four", "five"]))
    assert all("Echo" in str(m.content) for m in out)


async def test_ainvoke_fails_over(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(status=500))
    msg = await router(gw).ainvoke("hi")
    assert tried(msg) == [("chat-a", False), ("chat-b", True)]


# ---------------------------------------------------------------------- streaming


def collect(chunks: list[AIMessageChunk]) -> tuple[str, dict[str, Any]]:
    text = "".join(str(c.content) for c in chunks)
    routing = [c.response_metadata["routing"] for c in chunks if "routing" in c.response_metadata]
    assert len(routing) == 1, "exactly one chunk carries the routing record"
    return text, routing[0]


def test_stream_fails_over_before_the_first_token(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(stream_cut_after=0, content="never seen"))
    gw.script("chat-b", Behavior(content="alpha beta gamma"))
    text, routing = collect(list(router(gw).stream("hi")))
    assert text == "alpha beta gamma"
    assert [(a["deployment"], a["ok"]) for a in routing["attempts"]] == [
        ("chat-a", False),
        ("chat-b", True),
    ]


async def test_astream_fails_over_on_a_slow_first_token(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(ttft_ms=3000, content="too slow"))
    gw.script("chat-b", Behavior(content="fast answer"))
    llm = router(gw, ttft_timeout=0.3)
    chunks = [c async for c in llm.astream("hi")]
    text, routing = collect(chunks)
    assert text == "fast answer"
    assert routing["attempts"][0]["kind"] == "timeout"


def test_stream_cut_after_tokens_raises_with_the_partial_text(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(content="one two three four five", stream_cut_after=2))
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        for chunk in router(gw).stream("hi"):
            got.append(str(chunk.content))
    assert got, "tokens arrived before the cut"
    assert info.value.partial_text == "".join(got)
    assert gw.count("chat-b") == 0  # never continued on another deployment
    assert [a["deployment"] for a in info.value.routing["attempts"]] == ["chat-a"]  # type: ignore[attr-defined]


async def test_astream_error_after_tokens_raises(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(content="one two three four", stream_error_after=2))
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        async for chunk in router(gw).astream("hi"):
            got.append(str(chunk.content))
    assert info.value.partial_text == "".join(got) != ""


@pytest.mark.parametrize("use_async", [False, True])
def test_restart_mode_delivers_one_whole_answer(gw: MockGateway, use_async: bool) -> None:
    gw.script("chat-a", Behavior(content="partial answer that breaks", stream_cut_after=2))
    gw.script("chat-b", Behavior(content="the complete answer"))
    llm = router(gw, on_stream_interrupt="restart")

    async def agather() -> list[AIMessageChunk]:
        return [c async for c in llm.astream("hi")]

    chunks = asyncio.run(agather()) if use_async else list(llm.stream("hi"))
    text, routing = collect(chunks)
    assert text == "the complete answer"
    assert [a["deployment"] for a in routing["attempts"]] == ["chat-a", "chat-b"]


def test_streamed_tool_calls_survive_failover(gw: MockGateway) -> None:
    @tool
    def lookup(city: str) -> str:
        """Look up the weather in a city."""
        return "sunny"

    gw.script("chat-a", Behavior(status=500))
    llm = router(gw).bind_tools([lookup], tool_choice="lookup")
    final: AIMessageChunk | None = None
    for chunk in llm.stream("weather in 'Paris'?"):
        final = chunk if final is None else final + chunk
    assert final is not None
    assert final.tool_calls and final.tool_calls[0]["name"] == "lookup"
    assert final.tool_calls[0]["args"] == {"city": "Paris"}


# ---------------------------------------------------------------------- tools and structure


def test_bind_tools_reach_whichever_deployment_serves(gw: MockGateway) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    gw.script("chat-a", Behavior(status=500))
    msg = router(gw).bind_tools([add]).invoke("what is 2 plus 3?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "add"
    body = gw.requests_for("chat-b")[-1].body
    assert body is not None and body["tools"][0]["function"]["name"] == "add"
    assert tried(msg) == [("chat-a", False), ("chat-b", True)]


class Verdict(BaseModel):
    label: str
    confidence: int


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_with_structured_output(gw: MockGateway, method: str) -> None:
    gw.script("chat-a", Behavior(status=500))
    if method == "json_mode":
        gw.script("chat-b", Behavior(json={"label": "spam", "confidence": 9}))
    llm = router(gw).with_structured_output(Verdict, method=method)  # type: ignore[arg-type]
    out = llm.invoke("classify 'buy now' with confidence 9 as json")
    assert isinstance(out, Verdict)
    assert gw.count("chat-b") == 1


def test_structured_output_include_raw_keeps_the_route(gw: MockGateway) -> None:
    llm = router(gw).with_structured_output(Verdict, include_raw=True)
    out = llm.invoke("classify 'hello' with confidence 3")
    assert isinstance(out, dict) and isinstance(out["parsed"], Verdict)
    assert out["raw"].response_metadata["routing"]["deployment"] == "chat-a"


# ---------------------------------------------------------------------- LangGraph and callbacks


def agent_graph(llm: RouterChatModel) -> Any:
    def call(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call)
    builder.add_edge(START, "model")
    return builder.compile()


def test_tokens_stream_once_out_of_a_langgraph_node(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(status=500))
    gw.script("chat-b", Behavior(content="one two three"))
    graph = agent_graph(router(gw))
    parts = [
        (chunk, meta)
        for chunk, meta in graph.stream({"messages": [HumanMessage("hi")]}, stream_mode="messages")
    ]
    text = "".join(str(c.content) for c, _ in parts if isinstance(c, AIMessageChunk))
    assert text == "one two three"  # once, not twice
    assert {m["langgraph_node"] for _, m in parts} == {"model"}


async def test_tokens_astream_once_out_of_a_langgraph_node(gw: MockGateway) -> None:
    gw.script("chat-b", Behavior(content="four five"))
    gw.script("chat-a", Behavior(status=500))
    graph = agent_graph(router(gw))
    text = ""
    async for chunk, _ in graph.astream({"messages": [HumanMessage("hi")]}, stream_mode="messages"):
        if isinstance(chunk, AIMessageChunk):
            text += str(chunk.content)
    assert text == "four five"


class Steps(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chains: list[str] = []
        self.llm_runs: list[UUID] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        self.chains.append(str(kw.get("name")))

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.llm_runs.append(kw["run_id"])


def test_each_attempt_is_a_visible_step(gw: MockGateway) -> None:
    gw.script("chat-a", Behavior(status=500))
    steps = Steps()
    router(gw).invoke("hi", config={"callbacks": [steps]})
    assert steps.chains.count("attempt") == 2
    assert len(steps.llm_runs) == 1  # usage is reported once: by the router's own run


def test_no_deployment_error_names_every_reason(gw: MockGateway) -> None:
    cfg = {
        "model_list": [dep(gw, "tagged", "t-a", tags=["team-a"])],
        "router_settings": {"enable_tag_filtering": True},
    }
    llm = RouterChatModel.from_config(cfg, model="tagged", gateway_tags=["team-b"])
    with pytest.raises(NoDeploymentAvailable) as info:
        llm.invoke("hi")
    assert "t-a" in info.value.reasons
    assert "tags" in info.value.reasons["t-a"]


def test_latency_routing_ranks_streams_by_time_to_first_token(gw: MockGateway) -> None:
    # slow-start answers quickly in total; quick-start starts at once but dribbles: for a
    # stream, the first token is what the user waits for.
    cfg = {
        "model_list": [dep(gw, "lat", "slow-start"), dep(gw, "lat", "quick-start")],
        "router_settings": {"routing_strategy": "latency-based-routing"},
    }
    gw.script("slow-start", Behavior(ttft_ms=250, content="a b"))
    gw.script("quick-start", Behavior(chunk_delay_ms=100, content="a b c d e"))
    llm = RouterChatModel.from_config(cfg, model="lat", seed=1)
    for _ in range(4):  # both get measured
        list(llm.stream("warm up"))
    served = []
    for _ in range(4):
        chunks = list(llm.stream("hi"))
        served.append(collect(chunks)[1]["deployment"])
    assert served == ["quick-start"] * 4
    states = llm.engine.store.view(["slow-start", "quick-start"], 0.0)
    assert states["slow-start"].ttft_s is not None and states["slow-start"].ttft_s > 0.2


def test_router_wide_allowed_fails_policy_and_stream_timeout_apply(gw: MockGateway) -> None:
    llm = router(
        gw,
        router_settings={
            "allowed_fails_policy": {"InternalServerErrorAllowedFails": 0},
            "stream_timeout": 7.5,
        },
    )
    assert llm.engine.cooldown.allowed_fails_by_kind == {"upstream": 0}
    chat_a = llm.engine.group("chat")[0]
    assert llm.engine.model_for(chat_a).ttft_timeout == 7.5
    # One 500 is more than the 0 allowed: chat-a cools down at once (default needs 5 calls).
    gw.script("chat-a", Behavior(status=500))
    assert tried(llm.invoke("hi")) == [("chat-a", False), ("chat-b", True)]
    assert tried(llm.invoke("again")) == [("chat-b", True)]
