"""Agents as chat models: a LangGraph agent (local or on a LangGraph server) or any A2A agent
behind the ``BaseChatModel`` interface (messages in, the agent's final answer out).

Example::

    from gatewaykit.agents import A2AAgentChatModel, AgentChatModel, RemoteAgentChatModel

    local = AgentChatModel(graph=create_agent(llm, tools=[calculator]), agent_name="math")
    remote = RemoteAgentChatModel(url="http://127.0.0.1:2024", assistant_id="agent")
    peer = A2AAgentChatModel(url="http://127.0.0.1:9999")
"""

from __future__ import annotations

from gatewaykit.agents._common import AgentError
from gatewaykit.agents.a2a import A2AAgentChatModel, A2ATaskError
from gatewaykit.agents.local import AgentChatModel
from gatewaykit.agents.remote import RemoteAgentChatModel

__all__ = [
    "A2AAgentChatModel",
    "A2ATaskError",
    "AgentChatModel",
    "AgentError",
    "RemoteAgentChatModel",
]
