"""Turn a config's ``litellm_settings`` callbacks into LangChain callback handlers.

The same ``config.yaml`` that drives a LiteLLM proxy says which observability it wants::

    litellm_settings:
      success_callback: ["langfuse", "prometheus"]
      failure_callback: ["langfuse"]

:func:`callbacks_from_config` reads ``callbacks``, ``success_callback`` and
``failure_callback`` and returns the handlers gatewaykit has for those names: ``langfuse``
(also ``langfuse_otel``) -> :class:`~gatewaykit.observability.GatewayLangfuseHandler`,
``prometheus`` -> :class:`~gatewaykit.observability.GatewayMetrics`. Each handler records
successes and failures alike, so a name in either list switches it on once.

Names gatewaykit has no handler for (``otel``, ``datadog``, ``slack``, a custom
``module.instance`` path...) are reported with an :class:`UnsupportedCallbackWarning`, once per
name, and skipped. They are not an error by default because a config is often shared with a
LiteLLM proxy, where those callbacks run on the proxy side; ``strict=True`` turns them into a
:class:`~gatewaykit.ConfigError` naming the field.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import BaseCallbackHandler

from gatewaykit.config import GatewayConfig, load_config
from gatewaykit.config_errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from gatewaykit.observability.metrics import GatewayMetrics

__all__ = ["SUPPORTED_CALLBACKS", "UnsupportedCallbackWarning", "callbacks_from_config"]

logger = logging.getLogger("gatewaykit.observability")

SUPPORTED_CALLBACKS: tuple[str, ...] = ("langfuse", "langfuse_otel", "prometheus")
_FIELDS = ("callbacks", "success_callback", "failure_callback")
_warned: set[str] = set()
_warned_lock = threading.Lock()


class UnsupportedCallbackWarning(UserWarning):
    """A config names a callback that gatewaykit has no client-side handler for."""


def callbacks_from_config(
    config: GatewayConfig | Any,
    *,
    metrics: GatewayMetrics | None = None,
    engine: Any = None,
    strict: bool = False,
) -> list[BaseCallbackHandler]:
    """The handlers a config's ``litellm_settings`` callbacks ask for (``[]`` for none).

    ``metrics`` is the :class:`GatewayMetrics` that ``prometheus`` uses (default: the
    process-wide :func:`~gatewaykit.observability.default_metrics`); with ``engine`` (a
    :class:`~gatewaykit.RouterEngine`) it also counts that engine's cooldowns and reports its
    budgets. ``langfuse`` reads its keys from ``LANGFUSE_*`` and is ``[]`` without them.

    Example::

        cfg = load_config("config.yaml")
        router = RouterChatModel(config=cfg, model="smart",
                                 callbacks=callbacks_from_config(cfg) or None)
    """
    cfg = load_config(config)
    settings = cfg.litellm_settings
    wanted: list[str] = []
    unknown: list[tuple[str, str]] = []
    for field in _FIELDS:
        value = settings.get(field)
        if value is None:
            continue
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, Sequence):
            raise ConfigError(
                ConfigProblem(
                    f"litellm_settings.{field}",
                    f"must be a list of callback names, got {type(value).__name__}",
                ),
                source=cfg.source,
            )
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(
                    ConfigProblem(
                        f"litellm_settings.{field}[{i}]",
                        f"must be a callback name such as 'langfuse' or 'prometheus', got {name!r}",
                    ),
                    source=cfg.source,
                )
            key = name.strip().lower()
            if key in SUPPORTED_CALLBACKS:
                if key == "langfuse_otel":
                    key = "langfuse"
                if key not in wanted:
                    wanted.append(key)
            else:
                unknown.append((f"litellm_settings.{field}[{i}]", name))
    if unknown:
        _report_unknown(unknown, cfg.source, strict)
    handlers: list[BaseCallbackHandler] = []
    for key in wanted:
        if key == "langfuse":
            from gatewaykit.observability.langfuse import langfuse_callbacks

            handlers.extend(langfuse_callbacks())
        elif key == "prometheus":
            from gatewaykit.observability.metrics import default_metrics

            m = metrics if metrics is not None else default_metrics()
            if engine is not None:
                m.watch(engine)
            handlers.append(m)
    return handlers


def _report_unknown(unknown: list[tuple[str, str]], source: str | None, strict: bool) -> None:
    supported = ", ".join(SUPPORTED_CALLBACKS)
    if strict:
        raise ConfigError(
            [
                ConfigProblem(
                    path,
                    f"callback {name!r} has no gatewaykit handler (supported: {supported}); "
                    "remove it, or load without strict=True if the LiteLLM proxy runs it",
                )
                for path, name in unknown
            ],
            source=source,
        )
    for path, name in unknown:
        with _warned_lock:
            if name in _warned:
                continue
            _warned.add(name)
        message = (
            f"{path}: callback {name!r} has no gatewaykit handler and is skipped "
            f"(supported: {supported}); a LiteLLM proxy using this config still runs it"
        )
        logger.warning(message)
        warnings.warn(message, UnsupportedCallbackWarning, stacklevel=3)
