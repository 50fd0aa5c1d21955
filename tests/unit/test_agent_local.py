"""AgentChatModel over a hand-built ReAct graph whose model is GatewayChatModel on MockGateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import SecretStr

from gatewaykit import GatewayChatModel, UpstreamError
from gatewaykit.agents import AgentChatModel, AgentError
from gatewaykit.testing import Behavior, MockGateway

MODEL = "agent-llm"
FINAL = "6 times 7 is 42, and it is noon."


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '6*7'."""
    left, _, right = expression.partition("*")
    return str(int(left) * int(right))


@tool
def current_time() -> str:
    """The current UTC time."""
    return "2026-01-01T12:00:00Z"


TOOLS = [calculator, current_time]
REACT_SCRIPT = [
    Behavior(
        tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}],
        usage={"prompt_tokens": 10, "completion_tokens": 5},
    ),
    Behavior(
        tool_calls=[{"name": "current_time", "arguments": {}}],
        usage={"prompt_tokens": 20, "completion_tokens": 6},
    ),
    Behavior(content=FINAL, usage={"prompt_tokens": 30, "completion_tokens": 7}),
]


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as g:
        yield g


@pytest.fixture(autouse=True)
def _reset(gw: MockGateway) -> None:
    gw.reset()


def llm(gw: MockGateway) -> GatewayChatModel:
    return GatewayChatModel(
        base_url=gw.base_url, api_key=SecretStr("sk-test"), model=MODEL, max_retries=0
    )


def react_graph(gw: MockGateway, *, checkpointer: Any = None) -> Any:
    bound = llm(gw).bind_tools(TOOLS)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("model", call_model)
    g.add_node("tools", ToolNode(TOOLS))
    g.add_edge(START, "model")
    g.add_conditional_edges("model", tools_condition)
    g.add_edge("tools", "model")
    return g.compile(checkpointer=checkpointer, name="math")


def agent(gw: MockGateway, **kw: Any) -> AgentChatModel:
    gw.script(MODEL, REACT_SCRIPT)
    return AgentChatModel(graph=react_graph(gw), **kw)


def assert_usage(msg: AIMessage) -> None:
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == 60
    assert msg.usage_metadata["output_tokens"] == 18
    assert msg.usage_metadata["total_tokens"] == 78


def test_invoke_returns_the_final_answer_with_summed_usage(gw: MockGateway) -> None:
    msg = agent(gw).invoke("What is 6*7, and what time is it?")
    assert isinstance(msg, AIMessage)
    assert msg.content == FINAL
    assert msg.tool_calls == [] and "tool_calls" not in msg.additional_kwargs
    assert_usage(msg)
    info = msg.response_metadata["agent"]
    assert info == {
        "name": "math",
        "thread_id": None,
        "steps": 3,
        "tool_calls": ["calculator", "current_time"],
    }
    # The tools really ran: their results reached the model's last call.
    last = gw.requests[-1].body
    assert last is not None
    tool_results = [m["content"] for m in last["messages"] if m["role"] == "tool"]
    assert tool_results == ["42", "2026-01-01T12:00:00Z"]


async def test_ainvoke_matches_invoke(gw: MockGateway) -> None:
    msg = await agent(gw, agent_name="calc").ainvoke("What is 6*7?")
    assert msg.content == FINAL
    assert_usage(msg)
    assert msg.response_metadata["agent"]["name"] == "calc"


