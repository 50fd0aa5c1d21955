"""A LangGraph agent served as a chat model, fully offline.

An agent built with LangChain's own ``create_agent`` (a calculator and a clock) runs on
GatewayChatModel against an embedded MockGateway scripted to call both tools, then answer.
AgentChatModel turns the agent into a ``BaseChatModel``:

1. ``invoke``: the final answer only, with the usage of every inner model call summed;
2. ``stream``: the answer's tokens, without the tool-calling turns;
3. inside another graph's node: each token streamed once;
4. a thread (with a checkpointer): a new thread gets the whole history, then remembers it;
5. a failing agent: a typed ``AgentError`` naming it, never an empty answer, never retried;
6. the caller's ``recursion_limit`` bounds an agent that would loop on its tools.
"""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import SecretStr

from gatewaykit import GatewayChatModel
from gatewaykit.agents import AgentChatModel, AgentError
from gatewaykit.testing import Behavior, MockGateway

MODEL = "agent-llm"
ANSWER = "6 times 7 is 42, and the time is 12:00 UTC."


@tool
def calculator(expression: str) -> str:
    """Multiply two integers written as 'a*b'."""
    left, _, right = expression.partition("*")
    return str(int(left) * int(right))


@tool
def current_time() -> str:
    """The current UTC time."""
    return "12:00 UTC"


TOOLS = [calculator, current_time]


def script(gw: MockGateway) -> None:
    gw.script(
        MODEL,
        [
            Behavior(
                tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}],
                usage={"prompt_tokens": 40, "completion_tokens": 12},
            ),
            Behavior(
                tool_calls=[{"name": "current_time", "arguments": {}}],
                usage={"prompt_tokens": 60, "completion_tokens": 9},
            ),
            Behavior(content=ANSWER, usage={"prompt_tokens": 80, "completion_tokens": 14}),
        ],
    )


def build_agent(gw: MockGateway, checkpointer: Any = None) -> Any:
    llm = GatewayChatModel(
        base_url=gw.base_url, api_key=SecretStr("sk-demo"), model=MODEL, max_retries=0
    )
    return create_agent(llm, tools=TOOLS, checkpointer=checkpointer, name="math-agent")


def main() -> None:
    with MockGateway() as gw:
        model = AgentChatModel(graph=build_agent(gw))

        print("1. invoke")
        script(gw)
        msg = model.invoke("What is 6*7, and what time is it?")
        info = msg.response_metadata["agent"]
        print(f"  answer: {msg.content}")
        print(f"  agent: {info['name']}, steps: {info['steps']}, tool calls: {info['tool_calls']}")
        print(f"  returned tool calls: {msg.tool_calls}")
        usage = msg.usage_metadata
        if usage is not None:
            print(f"  usage summed: {usage['input_tokens']} in, {usage['output_tokens']} out")

        print("2. stream")
        script(gw)
        tokens = [str(c.content) for c in model.stream("What is 6*7?") if c.content]
        print(f"  streamed {len(tokens)} tokens: {'|'.join(tokens)}")

        print("3. inside another graph's node")
        script(gw)

        def answer(state: MessagesState) -> dict[str, Any]:
            return {"messages": [model.invoke(state["messages"])]}

        outer = StateGraph(MessagesState)
        outer.add_node("answer", answer)
        outer.add_edge(START, "answer")
        outer.add_edge("answer", END)
        parts: Any = outer.compile().stream(
            {"messages": [HumanMessage("What is 6*7?")]}, stream_mode="messages"
        )
        text = "".join(str(chunk.content) for chunk, _ in parts)
        print(f"  each token once: {text == ANSWER}")

        print("4. thread")
        gw.script(MODEL, [Behavior(content="Arr, you are Ada."), Behavior(content="Still Ada.")])
        saver = InMemorySaver()
        remembering = AgentChatModel(graph=build_agent(gw, saver), agent_name="memo")
        config: Any = {"configurable": {"thread_id": "demo-thread"}}
        # A conversation begun elsewhere: the new thread receives all of it, system prompt too.
        history: list[BaseMessage] = [
            SystemMessage("Talk like a pirate."),
            HumanMessage("I am Ada."),
            HumanMessage("Who am I?"),
        ]
        first = remembering.invoke(history, config)
        seen = [m["role"] for m in gw.requests_for(MODEL)[-1].body["messages"]]  # type: ignore[index]
        print(f"  turn 1 on a new thread: the model saw {seen}")
        second = remembering.invoke([*history, first, HumanMessage("And now?")], config)
        stored = saver.get_tuple(config)
        count = len(stored.checkpoint["channel_values"]["messages"]) if stored else 0
        print(f"  turn 2: {second.content} (thread demo-thread holds {count} messages)")

        print("5. failure")
        gw.script(MODEL, [Behavior(status=500)])
        try:
            model.invoke("What is 6*7?")
        except AgentError as exc:
            print(f"  AgentError(agent={exc.agent}, retryable={exc.is_retryable}): {str(exc)[:50]}")

        print("6. the caller's recursion limit")
        gw.script(MODEL, [Behavior(tool_calls=[{"name": "current_time", "arguments": {}}])])
        before = gw.count(MODEL)
        try:
            model.invoke("Loop forever", config={"recursion_limit": 4})
        except AgentError:
            print(f"  stopped after {gw.count(MODEL) - before} model calls (recursion_limit 4)")


if __name__ == "__main__":
    main()
