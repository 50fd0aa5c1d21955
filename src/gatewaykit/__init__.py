"""gatewaykit: LangChain and LangGraph, gateway-native.

Example::

    from gatewaykit import GatewayChatModel, RouterChatModel

    llm = GatewayChatModel.from_config("config.yaml", "claude-sonnet")
    router = RouterChatModel.from_config("config.yaml", model="claude-sonnet")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    ContentPolicyViolation,
    ContextWindowExceeded,
    GatewayConnectionError,
    GatewayError,
    GatewayTimeout,
    GuardrailBlocked,
    InvalidRequest,
    ModelAccessDenied,
    ModelNotFound,
    NoDeploymentAvailable,
    RateLimited,
    StreamInterrupted,
    StructuredOutputError,
    UpstreamError,
    classify,
)
from gatewaykit.gateway_headers import GatewayInfo, RateLimitInfo, parse_gateway_headers

if TYPE_CHECKING:
    from gatewaykit.cache import (
        InMemoryResponseCache,
        RedisResponseCache,
        ResponseCache,
        SQLiteResponseCache,
    )
    from gatewaykit.chat_model import CacheControl, GatewayChatModel
    from gatewaykit.config import Deployment, GatewayConfig, load_config
    from gatewaykit.cost import (
        Budget,
        BudgetAlert,
        BudgetManager,
        BudgetStatus,
        InMemoryLedger,
        RedisLedger,
        SpendContext,
        SpendLedger,
        Window,
        call_cost,
    )
    from gatewaykit.routing.graph import RouterEngine, build_router_graph
    from gatewaykit.routing.health import CooldownPolicy, RetryPolicy
    from gatewaykit.routing.model import RouterChatModel
    from gatewaykit.routing.store import InMemoryStore, StateStore

__version__ = "0.1.0"

# Heavy modules (langchain-openai, langgraph) load on first use, so `import gatewaykit` stays
# cheap for code that only needs the error types or the config loader.
_LAZY = {
    "InMemoryResponseCache": "gatewaykit.cache",
    "RedisResponseCache": "gatewaykit.cache",
    "ResponseCache": "gatewaykit.cache",
    "SQLiteResponseCache": "gatewaykit.cache",
    "CacheControl": "gatewaykit.chat_model",
    "GatewayChatModel": "gatewaykit.chat_model",
    "Deployment": "gatewaykit.config",
    "GatewayConfig": "gatewaykit.config",
    "load_config": "gatewaykit.config",
    "Budget": "gatewaykit.cost",
    "BudgetAlert": "gatewaykit.cost",
    "BudgetManager": "gatewaykit.cost",
    "BudgetStatus": "gatewaykit.cost",
    "InMemoryLedger": "gatewaykit.cost",
    "RedisLedger": "gatewaykit.cost",
    "SpendContext": "gatewaykit.cost",
    "SpendLedger": "gatewaykit.cost",
    "Window": "gatewaykit.cost",
    "call_cost": "gatewaykit.cost",
    "RouterEngine": "gatewaykit.routing.graph",
    "build_router_graph": "gatewaykit.routing.graph",
    "CooldownPolicy": "gatewaykit.routing.health",
    "RetryPolicy": "gatewaykit.routing.health",
    "RouterChatModel": "gatewaykit.routing.model",
    "InMemoryStore": "gatewaykit.routing.store",
    "StateStore": "gatewaykit.routing.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gatewaykit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AuthenticationFailed",
    "Budget",
    "BudgetAlert",
    "BudgetExceeded",
    "BudgetManager",
    "BudgetStatus",
    "CacheControl",
    "ConfigError",
    "ConfigProblem",
    "ContentPolicyViolation",
    "ContextWindowExceeded",
    "CooldownPolicy",
    "Deployment",
    "GatewayChatModel",
    "GatewayConfig",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayInfo",
    "GatewayTimeout",
    "GuardrailBlocked",
    "InMemoryLedger",
    "InMemoryResponseCache",
    "InMemoryStore",
    "InvalidRequest",
    "ModelAccessDenied",
    "ModelNotFound",
    "NoDeploymentAvailable",
    "RateLimitInfo",
    "RateLimited",
    "RedisLedger",
    "RedisResponseCache",
    "ResponseCache",
    "RetryPolicy",
    "RouterChatModel",
    "RouterEngine",
    "SQLiteResponseCache",
    "SpendContext",
    "SpendLedger",
    "StateStore",
    "StreamInterrupted",
    "StructuredOutputError",
    "UpstreamError",
    "Window",
    "build_router_graph",
    "call_cost",
    "classify",
    "load_config",
    "parse_gateway_headers",
]
