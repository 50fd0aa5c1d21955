"""Read what one finished model call says about itself, whatever model made it.

A :class:`~gatewaykit.RouterChatModel` answer carries ``response_metadata["routing"]``, a
:class:`~gatewaykit.GatewayChatModel` answer ``response_metadata["gateway"]`` (the proxy's
headers), a cached answer ``response_metadata["cache"]``; a failed routed call carries
``error.routing``. Metrics and traces both read them through :func:`outcome_of` and
:func:`failure_of`, so they never disagree about what happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.outputs import ChatGeneration, LLMResult

__all__ = ["Outcome", "failure_of", "outcome_of", "requested_model"]


@dataclass(slots=True)
class Outcome:
    """One call, as metrics and traces see it."""

    requested_model: str
    model: str
    deployment: str
    status: str = "success"
    status_code: str = "200"
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    cache: str | None = None
    """``"local"`` or ``"gateway"`` when the answer came from a cache."""
    cache_miss: bool = False
    """A response cache was asked and had no answer (the answer was then stored)."""
    routing: Mapping[str, Any] | None = None
    gateway: Mapping[str, Any] = field(default_factory=dict)


def requested_model(
    metadata: Mapping[str, Any] | None, invocation_params: Mapping[str, Any] | None
) -> str:
    """The model the caller asked for: the router's alias, or the chat model's model name."""
    if metadata:
        name = metadata.get("ls_model_name")
        if isinstance(name, str) and name:
            return name
    params = invocation_params or {}
    for key in ("model", "model_name", "_type"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return "unknown"


def _first_generation(response: LLMResult) -> ChatGeneration | None:
    for gens in response.generations:
        for gen in gens:
            if isinstance(gen, ChatGeneration):
                return gen
    return None


def outcome_of(response: LLMResult, requested: str) -> Outcome:
    """Served model, deployment, tokens, cost and cache state of a successful call."""
    gen = _first_generation(response)
    meta: Mapping[str, Any] = gen.message.response_metadata if gen is not None else {}
    info: Mapping[str, Any] = (gen.generation_info or {}) if gen is not None else {}
    routing = meta.get("routing") or info.get("routing")
    gateway = meta.get("gateway") or info.get("gateway") or {}
    cache_mark = meta.get("cache")
    out = Outcome(requested_model=requested, model=requested, deployment="")
    out.gateway = gateway if isinstance(gateway, Mapping) else {}
    if isinstance(cache_mark, Mapping):
        if cache_mark.get("hit"):
            out.cache = "local"
        else:
            out.cache_miss = True
    elif out.gateway.get("cache_hit"):
        out.cache = "gateway"
    if out.cache == "local":
        # A stored answer replayed: its old routing, tokens and cost are not this call's.
        out.deployment = "cache"
        out.cost = 0.0
        return out
    if isinstance(routing, Mapping):
        out.routing = routing
        out.requested_model = str(routing.get("model") or requested)
        out.model = str(routing.get("group") or out.requested_model)
        out.deployment = str(routing.get("deployment") or "")
        cost = routing.get("cost")
        out.cost = float(cost) if isinstance(cost, int | float) else None
    else:
        out.model = str(out.gateway.get("model_group") or requested)
        out.deployment = str(out.gateway.get("deployment_id") or "")
        cost = out.gateway.get("response_cost")
        out.cost = float(cost) if isinstance(cost, int | float) else None
    if out.cache == "gateway":
        out.cost = 0.0
    usage = getattr(gen.message, "usage_metadata", None) if gen is not None else None
    if usage:
        out.input_tokens = int(usage.get("input_tokens") or 0)
        out.output_tokens = int(usage.get("output_tokens") or 0)
        out.total_tokens = int(usage.get("total_tokens") or 0)
    else:
        token_usage = (response.llm_output or {}).get("token_usage") or {}
        if isinstance(token_usage, Mapping):
            out.input_tokens = int(token_usage.get("prompt_tokens") or 0)
            out.output_tokens = int(token_usage.get("completion_tokens") or 0)
            out.total_tokens = int(token_usage.get("total_tokens") or 0)
    if not out.total_tokens:
        out.total_tokens = out.input_tokens + out.output_tokens
    return out


def failure_of(error: BaseException, requested: str) -> Outcome:
    """Status (the typed error's ``kind``), status code and routing of a failed call."""
    routing = getattr(error, "routing", None)
    kind = getattr(error, "kind", None)
    status = getattr(error, "status", None)
    out = Outcome(
        requested_model=requested,
        model=requested,
        deployment=str(getattr(error, "deployment", None) or ""),
        status=str(kind) if isinstance(kind, str) else "error",
        status_code=str(status) if isinstance(status, int) else "",
        cost=0.0,
    )
    if isinstance(routing, Mapping):
        out.routing = routing
        out.requested_model = str(routing.get("model") or requested)
        out.model = str(routing.get("group") or out.requested_model)
        attempts = routing.get("attempts") or []
        if attempts and isinstance(attempts[-1], Mapping):
            out.deployment = str(attempts[-1].get("deployment") or out.deployment)
    else:
        group = getattr(error, "model_group", None)
        if isinstance(group, str) and group:
            out.model = group
    return out
