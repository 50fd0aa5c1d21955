"""The gatewaykit router as a deployable LangGraph graph (``langgraph dev`` / LangGraph server).

``langgraph.json`` at the repository root serves it as ``router``::

    GATEWAYKIT_CONFIG=config.yaml GATEWAYKIT_MODEL=claude-sonnet langgraph dev

Input: ``{"messages": [...]}`` plus optional ``"model"`` (an alias of the config: a model group,
a ``model_group_alias`` or a deployment id) and ``"tags"`` (request tags, for tag routing and
sent on to LiteLLM proxy deployments). Output: ``{"messages": [...]}`` with the AI reply
appended; the reply's ``response_metadata["routing"]`` says which deployment served it and what
was tried first.

Settings, read once when the server loads the graph:

- ``GATEWAYKIT_CONFIG``: the LiteLLM-dialect ``config.yaml`` to route over. A relative path is
  taken from the directory ``langgraph dev`` runs in. Unset, it is ``config.yaml`` at the
  repository root, next to ``langgraph.json``. A missing or invalid file fails the graph load
  (so the server does not start) with an error that names this variable.
- ``GATEWAYKIT_MODEL``: the alias used when the input has no ``"model"``. Unset, it is the first
  ``model_name`` of the config's ``model_list``. An unknown alias fails the load too.

One router serves every run and alias, so cooldowns and rpm/tpm usage are shared across runs
(in the server's process). The node is async: the server forbids blocking I/O in its event loop,
and each deployment's client is built when the graph loads rather than inside the first run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, NotRequired

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, MessagesState, StateGraph

from gatewaykit.config import GatewayConfig, load_config
from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.routing.model import RouterChatModel

__all__ = ["CONFIG_ENV", "MODEL_ENV", "RouterInput", "build_graph", "graph", "load_router"]

CONFIG_ENV = "GATEWAYKIT_CONFIG"
MODEL_ENV = "GATEWAYKIT_MODEL"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


class RouterInput(MessagesState):
    """The conversation, and optionally the alias to route to and request tags."""

    model: NotRequired[str | None]
    tags: NotRequired[list[str] | None]


def _config_path() -> Path:
    value = os.environ.get(CONFIG_ENV)
    return Path(value).expanduser().resolve() if value else DEFAULT_CONFIG


def load_router(path: Path | None = None, model: str | None = None) -> RouterChatModel:
    """The router for the config at ``path`` (default: ``$GATEWAYKIT_CONFIG``), whose default
    alias is ``model`` (default: ``$GATEWAYKIT_MODEL``, else the config's first model)."""
    path = path or _config_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"gatewaykit router: no config file at {path}; set {CONFIG_ENV} to the path of a "
            "LiteLLM-dialect config.yaml"
        )
    try:
        config: GatewayConfig = load_config(path)
        alias = model or os.environ.get(MODEL_ENV) or next(iter(config.groups), None)
        if alias is None:
            raise ConfigError(ConfigProblem("model_list", "is empty"), source=str(path))
        router = RouterChatModel.from_config(config, model=alias)
    except ConfigError as exc:
        exc.add_note(f"(gatewaykit router: config from {CONFIG_ENV}, default alias {MODEL_ENV})")
        raise
    # Build each deployment's client now, in the server's loader thread; the first run would
    # otherwise do it (SDK imports, TLS setup) inside the event loop, inside its first attempt.
    for deployment in config.deployments:
        with contextlib.suppress(ConfigError):  # e.g. an unset os.environ/ key: fails when used
            router.engine.model_for(deployment)
    return router


def build_graph(router: RouterChatModel) -> Any:
    """A one-node graph that appends ``router``'s reply to ``messages``."""

    async def route(state: RouterInput, config: RunnableConfig) -> dict[str, list[AIMessage]]:
        kwargs: dict[str, Any] = {}
        if state.get("model"):
            kwargs["model"] = state["model"]
        if state.get("tags"):
            kwargs["gateway_tags"] = list(state["tags"] or [])
        reply = await router.ainvoke(state["messages"], config, **kwargs)
        return {"messages": [reply]}

    builder = StateGraph(RouterInput, input_schema=RouterInput, output_schema=MessagesState)
    builder.add_node("route", route)
    builder.add_edge(START, "route")
    return builder.compile(name="gatewaykit-router")


graph = build_graph(load_router())
