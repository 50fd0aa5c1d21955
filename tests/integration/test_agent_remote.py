"""RemoteAgentChatModel against ``langgraph dev`` serving a small tool-using agent.

One server per session, started from a temporary directory holding the agent's graph file and
its ``langgraph.json``. The agent's model is GatewayChatModel on a MockGateway owned by this test
process, so each test scripts the agent's turns before calling it.
"""

from __future__ import annotations

import json
import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)

from gatewaykit import GatewayConnectionError, GatewayTimeout, ModelNotFound
from gatewaykit.agents import AgentError, RemoteAgentChatModel
from gatewaykit.testing import Behavior, MockGateway
from tests.integration.test_langgraph_server import Server, langgraph_dev

pytestmark = pytest.mark.langgraph_server

REPO = Path(__file__).resolve().parents[2]
MODEL = "remote-agent-llm"
FINAL = "6 times 7 is 42."

AGENT_GRAPH = textwrap.dedent(
    """
    import os

    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition
    from pydantic import SecretStr

    from gatewaykit import GatewayChatModel


    @tool
    def calculator(expression: str) -> str:
        \"\"\"Evaluate a product such as '6*7'.\"\"\"
        left, _, right = expression.partition("*")
        return str(int(left) * int(right))


    llm = GatewayChatModel(
        base_url=os.environ["AGENT_UPSTREAM_URL"],
        api_key=SecretStr("sk-x"),
        model="remote-agent-llm",
        max_retries=0,
    ).bind_tools([calculator])


    def call_model(state: MessagesState) -> dict:
        return {"messages": [llm.invoke(state["messages"])]}


    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode([calculator]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    graph = builder.compile(name="calc")
    """
)

TOOL_TURN = Behavior(
    tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}],
    usage={"prompt_tokens": 10, "completion_tokens": 5},
)
ANSWER = Behavior(content=FINAL, usage={"prompt_tokens": 30, "completion_tokens": 7})


@pytest.fixture(scope="session")
def agent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("agent-server")
    upstream = MockGateway()
    upstream.start()
    (tmp / "agent.py").write_text(AGENT_GRAPH)
    (tmp / "langgraph.json").write_text(
        json.dumps({"dependencies": [str(REPO)], "graphs": {"calc": f"{tmp / 'agent.py'}:graph"}})
    )
    try:
        with langgraph_dev(tmp, upstream, {"AGENT_UPSTREAM_URL": upstream.base_url}) as server:
            yield server
    finally:
        upstream.stop()


@pytest.fixture
def server(agent_server: Server) -> Server:
    agent_server.upstream.reset()
    agent_server.upstream.script(MODEL, [TOOL_TURN, ANSWER])
    return agent_server


def remote(server: Server, **kw: Any) -> RemoteAgentChatModel:
    return RemoteAgentChatModel(url=server.url, assistant_id="calc", **kw)


def assert_final(msg: AIMessage | AIMessageChunk) -> None:
    assert msg.content == FINAL
    assert msg.tool_calls == []
    assert msg.usage_metadata is not None  # the final model call's real usage
    assert msg.usage_metadata["input_tokens"] == 30
    assert msg.usage_metadata["output_tokens"] == 7
    info = msg.response_metadata["agent"]
    assert info["name"] == "calc"
    assert info["steps"] == 2
    assert info["tool_calls"] == ["calculator"]


def test_invoke_returns_the_final_answer(server: Server) -> None:
    msg = remote(server).invoke("What is 6*7?")
    assert isinstance(msg, AIMessage)
    assert_final(msg)
    assert msg.response_metadata["agent"]["thread_id"] is None
    assert server.upstream.count(MODEL) == 2  # the tool turn ran on the server


def test_stream_yields_the_answer_tokens_once(server: Server) -> None:
    chunks = list(remote(server).stream("What is 6*7?"))
    texts = [str(c.content) for c in chunks if c.content]
    assert len(texts) > 1
    assert "".join(texts) == FINAL
    assert not any(c.tool_call_chunks for c in chunks)
    assert len([c for c in chunks if c.usage_metadata]) == 1
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert_final(total)