def test_stream_forwards_only_the_final_answer_tokens(gw: MockGateway) -> None:
    chunks = list(agent(gw).stream("What is 6*7?"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 1  # token by token, not one burst
    assert "".join(str(t) for t in texts) == FINAL
    assert not any(c.tool_call_chunks for c in chunks)  # the agent's tool calls stay inside
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1  # usage reported once
    assert len({c.id for c in chunks}) == 1  # one message: the agent's own run
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == FINAL
    assert_usage(total)
    assert total.response_metadata["agent"]["steps"] == 3


async def test_astream_forwards_only_the_final_answer_tokens(gw: MockGateway) -> None:
    chunks = [c async for c in agent(gw).astream("What is 6*7?")]
    assert "".join(str(c.content) for c in chunks) == FINAL
    assert sum(1 for c in chunks if c.content) > 1
    assert len([c for c in chunks if c.usage_metadata]) == 1


def test_no_double_tokens_inside_a_langgraph_node(gw: MockGateway) -> None:
    model = agent(gw)

    def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    outer = StateGraph(MessagesState)
    outer.add_node("answer", answer)
    outer.add_edge(START, "answer")
    outer.add_edge("answer", END)
    graph = outer.compile()
    tokens: list[str] = []
    ids: set[str | None] = set()
    nodes: set[str] = set()
    parts: Any = graph.stream({"messages": [HumanMessage("What is 6*7?")]}, stream_mode="messages")
    for chunk, meta in parts:
        nodes.add(meta["langgraph_node"])
        if chunk.content:
            tokens.append(str(chunk.content))
            ids.add(chunk.id)
    assert "".join(tokens) == FINAL  # every token once: none from the agent's inner model
    assert len(ids) == 1
    assert nodes == {"answer"}


def test_thread_continuity_sends_only_new_messages(gw: MockGateway) -> None:
    gw.script(MODEL, [Behavior(content="Hello Ada."), Behavior(content="Your name is Ada.")])
    saver = InMemorySaver()
    graph = react_graph(gw, checkpointer=saver)
    model = AgentChatModel(graph=graph)
    config: Any = {"configurable": {"thread_id": "t-1"}}
    first = model.invoke([HumanMessage("I am Ada.")], config)
    assert first.content == "Hello Ada."
    assert first.response_metadata["agent"]["thread_id"] == "t-1"
    history: list[BaseMessage] = [HumanMessage("I am Ada."), first, HumanMessage("Who am I?")]
    second = model.invoke(history, thread_id="t-1")
    assert second.content == "Your name is Ada."
    state = graph.get_state(config).values["messages"]
    assert [m.type for m in state] == ["human", "ai", "human", "ai"]  # nothing sent twice
    body = gw.requests[-1].body
    assert body is not None
    assert [m["content"] for m in body["messages"]] == ["I am Ada.", "Hello Ada.", "Who am I?"]
    # Another thread starts empty.
    gw.script(MODEL, Behavior(content="Hi."))
    model.invoke([HumanMessage("Hi")], thread_id="t-2")
    assert len(graph.get_state({"configurable": {"thread_id": "t-2"}}).values["messages"]) == 2


class QA(TypedDict, total=False):
    question: str
    answer: str


def test_mapper_graph(gw: MockGateway) -> None:
    gw.script(MODEL, Behavior(content="Paris", usage={"prompt_tokens": 4, "completion_tokens": 1}))
    model_llm = llm(gw)

    def solve(state: QA) -> QA:
        return {"answer": str(model_llm.invoke(state["question"]).content)}

    g = StateGraph(QA)
    g.add_node("solve", solve)
    g.add_edge(START, "solve")
    graph = g.compile(name="qa")
    model = AgentChatModel(
        graph=graph,
        input_mapper=lambda msgs: {"question": str(msgs[-1].content)},
        output_mapper=lambda state: f"Answer: {state['answer']}",
    )
    msg = model.invoke("Capital of France?")
    assert msg.content == "Answer: Paris"
    assert msg.usage_metadata is not None and msg.usage_metadata["total_tokens"] == 5
    assert msg.response_metadata["agent"]["name"] == "qa"
    chunks = list(model.stream("Capital of France?"))
    assert "".join(str(c.content) for c in chunks) == "Answer: Paris"  # one whole answer


def test_agent_failing_mid_run_raises_a_typed_error(gw: MockGateway) -> None:
    gw.script(MODEL, [REACT_SCRIPT[0], Behavior(status=500)])
    model = AgentChatModel(graph=react_graph(gw))
    with pytest.raises(AgentError, match="agent 'math' failed") as info:
        model.invoke("What is 6*7?")
    assert isinstance(info.value, UpstreamError)
    assert isinstance(info.value.__cause__, UpstreamError)
    assert info.value.agent == "math"
    gw.script(MODEL, [REACT_SCRIPT[0], Behavior(status=500)])
    with pytest.raises(AgentError, match="agent 'math' failed"):
        list(model.stream("What is 6*7?"))


def test_node_raising_is_wrapped_naming_the_agent() -> None:
    def boom(state: MessagesState) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    g = StateGraph(MessagesState)
    g.add_node("boom", boom)
    g.add_edge(START, "boom")
    model = AgentChatModel(graph=g.compile(), agent_name="fragile")
    with pytest.raises(AgentError, match=r"agent 'fragile' failed: RuntimeError: disk on fire"):
        model.invoke("hi")


def test_agent_ending_without_an_ai_message_is_an_error() -> None:
    def echo_human(state: MessagesState) -> dict[str, Any]:
        return {"messages": [HumanMessage("still me")]}

    g = StateGraph(MessagesState)
    g.add_node("echo", echo_human)
    g.add_edge(START, "echo")
    model = AgentChatModel(graph=g.compile(name="mute"))
    with pytest.raises(AgentError, match="agent 'mute' ended without an AI message"):
        model.invoke("hi")
    with pytest.raises(AgentError, match="ended without an AI message"):
        list(model.stream("hi"))


def test_agent_ending_on_tool_calls_is_an_error(gw: MockGateway) -> None:
    gw.script(MODEL, REACT_SCRIPT[0])
    bound = llm(gw).bind_tools(TOOLS)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("model", call_model)
    g.add_edge(START, "model")
    model = AgentChatModel(graph=g.compile(name="half"))
    with pytest.raises(AgentError, match=r"ended on tool calls \(calculator\)"):
        model.invoke("hi")


def test_bind_tools_is_refused(gw: MockGateway) -> None:
    with pytest.raises(NotImplementedError, match="runs its own tools"):
        agent(gw).bind_tools(TOOLS)


def test_ls_params_name_the_agent(gw: MockGateway) -> None:
    params = agent(gw)._get_ls_params()
    assert params["ls_provider"] == "gatewaykit"
    assert params["ls_model_name"] == "math"


def test_stream_tokens_off_sends_the_answer_whole(gw: MockGateway) -> None:
    chunks = list(agent(gw, stream_tokens=False).stream("What is 6*7?"))
    assert [c.content for c in chunks if c.content] == [FINAL]
    assert len([c for c in chunks if c.usage_metadata]) == 1


def test_agent_stopping_on_an_interrupt_is_an_error() -> None:
    from langgraph.types import interrupt

    def ask(state: MessagesState) -> dict[str, Any]:
        interrupt("approve?")
        return {"messages": [AIMessage("approved")]}

    g = StateGraph(MessagesState)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    model = AgentChatModel(graph=g.compile(checkpointer=InMemorySaver()), agent_name="hitl")
    with pytest.raises(AgentError, match="agent 'hitl' stopped on an interrupt"):
        model.invoke("hi", thread_id="t-9")
    with pytest.raises(AgentError, match="agent 'hitl' stopped on an interrupt"):
        list(model.stream("hi", thread_id="t-10"))


# --- the caller's run config, new threads, side effects (LangChain's create_agent) ----------

LOOP = Behavior(tool_calls=[{"name": "current_time", "arguments": {}}])
"""The model calls a tool on every turn: only a recursion limit ends the run."""


def lc_agent(gw: MockGateway, **kw: Any) -> Any:
    from langchain.agents import create_agent

    return create_agent(llm(gw), tools=TOOLS, **kw)


@pytest.mark.parametrize("use_async", [False, True])
async def test_the_callers_recursion_limit_bounds_the_run(gw: MockGateway, use_async: bool) -> None:
    gw.script(MODEL, LOOP)
    model = AgentChatModel(graph=lc_agent(gw), recursion_limit=50)
    with pytest.raises(AgentError, match="GraphRecursionError") as info:
        if use_async:
            await model.ainvoke("loop", config={"recursion_limit": 4})
        else:
            model.invoke("loop", config={"recursion_limit": 4})
    assert gw.count(MODEL) == 2  # model, tools, model, tools: then the limit
    assert info.value.kind == "agent" and info.value.is_retryable is False


def test_the_callers_configurable_tags_and_metadata_reach_the_graph(gw: MockGateway) -> None:
    seen: dict[str, Any] = {}

    def node(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        seen.update(
            configurable=dict(config["configurable"]),
            tags=list(config.get("tags") or []),
            metadata=dict(config.get("metadata") or {}),
        )
        return {"messages": [AIMessage(content="done")]}

    g = StateGraph(MessagesState)
    g.add_node("node", node)
    g.add_edge(START, "node")
    g.add_edge("node", END)
    model = AgentChatModel(graph=g.compile(name="cfg"))
    config: Any = {
        "configurable": {"user_id": "u-1", "__pregel_secret": "x", "checkpoint_ns": "parent"},
        "tags": ["team-a"],
        "metadata": {"request": "r-9", "langgraph_node": "parent-node"},
    }
    assert model.invoke("hi", config=config).content == "done"
    assert seen["configurable"].get("user_id") == "u-1"
    assert "__pregel_secret" not in seen["configurable"]
    assert seen["configurable"].get("checkpoint_ns", "") != "parent"
    assert "team-a" in seen["tags"]
    assert seen["metadata"].get("request") == "r-9"
    assert seen["metadata"].get("langgraph_node") != "parent-node"


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_new_thread_receives_the_whole_history(gw: MockGateway, use_async: bool) -> None:
    from langchain_core.messages import SystemMessage

    gw.script(MODEL, [Behavior(content="Ada."), Behavior(content="Still Ada.")])
    model = AgentChatModel(graph=lc_agent(gw, checkpointer=InMemorySaver()))
    history = [
        SystemMessage("You are a pirate."),
        HumanMessage("I'm Ada."),
        AIMessage("Arr."),
        HumanMessage("Name?"),
    ]
    call = model.ainvoke if use_async else model.invoke
    first = (
        await call(history, thread_id="t-new") if use_async else call(history, thread_id="t-new")
    )
    sent = gw.requests_for(MODEL)[-1].body
    assert sent is not None
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    # The thread holds it now: only the new turn is added, nothing twice.
    follow = [*history, first, HumanMessage("Again?")]
    if use_async:
        await model.ainvoke(follow, thread_id="t-new")
    else:
        model.invoke(follow, thread_id="t-new")
    sent = gw.requests_for(MODEL)[-1].body
    assert sent is not None
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]


def test_per_call_sampling_settings_are_refused_not_ignored(gw: MockGateway) -> None:
    model = agent(gw)
    for key, value in (("temperature", 0.2), ("max_tokens", 5), ("seed", 1)):
        with pytest.raises(ValueError, match=key):
            model.invoke("hi", **{key: value})
    assert gw.count(MODEL) == 0


def test_a_guarded_agent_keeps_its_thread_and_recursion_limit(gw: MockGateway) -> None:
    from gatewaykit.guardrails import PIIGuardrail, with_guardrails

    gw.script(MODEL, [Behavior(content="Hello Ada."), Behavior(content="You are Ada.")])
    saver = InMemorySaver()
    guarded = with_guardrails(
        AgentChatModel(graph=lc_agent(gw, checkpointer=saver)), [PIIGuardrail()]
    )
    config: Any = {"configurable": {"thread_id": "guarded-1"}}
    first = guarded.invoke([HumanMessage("I am Ada, ada@example.com")], config)
    guarded.invoke([HumanMessage("I am Ada, ada@example.com"), first, HumanMessage("Who?")], config)
    stored = saver.get_tuple(config)
    assert stored is not None and len(stored.checkpoint["channel_values"]["messages"]) == 4
    # The masked address reached the agent, never the raw one.
    assert all("ada@example.com" not in str(r.body) for r in gw.requests_for(MODEL))
    gw.script(MODEL, LOOP)
    stateless = with_guardrails(AgentChatModel(graph=lc_agent(gw)), [PIIGuardrail()])
    before = gw.count(MODEL)
    with pytest.raises(AgentError, match="GraphRecursionError"):
        stateless.invoke("loop", {"recursion_limit": 4})
    assert gw.count(MODEL) - before == 2
