"""Agents as chat models: a LangGraph agent, local or on a LangGraph server, behind the
``BaseChatModel`` interface (messages in, the agent's final AI message out).

Example::

    from gatewaykit.agents import AgentChatModel, RemoteAgentChatModel

    local = AgentChatModel(graph=create_agent(llm, tools=[calculator]), agent_name="math")
    remote = RemoteAgentChatModel(url="http://127.0.0.1:2024", assistant_id="agent")
"""

from __future__ import annotations

from gatewaykit.agents._common import AgentError
from gatewaykit.agents.local import AgentChatModel
from gatewaykit.agents.remote import RemoteAgentChatModel

__all__ = ["AgentChatModel", "AgentError", "RemoteAgentChatModel"]
