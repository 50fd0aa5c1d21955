"""Real agents for the standard suites: a LangGraph agent whose model is GatewayChatModel on the
shared MockGateway, and that same agent served over A2A by ``create_app`` on uvicorn.

The inner model call is a real HTTP call (MockGateway stands only for the provider), so usage,
streaming and callbacks come from a real run; the A2A peer is gatewaykit's own A2A face
(a2a-sdk's server) on a real port, started once per test session.
"""

from __future__ import annotations

import atexit
from typing import Any

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import SecretStr

from gatewaykit import GatewayChatModel
from gatewaykit.agents import AgentChatModel
from gatewaykit.agents.serve import create_app
from gatewaykit.testing import AppServer

from .conftest import shared_gateway

INNER_MODEL = "standard-agent-llm"
AGENT_NAME = "standard-agent"
PEER_KEY = "sk-standard-a2a-peer"


def inner_llm() -> GatewayChatModel:
    """The model inside the agent: GatewayChatModel calling the shared MockGateway."""
    return GatewayChatModel(
        model=INNER_MODEL,
        api_key=SecretStr("sk-agent-inner"),
        base_url=shared_gateway().base_url,
        stream_usage=True,
        max_retries=0,
        http_socket_options=(),
    )


def agent_graph() -> Any:
    """A one-node ``MessagesState`` agent: the model answers the conversation."""
    llm = inner_llm()

    def call_model(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"], config)]}

    async def acall_model(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", RunnableLambda(call_model, afunc=acall_model, name="model"))
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    return graph.compile(name=AGENT_NAME)


class _Peer(AppServer):
    """The agent, served over A2A by ``create_app`` with an API key."""

    def __init__(self) -> None:
        app = create_app(
            {AGENT_NAME: AgentChatModel(graph=agent_graph())},
            api_keys=[PEER_KEY],
            metrics=False,
        )
        super().__init__(app)
        self.a2a_url = f"{self.url}/a2a/{AGENT_NAME}"


_PEER: _Peer | None = None


def a2a_peer_url() -> str:
    """The A2A URL of the served agent (started on first use, stopped at exit)."""
    global _PEER
    if _PEER is None:
        peer = _Peer()
        peer.start()
        atexit.register(peer.stop)
        _PEER = peer
    return _PEER.a2a_url
