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
    from gatewaykit.agents import (
        AgentChatModel,
        AgentError,
        RemoteAgentChatModel,
    )
    from gatewaykit.agents.a2a import (
        A2AAgentChatModel,
        A2ATaskError,
    )
    from gatewaykit.agents.serve import (
        ServeError,
        create_app,
        serve,
    )
    from gatewaykit.cache import (
        InMemoryResponseCache,
        RedisResponseCache,
        ResponseCache,
        SQLiteResponseCache,
        cache_from_config,
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
    from gatewaykit.guardrails.base import (
        Block,
        Guardrail,
        TextGuardrail,
    )
    from gatewaykit.guardrails.content import (
        ContentFilter,
    )
    from gatewaykit.guardrails.custom import (
        FunctionGuardrail,
    )
    from gatewaykit.guardrails.injection import (
        PromptInjectionGuardrail,
    )
    from gatewaykit.guardrails.pii import (
        PIIGuardrail,
    )
    from gatewaykit.guardrails.presidio import (
        PresidioAnalyzer,
        PresidioUnavailable,
    )
    from gatewaykit.guardrails.wrapper import (
        GuardedChatModel,
        with_guardrails,
    )
    from gatewaykit.observability import (
        GatewayLangfuseHandler,
        GatewayMetrics,
        UnsupportedCallbackWarning,
        callbacks_from_config,
        default_metrics,
        langfuse_callbacks,
        metrics_app,
        mount_metrics,
    )
    from gatewaykit.routing.engine import RouterEngine
    from gatewaykit.routing.graph import build_router_graph
    from gatewaykit.routing.health import CooldownPolicy, RetryPolicy
    from gatewaykit.routing.model import RouterChatModel
    from gatewaykit.routing.redis_store import (
        RedisStore,
        store_from_config,
    )
    from gatewaykit.routing.store import InMemoryStore, StateStore
    from gatewaykit.selector import (
        ModelCapabilities,
        ProxyModelInfo,
        RuleResult,
        TaskChatModel,
        TaskDetection,
        TaskSelection,
        TaskSelectionError,
        TaskSelector,
        task_budgets,
    )
    from gatewaykit.structured import (
        StructuredAttempt,
        StructuredOutputInvalid,
        StructuredOutputRefused,
        StructuredOutputRunnable,
        StructuredOutputTruncated,
        choose_method,
        structured,
    )

__version__ = "0.1.0"

# Heavy modules (langchain-openai, langgraph) load on first use, so `import gatewaykit` stays
# cheap for code that only needs the error types or the config loader.
_LAZY = {
    "AgentChatModel": "gatewaykit.agents",
    "RemoteAgentChatModel": "gatewaykit.agents",
    "AgentError": "gatewaykit.agents",
    "create_app": "gatewaykit.agents.serve",
    "serve": "gatewaykit.agents.serve",
    "ServeError": "gatewaykit.agents.serve",
    "TaskSelector": "gatewaykit.selector",
    "TaskChatModel": "gatewaykit.selector",
    "TaskSelection": "gatewaykit.selector",
    "TaskDetection": "gatewaykit.selector",
    "RuleResult": "gatewaykit.selector",
    "ModelCapabilities": "gatewaykit.selector",
    "ProxyModelInfo": "gatewaykit.selector",
    "TaskSelectionError": "gatewaykit.selector",
    "task_budgets": "gatewaykit.selector",
    "structured": "gatewaykit.structured",
    "StructuredOutputRunnable": "gatewaykit.structured",
    "StructuredAttempt": "gatewaykit.structured",
    "StructuredOutputInvalid": "gatewaykit.structured",
    "StructuredOutputRefused": "gatewaykit.structured",
    "StructuredOutputTruncated": "gatewaykit.structured",
    "choose_method": "gatewaykit.structured",
    "RedisStore": "gatewaykit.routing.redis_store",
    "store_from_config": "gatewaykit.routing.redis_store",
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
    "RouterEngine": "gatewaykit.routing.engine",
    "build_router_graph": "gatewaykit.routing.graph",
    "CooldownPolicy": "gatewaykit.routing.health",
    "RetryPolicy": "gatewaykit.routing.health",
    "RouterChatModel": "gatewaykit.routing.model",
    "InMemoryStore": "gatewaykit.routing.store",
    "StateStore": "gatewaykit.routing.store",
    "A2AAgentChatModel": "gatewaykit.agents.a2a",
    "A2ATaskError": "gatewaykit.agents.a2a",
    "with_guardrails": "gatewaykit.guardrails.wrapper",
    "GuardedChatModel": "gatewaykit.guardrails.wrapper",
    "Guardrail": "gatewaykit.guardrails.base",
    "TextGuardrail": "gatewaykit.guardrails.base",
    "Block": "gatewaykit.guardrails.base",
    "PIIGuardrail": "gatewaykit.guardrails.pii",
    "ContentFilter": "gatewaykit.guardrails.content",
    "PromptInjectionGuardrail": "gatewaykit.guardrails.injection",
    "FunctionGuardrail": "gatewaykit.guardrails.custom",
    "PresidioAnalyzer": "gatewaykit.guardrails.presidio",
    "PresidioUnavailable": "gatewaykit.guardrails.presidio",
    "GatewayMetrics": "gatewaykit.observability",
    "GatewayLangfuseHandler": "gatewaykit.observability",
    "langfuse_callbacks": "gatewaykit.observability",
    "callbacks_from_config": "gatewaykit.observability",
    "metrics_app": "gatewaykit.observability",
    "mount_metrics": "gatewaykit.observability",
    "default_metrics": "gatewaykit.observability",
    "UnsupportedCallbackWarning": "gatewaykit.observability",
    "cache_from_config": "gatewaykit.cache",
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
    "A2AAgentChatModel",
    "A2ATaskError",
    "AgentChatModel",
    "AgentError",
    "AuthenticationFailed",
    "Block",
    "Budget",
    "BudgetAlert",
    "BudgetExceeded",
    "BudgetManager",
    "BudgetStatus",
    "CacheControl",
    "ConfigError",
    "ConfigProblem",
    "ContentFilter",
    "ContentPolicyViolation",
    "ContextWindowExceeded",
    "CooldownPolicy",
    "Deployment",
    "FunctionGuardrail",
    "GatewayChatModel",
    "GatewayConfig",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayInfo",
    "GatewayLangfuseHandler",
    "GatewayMetrics",
    "GatewayTimeout",
    "GuardedChatModel",
    "Guardrail",
    "GuardrailBlocked",
    "InMemoryLedger",
    "InMemoryResponseCache",
    "InMemoryStore",
    "InvalidRequest",
    "ModelAccessDenied",
    "ModelCapabilities",
    "ModelNotFound",
    "NoDeploymentAvailable",
    "PIIGuardrail",
    "PresidioAnalyzer",
    "PresidioUnavailable",
    "PromptInjectionGuardrail",
    "ProxyModelInfo",
    "RateLimitInfo",
    "RateLimited",
    "RedisLedger",
    "RedisResponseCache",
    "RedisStore",
    "RemoteAgentChatModel",
    "ResponseCache",
    "RetryPolicy",
    "RouterChatModel",
    "RouterEngine",
    "RuleResult",
    "SQLiteResponseCache",
    "ServeError",
    "SpendContext",
    "SpendLedger",
    "StateStore",
    "StreamInterrupted",
    "StructuredAttempt",
    "StructuredOutputError",
    "StructuredOutputInvalid",
    "StructuredOutputRefused",
    "StructuredOutputRunnable",
    "StructuredOutputTruncated",
    "TaskChatModel",
    "TaskDetection",
    "TaskSelection",
    "TaskSelectionError",
    "TaskSelector",
    "TextGuardrail",
    "UnsupportedCallbackWarning",
    "UpstreamError",
    "Window",
    "build_router_graph",
    "cache_from_config",
    "call_cost",
    "callbacks_from_config",
    "choose_method",
    "classify",
    "create_app",
    "default_metrics",
    "langfuse_callbacks",
    "load_config",
    "metrics_app",
    "mount_metrics",
    "parse_gateway_headers",
    "serve",
    "store_from_config",
    "structured",
    "task_budgets",
    "with_guardrails",
]