async def test_async_invoke_and_stream(server: Server) -> None:
    msg = await remote(server).ainvoke("What is 6*7?")
    assert_final(msg)
    server.upstream.script(MODEL, [TOOL_TURN, ANSWER])
    chunks = [c async for c in remote(server).astream("What is 6*7?")]
    assert "".join(str(c.content) for c in chunks) == FINAL


def test_stop_ends_the_remote_answer_in_invoke_and_stream(server: Server) -> None:
    msg = remote(server).invoke("What is 6*7?", stop=[" is 42"])
    assert msg.content == "6 times 7"
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] == 7
    server.upstream.script(MODEL, [TOOL_TURN, ANSWER])
    streamed = "".join(str(c.content) for c in remote(server, stop=["7 is"]).stream("6*7?"))
    assert streamed == "6 times "


def test_thread_keeps_the_conversation_on_the_server(server: Server) -> None:
    server.upstream.script(
        MODEL, [Behavior(content="Hello Ada."), Behavior(content="You are Ada.")]
    )
    thread_id = str(uuid.uuid4())
    model = remote(server)
    first = model.invoke([HumanMessage("I am Ada.")], {"configurable": {"thread_id": thread_id}})
    assert first.content == "Hello Ada."
    assert first.response_metadata["agent"]["thread_id"] == thread_id
    history: list[BaseMessage] = [HumanMessage("I am Ada."), first, HumanMessage("Who am I?")]
    second = model.invoke(history, thread_id=thread_id)
    assert second.content == "You are Ada."
    state = httpx.get(f"{server.url}/threads/{thread_id}/state", trust_env=False).json()
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai", "human", "ai"]
    body = server.upstream.requests[-1].body
    assert body is not None
    assert [m["content"] for m in body["messages"]] == ["I am Ada.", "Hello Ada.", "Who am I?"]


def test_agent_failure_is_a_typed_error(server: Server) -> None:
    server.upstream.script(MODEL, [TOOL_TURN, Behavior(status=500)])
    with pytest.raises(AgentError, match="remote agent 'calc' failed") as info:
        remote(server).invoke("What is 6*7?")
    assert "UpstreamError" in str(info.value)  # the agent's own failure, named by the server
    server.upstream.script(MODEL, [TOOL_TURN, Behavior(status=500)])
    with pytest.raises(AgentError, match="remote agent 'calc' failed"):
        list(remote(server).stream("What is 6*7?"))


def test_unknown_assistant_is_a_typed_error(server: Server) -> None:
    with pytest.raises(ModelNotFound, match="remote agent 'nope' failed") as info:
        RemoteAgentChatModel(url=server.url, assistant_id="nope").invoke("hi")
    assert info.value.status in (404, 422)
    assert "nope" in str(info.value)
    # Deterministic: a router hops to another deployment, never runs the same one again.
    assert info.value.kind == "not_found" and not info.value.is_retryable


def test_an_agent_is_a_router_deployment_and_a_fallback_target(server: Server) -> None:
    from gatewaykit import RouterChatModel

    server.upstream.script("broken-llm", Behavior(status=500))
    cfg = {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "openai/broken-llm",
                    "api_base": server.upstream.base_url,
                    "api_key": "k",
                },
                "model_info": {"id": "broken"},
            },
            {
                "model_name": "calc-agent",
                "litellm_params": {"model": "langgraph/calc", "api_base": server.url},
                "model_info": {"id": "calc-on-server"},
            },
        ],
        "router_settings": {"num_retries": 0, "fallbacks": [{"chat": ["calc-agent"]}]},
    }
    msg = RouterChatModel.from_config(cfg, model="chat").invoke("What is 6 * 7?")
    assert msg.content == FINAL
    routing = msg.response_metadata["routing"]
    assert routing["deployment"] == "calc-on-server"
    assert routing["fallbacks"] == ["calc-agent"]
    assert not msg.tool_calls  # the agent's own tool calls stayed inside
    chunks = list(RouterChatModel.from_config(cfg, model="calc-agent").stream("6 * 7?"))
    assert "".join(str(c.content) for c in chunks) == FINAL


# --- under load and side effects ---------------------------------------------------------------

LOOPING = Behavior(tool_calls=[{"name": "calculator", "arguments": {"expression": "2*3"}}])
"""The agent's model calls its tool on every turn: the run ends only at its recursion limit."""


