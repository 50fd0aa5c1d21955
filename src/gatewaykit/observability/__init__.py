"""See every call: Prometheus metrics and Langfuse traces for gateway-backed models.

Example::

    from gatewaykit.observability import GatewayMetrics, langfuse_callbacks, mount_metrics

    metrics = GatewayMetrics()
    router = metrics.instrument(RouterChatModel.from_config("config.yaml", model="smart"))
    router.invoke("hi", config={"callbacks": langfuse_callbacks()})
    mount_metrics(app, metrics.registry)               # GET /metrics

The Langfuse part loads on first use, so metrics alone never import the Langfuse SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatewaykit.observability.asgi import metrics_app, mount_metrics
from gatewaykit.observability.callbacks import (
    SUPPORTED_CALLBACKS,
    UnsupportedCallbackWarning,
    callbacks_from_config,
)
from gatewaykit.observability.metrics import METRIC_NAMES, GatewayMetrics, default_metrics

if TYPE_CHECKING:
    from gatewaykit.observability.langfuse import GatewayLangfuseHandler, langfuse_callbacks

__all__ = [
    "METRIC_NAMES",
    "SUPPORTED_CALLBACKS",
    "GatewayLangfuseHandler",
    "GatewayMetrics",
    "UnsupportedCallbackWarning",
    "callbacks_from_config",
    "default_metrics",
    "langfuse_callbacks",
    "metrics_app",
    "mount_metrics",
]

_LAZY = {
    "GatewayLangfuseHandler": "gatewaykit.observability.langfuse",
    "langfuse_callbacks": "gatewaykit.observability.langfuse",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gatewaykit.observability' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
