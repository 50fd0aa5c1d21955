"""The chat model behind each deployment of a router group.

A plain deployment is a :class:`~gatewaykit.GatewayChatModel` with its SDK retries off (the
router owns retries); ``langgraph/<assistant>`` and ``a2a/<name>`` deployments are agents
served through the agent models, so an agent can be a group's deployment or a fallback.

Example::

    model = deployment_model(cfg.deployment("sonnet-direct"), cfg, {})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from gatewaykit.chat_model import GatewayChatModel
from gatewaykit.config import Deployment, GatewayConfig

__all__ = ["deployment_model"]


def deployment_model(dep: Deployment, config: GatewayConfig, overrides: Mapping[str, Any]) -> Any:
    """Build the chat model for ``dep`` (``overrides`` apply to GatewayChatModel deployments).

    ``langgraph/<assistant>`` deployments are agents on a LangGraph server (``api_base``):
    they serve through :class:`~gatewaykit.agents.RemoteAgentChatModel`; ``a2a/<name>`` (or
    ``a2a_agent/<name>``) deployments are A2A agents at ``api_base``, served through
    :class:`~gatewaykit.agents.A2AAgentChatModel`."""
    if dep.provider in ("langgraph", "a2a", "a2a_agent"):
        return _agent_model(dep, config)
    params: dict[str, Any] = {"max_retries": 0, **overrides}
    stream_timeout = config.router.stream_timeout
    if stream_timeout is not None and dep.stream_timeout is None:
        # router_settings.stream_timeout: every deployment's own unless it sets one.
        params.setdefault("ttft_timeout", stream_timeout)
    if dep.provider == "litellm_proxy":
        # The proxy behind must not retry or fall back on its own: the router decides.
        params.setdefault("num_retries", 0)
        params.setdefault("disable_fallbacks", True)
    return GatewayChatModel.from_deployment(dep, config=config, **params)


def _agent_model(dep: Deployment, config: GatewayConfig) -> Any:
    """The agent model of an agent deployment: A2AAgentChatModel for ``a2a/<name>`` (and
    ``a2a_agent/<name>``), RemoteAgentChatModel for ``langgraph/<assistant>``."""
    from gatewaykit.config_errors import ConfigError, ConfigProblem

    a2a = dep.provider in ("a2a", "a2a_agent")
    base = dep.api_base()
    if not base:
        what = (
            "the A2A agent's URL (its base URL or agent-card URL) as api_base, "
            "e.g. http://127.0.0.1:9999"
            if a2a
            else "the LangGraph server's URL as api_base, e.g. http://127.0.0.1:2024"
        )
        raise ConfigError(
            ConfigProblem(
                f"model_list[{dep.index}].litellm_params.api_base",
                f"agent deployment {dep.id!r} needs {what}",
            ),
            source=config.source,
        )
    key = dep.api_key()
    if a2a:
        from gatewaykit.agents.a2a import A2AAgentChatModel

        header = dep.param("api_key_header")
        return A2AAgentChatModel(
            url=base,
            agent_name=dep.upstream_model,
            api_key=SecretStr(key) if key else None,
            api_key_header=str(header) if header else "Authorization",
            timeout=dep.timeout if dep.timeout is not None else 60.0,
        )
    from gatewaykit.agents.remote import RemoteAgentChatModel

    return RemoteAgentChatModel(
        url=base,
        assistant_id=dep.upstream_model,
        api_key=SecretStr(key) if key else None,
        timeout=dep.timeout,
    )
