"""Langfuse traces that say what the gateway did: routing, attempts, fallbacks, real cost.

Langfuse's own LangChain handler records a generation per chat-model run, but it sends no cost,
knows nothing of ``response_metadata["routing"]``, and reads ``langfuse_user_id`` and friends
only at a root *chain* run, so a chat model invoked directly loses user, session and tags.
:class:`GatewayLangfuseHandler` closes those gaps on top of the SDK's handler (Langfuse 5):

* the generation gets ``cost_details={"total": <gateway-reported or configured cost>}`` and
  metadata ``routing`` (attempts, fallbacks, served deployment), ``gateway`` and ``cache``;
  usage is left to the SDK's handler, so it is counted once;
* a directly invoked model gets its trace attributes through Langfuse's
  ``propagate_attributes``: ``langfuse_user_id`` / ``langfuse_session_id`` / ``langfuse_tags``
  / ``langfuse_trace_name`` from ``config["metadata"]``, the run's tags and the model's
  ``gateway_tags``, and ``end_user`` as the user when no Langfuse user is set.

:func:`langfuse_callbacks` is the switch: with no keys it returns ``[]`` (nothing runs, nothing
connects). Spans leave on the SDK's background exporter, so an unreachable Langfuse never
slows or fails a call.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langfuse import Langfuse, propagate_attributes
from langfuse.langchain import CallbackHandler

from gatewaykit.observability._extract import Outcome, failure_of, outcome_of, requested_model

__all__ = ["GatewayLangfuseHandler", "langfuse_callbacks"]

logger = logging.getLogger("gatewaykit.observability")

_GATEWAY_KEYS = (
    "deployment_id",
    "model_group",
    "model_name",
    "call_id",
    "response_cost",
    "attempted_retries",
    "attempted_fallbacks",
    "cache_hit",
    "response_duration_ms",
    "overhead_duration_ms",
    "applied_guardrails",
)
_logged_off = threading.Event()
ROUTER_GRAPH_NAME = "gatewaykit-router"
"""The compiled router graph's name (:func:`gatewaykit.routing.graph.build_router_graph`)."""


