"""Read what the gateway says about a call from its response headers.

A LiteLLM proxy reports which deployment served the call, what it cost, the key's spend, how many
retries and fallbacks it made and how much rate limit is left — but only in headers, which
LangChain drops. :func:`parse_gateway_headers` turns them into a :class:`GatewayInfo` record that
:class:`~gatewaykit.GatewayChatModel` puts in ``response_metadata["gateway"]``. Parsing never
raises: a malformed header is skipped, not fatal.

Example::

    info = parse_gateway_headers(
        {"x-litellm-model-id": "dep-1", "x-litellm-response-cost": "0.002"}
    )
    assert info["deployment_id"] == "dep-1" and info["response_cost"] == 0.002
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from gatewaykit.errors import parse_duration, parse_retry_after

__all__ = ["GatewayInfo", "RateLimitInfo", "parse_gateway_headers"]


class RateLimitInfo(TypedDict, total=False):
    """``x-ratelimit-*`` headers (the key's limits when set, else the provider's)."""

    remaining_requests: int
    remaining_tokens: int
    limit_requests: int
    limit_tokens: int
    reset_requests_s: float
    reset_tokens_s: float


class GatewayInfo(TypedDict, total=False):
    """What the gateway reported about one call. Keys are present only when the header was.

    ``deployment_id`` is the deployment that actually served the call (after the gateway's own
    fallbacks), the reliable signal for cost attribution; ``model_group`` the group it belongs to.
    """

    call_id: str
    deployment_id: str
    model_group: str
    model_name: str
    api_base: str
    region: str
    gateway_version: str
    response_cost: float
    key_spend: float
    key_max_budget: float
    attempted_retries: int
    max_retries: int
    attempted_fallbacks: int
    rate_limit: RateLimitInfo
    key_remaining_requests: dict[str, int]
    key_remaining_tokens: dict[str, int]
    retry_after_s: float
    cache_key: str
    cache_hit: bool
    response_duration_ms: float
    overhead_duration_ms: float
    timeout_s: float
    applied_guardrails: list[str]
    applied_policies: list[str]


_STR = {
    "x-litellm-call-id": "call_id",
    "x-litellm-model-id": "deployment_id",
    "x-litellm-model-group": "model_group",
    "x-litellm-model-name": "model_name",
    "x-litellm-model-api-base": "api_base",
    "x-litellm-model-region": "region",
    "x-litellm-version": "gateway_version",
    "x-litellm-cache-key": "cache_key",
}
_FLOAT = {
    "x-litellm-response-cost": "response_cost",
    "x-litellm-key-spend": "key_spend",
    "x-litellm-key-max-budget": "key_max_budget",
    "x-litellm-response-duration-ms": "response_duration_ms",
    "x-litellm-overhead-duration-ms": "overhead_duration_ms",
    "x-litellm-timeout": "timeout_s",
}
_INT = {
    "x-litellm-attempted-retries": "attempted_retries",
    "x-litellm-max-retries": "max_retries",
    "x-litellm-attempted-fallbacks": "attempted_fallbacks",
}
_RL_INT = {
    "x-ratelimit-remaining-requests": "remaining_requests",
    "x-ratelimit-remaining-tokens": "remaining_tokens",
    "x-ratelimit-limit-requests": "limit_requests",
    "x-ratelimit-limit-tokens": "limit_tokens",
}
_RL_DUR = {
    "x-ratelimit-reset-requests": "reset_requests_s",
    "x-ratelimit-reset-tokens": "reset_tokens_s",
}
_LIST = {
    "x-litellm-applied-guardrails": "applied_guardrails",
    "x-litellm-applied-policies": "applied_policies",
}
_KEY_REMAINING_REQ = "x-litellm-key-remaining-requests-"
_KEY_REMAINING_TOK = "x-litellm-key-remaining-tokens-"


def _num(value: str) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # drop NaN


def parse_gateway_headers(headers: Mapping[str, Any] | None) -> GatewayInfo:
    """Parse ``x-litellm-*``, ``x-ratelimit-*`` and ``retry-after`` headers; never raises."""
    info: dict[str, Any] = {}
    if not headers:
        return GatewayInfo()
    rate: dict[str, Any] = {}
    key_req: dict[str, int] = {}
    key_tok: dict[str, int] = {}
    for raw_name, raw_value in headers.items():
        name = str(raw_name).lower()
        if not (name.startswith("x-") or name.startswith("retry-after")):
            continue
        value = str(raw_value).strip()
        if not value or value in ("None", "null"):
            continue
        if name in _STR:
            info[_STR[name]] = value
        elif name in _FLOAT:
            f = _num(value)
            if f is not None:
                info[_FLOAT[name]] = f
        elif name in _INT:
            f = _num(value)
            if f is not None:
                info[_INT[name]] = int(f)
        elif name in _RL_INT:
            f = _num(value)
            if f is not None:
                rate[_RL_INT[name]] = int(f)
        elif name in _RL_DUR:
            d = parse_duration(value)
            if d is not None:
                rate[_RL_DUR[name]] = d
        elif name in _LIST:
            info[_LIST[name]] = [p.strip() for p in value.split(",") if p.strip()]
        elif name.startswith(_KEY_REMAINING_REQ):
            f = _num(value)
            if f is not None:
                key_req[name[len(_KEY_REMAINING_REQ) :]] = int(f)
        elif name.startswith(_KEY_REMAINING_TOK):
            f = _num(value)
            if f is not None:
                key_tok[name[len(_KEY_REMAINING_TOK) :]] = int(f)
        elif name == "x-litellm-cache-hit":
            info["cache_hit"] = value.lower() in ("true", "1", "yes")
    if rate:
        info["rate_limit"] = rate
    if key_req:
        info["key_remaining_requests"] = key_req
    if key_tok:
        info["key_remaining_tokens"] = key_tok
    lowered = {
        str(k).lower(): str(v) for k, v in headers.items() if "retry-after" in str(k).lower()
    }
    if lowered:
        ra = parse_retry_after(lowered)
        if ra is not None:
            info["retry_after_s"] = ra
    return info  # type: ignore[return-value]