def test_the_callers_recursion_limit_reaches_the_run(server: Server) -> None:
    server.upstream.script(MODEL, LOOPING)
    with pytest.raises(AgentError, match=r"[Rr]ecursion") as info:
        remote(server, timeout=30).invoke("loop", config={"recursion_limit": 4})
    assert not info.value.is_retryable
    # Four steps: model, tools, model, tools; never hundreds of model calls.
    assert server.upstream.count(MODEL) <= 3


def test_a_new_thread_receives_the_whole_history(server: Server) -> None:
    server.upstream.script(MODEL, ANSWER)
    history = [
        SystemMessage("You are a pirate."),
        HumanMessage("I'm Ada."),
        AIMessage("Arr, Ada."),
        HumanMessage("What is my name?"),
    ]
    thread = str(uuid.uuid4())
    remote(server).invoke(history, thread_id=thread)
    sent = server.upstream.requests_for(MODEL)[-1].body
    assert sent is not None
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    # The thread now holds it: the next turn sends only what is new, and nothing is doubled.
    server.upstream.script(MODEL, ANSWER)
    remote(server).invoke([*history, AIMessage(FINAL), HumanMessage("Again?")], thread_id=thread)
    sent = server.upstream.requests_for(MODEL)[-1].body
    assert sent is not None
    assert [m["role"] for m in sent["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]


def test_timeout_bounds_invoke_and_stream(server: Server) -> None:
    server.upstream.script(MODEL, Behavior(latency_ms=4000, content=FINAL))
    model = remote(server, timeout=1)
    for call in (model.invoke, lambda q: list(model.stream(q))):
        started = time.monotonic()
        with pytest.raises(GatewayTimeout) as info:
            call("slow")
        assert time.monotonic() - started < 3.0  # the limit, not the agent's 4 s plus retries
        assert "within 1 s" in str(info.value)
        assert not info.value.is_retryable  # the run started: it may still be running


async def test_timeout_bounds_ainvoke_and_astream(server: Server) -> None:
    server.upstream.script(MODEL, Behavior(latency_ms=4000, content=FINAL))
    model = remote(server, timeout=1)
    with pytest.raises(GatewayTimeout):
        await model.ainvoke("slow")
    with pytest.raises(GatewayTimeout):
        async for _ in model.astream("slow"):
            pass


def test_a_server_that_is_down_fails_at_once() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = RemoteAgentChatModel(url=f"http://127.0.0.1:{port}", assistant_id="calc")
    started = time.monotonic()
    with pytest.raises(GatewayConnectionError) as info:
        model.invoke("hi")
    assert time.monotonic() - started < 2.0  # no client-side retry loop
    assert info.value.is_retryable  # it never reached the server: another deployment may serve


def test_the_router_never_runs_a_failed_agent_twice(server: Server) -> None:
    from gatewaykit import RouterChatModel

    server.upstream.script(MODEL, Behavior(status=500))  # the agent's own model fails: it raises

    def config(**params: Any) -> dict[str, Any]:
        return {
            "model_list": [
                {
                    "model_name": "calc-agent",
                    "litellm_params": {"model": "langgraph/calc", "api_base": server.url, **params},
                    "model_info": {"id": "calc-on-server"},
                },
            ],
            "router_settings": {"num_retries": 2},
        }

    with pytest.raises(AgentError) as info:
        RouterChatModel.from_config(config(), model="calc-agent").invoke("6 * 7?")
    attempts = info.value.routing["attempts"]  # type: ignore[attr-defined]
    assert [a["kind"] for a in attempts] == ["agent"], attempts  # one run: its tools ran once
    # A deployment whose agent is safe to run again opts in.
    server.upstream.reset()
    server.upstream.script(MODEL, [Behavior(status=500), ANSWER])
    router = RouterChatModel.from_config(config(retry_agent_runs=True), model="calc-agent")
    msg = router.invoke("6 * 7?")
    assert msg.content == FINAL
    assert [a["ok"] for a in msg.response_metadata["routing"]["attempts"]] == [False, True]


def test_per_call_sampling_settings_are_refused(server: Server) -> None:
    with pytest.raises(ValueError, match="temperature"):
        remote(server).invoke("hi", temperature=0.1)