class GatewayLangfuseHandler(CallbackHandler):
    """Langfuse's LangChain handler, plus gateway cost, routing and root-model trace attributes.

    Build it with :func:`langfuse_callbacks` (which configures the Langfuse client), or directly
    once a ``Langfuse(...)`` client exists for ``public_key``.

    Example::

        from gatewaykit.observability import langfuse_callbacks

        callbacks = langfuse_callbacks()          # [] when LANGFUSE_* keys are not set
        router.invoke(
            "hi",
            config={
                "callbacks": callbacks,
                "metadata": {"langfuse_user_id": "u-42", "langfuse_session_id": "s-1"},
            },
        )
    """

    def __init__(self, *, public_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(public_key=public_key, **kwargs)
        self._gk_requested: dict[UUID, str] = {}
        self._gk_propagation: dict[UUID, Any] = {}
        self._gk_graph_runs: set[UUID] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ------------------------------------------------------------------ start

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        self._gk_start(run_id, parent_run_id, tags, metadata, kwargs.get("invocation_params"))
        return super().on_chat_model_start(
            serialized,
            messages,
            run_id=run_id,
            parent_run_id=parent_run_id,
            tags=tags,
            metadata=metadata,
            **kwargs,
        )

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        self._gk_start(run_id, parent_run_id, tags, metadata, kwargs.get("invocation_params"))
        return super().on_llm_start(
            serialized,
            prompts,
            run_id=run_id,
            parent_run_id=parent_run_id,
            tags=tags,
            metadata=metadata,
            **kwargs,
        )

    def _gk_start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
    ) -> None:
        try:
            self._gk_requested[run_id] = requested_model(metadata, params)
            if parent_run_id is not None:
                return  # a chain above owns the trace: the SDK reads its metadata
            attrs = trace_attributes(metadata, tags, params)
            if not attrs:
                return
            manager = propagate_attributes(**attrs)
            manager.__enter__()
            self._gk_propagation[run_id] = manager
        except Exception:  # tracing must never fail the call
            logger.debug("gatewaykit langfuse: could not set trace attributes", exc_info=True)

    # ------------------------------------------------------------------ the router's graph

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        # The router's graph state holds the whole request: the generation already shows the
        # messages, so its spans carry a compact routing view (and skip a costly serialisation).
        in_graph = parent_run_id is not None and parent_run_id in self._gk_graph_runs
        if in_graph or kwargs.get("name") == ROUTER_GRAPH_NAME:
            self._gk_graph_runs.add(run_id)
            inputs = _routing_view(inputs)
        return super().on_chain_start(
            serialized, inputs, run_id=run_id, parent_run_id=parent_run_id, **kwargs
        )

    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        if run_id in self._gk_graph_runs:
            self._gk_graph_runs.discard(run_id)
            if not isinstance(outputs, Mapping):  # a node's Command(goto=..., update=state)
                outputs = getattr(outputs, "update", outputs)
            outputs = _routing_view(outputs)
            if "inputs" in kwargs:
                kwargs["inputs"] = _routing_view(kwargs["inputs"])
        return super().on_chain_end(outputs, run_id=run_id, parent_run_id=parent_run_id, **kwargs)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        if run_id in self._gk_graph_runs:
            self._gk_graph_runs.discard(run_id)
            if "inputs" in kwargs:
                kwargs["inputs"] = _routing_view(kwargs["inputs"])
        return super().on_chain_error(error, run_id=run_id, parent_run_id=parent_run_id, **kwargs)

    # ------------------------------------------------------------------ end

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            requested = self._gk_requested.pop(run_id, "unknown")
            observation = self._runs.get(run_id)
            if observation is not None:
                out = outcome_of(response, requested)
                update: dict[str, Any] = {"metadata": _metadata(out)}
                if out.cost is not None:
                    update["cost_details"] = {"total": out.cost}
                observation.update(**update)
        except Exception:
            logger.debug("gatewaykit langfuse: could not annotate a generation", exc_info=True)
        try:
            return super().on_llm_end(
                response, run_id=run_id, parent_run_id=parent_run_id, **kwargs
            )
        finally:
            self._gk_exit(run_id)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            requested = self._gk_requested.pop(run_id, "unknown")
            observation = self._runs.get(run_id)
            if observation is not None:
                out = failure_of(error, requested)
                observation.update(metadata=_metadata(out))
        except Exception:
            logger.debug("gatewaykit langfuse: could not annotate a failure", exc_info=True)
        try:
            return super().on_llm_error(error, run_id=run_id, parent_run_id=parent_run_id, **kwargs)
        finally:
            self._gk_exit(run_id)

    def _gk_exit(self, run_id: UUID) -> None:
        manager = self._gk_propagation.pop(run_id, None)
        if manager is None:
            return
        try:
            manager.__exit__(None, None, None)
        except Exception:  # e.g. an async run whose events ran in different contexts
            logger.debug("gatewaykit langfuse: propagation context not restored", exc_info=True)


def trace_attributes(
    metadata: Mapping[str, Any] | None,
    tags: Sequence[str] | None,
    params: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``propagate_attributes`` keywords for a root model run (empty when there is nothing)."""
    md = metadata or {}
    params = params or {}
    attrs: dict[str, Any] = {}
    user = md.get("langfuse_user_id") or params.get("end_user") or params.get("user")
    if isinstance(user, str) and user:
        attrs["user_id"] = user
    session = md.get("langfuse_session_id")
    if isinstance(session, str) and session:
        attrs["session_id"] = session
    name = md.get("langfuse_trace_name")
    if isinstance(name, str) and name:
        attrs["trace_name"] = name
    all_tags: list[str] = []
    for group in (
        md.get("langfuse_tags"),
        tags,
        md.get("gateway_tags"),
        params.get("gateway_tags"),
    ):
        if isinstance(group, list | tuple):
            for tag in map(str, group):
                if tag not in all_tags:
                    all_tags.append(tag)
    if all_tags:
        attrs["tags"] = all_tags
    return attrs


def _routing_view(state: Any) -> Any:
    """What a router graph step shows on the trace: group, attempts so far, fallbacks."""
    if not isinstance(state, Mapping) or "request" not in state:
        return state
    request = state.get("request")
    attempts = state.get("attempts") or []
    view: dict[str, Any] = {
        "model": getattr(request, "alias", None),
        "group": state.get("group"),
        "attempts": [a.as_dict() if hasattr(a, "as_dict") else a for a in attempts],
        "fallbacks": list(state.get("visited") or [])[1:],
    }
    served = state.get("served")
    if served is not None:
        view["deployment"] = getattr(served, "id", None)
    error = state.get("error")
    if error is not None:
        view["error"] = getattr(error, "kind", type(error).__name__)
    return view


def _metadata(out: Outcome) -> dict[str, Any]:
    md: dict[str, Any] = {
        "requested_model": out.requested_model,
        "model_group": out.model,
        "deployment": out.deployment or None,
        "status": out.status,
    }
    if out.status != "success":
        md["status_code"] = out.status_code or None
    if out.routing is not None:
        md["routing"] = dict(out.routing)
        md["fallbacks"] = list(out.routing.get("fallbacks") or ())
        md["attempt_count"] = len(out.routing.get("attempts") or ())
    gateway = {k: out.gateway[k] for k in _GATEWAY_KEYS if k in out.gateway}
    if gateway:
        md["gateway"] = gateway
    if out.cache is not None:
        md["cache"] = {"hit": True, "source": out.cache}
    elif out.cache_miss:
        md["cache"] = {"hit": False}
    return md


def langfuse_callbacks(
    *,
    public_key: str | None = None,
    secret_key: str | None = None,
    base_url: str | None = None,
    **client_options: Any,
) -> list[BaseCallbackHandler]:
    """``[GatewayLangfuseHandler]`` when Langfuse is configured, else ``[]`` (a true no-op).

    Keys and URL default to ``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY`` and
    ``LANGFUSE_BASE_URL`` (or ``LANGFUSE_HOST``); ``LANGFUSE_TRACING_ENABLED=false`` also
    turns it off. ``client_options`` go to ``langfuse.Langfuse`` (``timeout``,
    ``flush_interval``, ``sample_rate``, ``environment``, ``span_exporter``...). Call
    ``langfuse.get_client(public_key=...).flush()`` before a short script exits.

    Example::

        callbacks = langfuse_callbacks()
        chain = prompt | router
        chain.invoke({"q": "hi"}, config={"callbacks": callbacks})
    """
    public_key = public_key or os.environ.get("LANGFUSE_PUBLIC_KEY") or None
    secret_key = secret_key or os.environ.get("LANGFUSE_SECRET_KEY") or None
    if os.environ.get("LANGFUSE_TRACING_ENABLED", "true").lower() == "false":
        _log_off("LANGFUSE_TRACING_ENABLED=false")
        return []
    if client_options.get("tracing_enabled") is False:
        return []
    if not public_key or not secret_key:
        missing = " and ".join(
            name
            for name, value in (
                ("LANGFUSE_PUBLIC_KEY", public_key),
                ("LANGFUSE_SECRET_KEY", secret_key),
            )
            if not value
        )
        _log_off(f"{missing} not set")
        return []
    Langfuse(public_key=public_key, secret_key=secret_key, base_url=base_url, **client_options)
    return [GatewayLangfuseHandler(public_key=public_key)]


def _log_off(reason: str) -> None:
    if not _logged_off.is_set():
        _logged_off.set()
        logger.info("Langfuse tracing is off (%s); calls are not traced", reason)
