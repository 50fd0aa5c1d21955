"""Error bodies in the LiteLLM proxy's shapes, per LiteLLM version.

Envelope (``ProxyException.to_dict``): ``{"error": {"message", "type", "param", "code"}}`` with
``code`` the HTTP status as a string. Messages, types and statuses follow LiteLLM 1.106.2's source
(``litellm/exceptions.py``, ``proxy/auth``, ``proxy/hooks/parallel_request_limiter_v3.py``,
``proxy/common_request_processing.py``) for the current style, and the 2024-25 releases for
``litellm_version="legacy"``: budget exceeded 400 (current: 422, ``litellm.budget_exceeded_status_
code``), model access denied 401 with the older message (current: 403, sanitised message), and the
literal string ``"None"`` as ``type`` of errors raised as FastAPI ``HTTPException`` (current:
an OpenAI type derived from the status, the object detail moved to ``provider_specific_fields``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ErrorReply",
    "abbreviate_key",
    "build_error",
    "default_status",
    "hash_key",
    "kind_for_status",
    "proxy_rate_limit",
]

_AVAILABLE_MODELS_HINT = "Call `/v1/models` to view available models for your key."


@dataclass(slots=True)
class ErrorReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What an error message may quote."""

    model: str = ""
    path: str = "/chat/completions"
    api_key: str | None = None
    allowed_models: Sequence[str] = ()
    spend: float | None = None
    max_budget: float | None = None
    key_alias: str | None = None
    prompt_tokens: int = 0
    guardrails: Sequence[str] = ()
    hang_s: float = 30.0
    detail: str | None = None


def hash_key(key: str) -> str:
    """LiteLLM stores and quotes keys by their SHA-256 (``hash_token``)."""
    return hashlib.sha256(key.encode()).hexdigest()


def abbreviate_key(key: str | None) -> str:
    """``sk-...`` plus the last four characters, as LiteLLM's ``abbreviate_api_key``."""
    if not key or len(key) < 8:
        return "sk-..."
    return f"sk-...{key[-4:]}"


def default_status(kind: str, *, legacy: bool) -> int:
    if kind == "budget_exceeded":
        return 400 if legacy else 422
    if kind == "model_not_allowed":
        return 401 if legacy else 403
    return _STATUS[kind]


_STATUS = {
    "rate_limit": 429,
    "server": 500,
    "context_window": 400,
    "content_policy": 400,
    "guardrail_blocked": 400,
    "no_deployments": 429,
    "auth": 401,
    "bad_request": 400,
    "not_found": 400,
    "timeout": 408,
}


def kind_for_status(status: int) -> str:
    """The error kind a bare ``Behavior(status=...)`` answers with."""
    if status == 429:
        return "rate_limit"
    if status == 401:
        return "auth"
    if status == 403:
        return "model_not_allowed"
    if status == 404:
        return "not_found"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server"
    return "bad_request"


def _envelope(
    message: Any, type_: Any, param: Any, status: int, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": type_, "param": param, "code": str(status)}
    if extra:
        error.update(extra)
    return {"error": error}


def _server_message(status: int) -> tuple[str, str]:
    if status == 502:
        return "litellm.BadGatewayError: BadGatewayError: OpenAIException - Bad gateway", ""
    if status == 503:
        return (
            "litellm.ServiceUnavailableError: ServiceUnavailableError: OpenAIException - "
            "The server is overloaded or not ready yet.",
            "",
        )
    if status == 500:
        return (
            "litellm.InternalServerError: InternalServerError: OpenAIException - "
            "The server had an error while processing your request. Sorry about that!",
            "internal_server_error",
        )
    return f"litellm.APIError: APIError: OpenAIException - Upstream error {status}", ""


def build_error(kind: str, status: int | None, ctx: ErrorContext, *, legacy: bool) -> ErrorReply:
    """The response for an error of ``kind`` (see ``Behavior.error``)."""
    status = status if status is not None else default_status(kind, legacy=legacy)
    # Errors LiteLLM raises as a FastAPI HTTPException: "None" in legacy releases, else an
    # OpenAI type derived from the status (proxy/common_utils/openai_error_payload.py).
    http_type = "None" if legacy else _openai_type(status)
    http_param = "None" if legacy else None
    # Provider errors mapped by litellm without an explicit type: null in legacy releases.
    provider_type = None if legacy else _openai_type(status)
    headers: dict[str, str] = {}
    model = ctx.model

    if kind == "rate_limit":
        message = (
            f"litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for "
            f"{model or 'this model'}. Please try again later."
        )
        return ErrorReply(status, _envelope(message, "throttling_error", None, status), headers)
    if kind == "server":
        message, type_ = _server_message(status)
        return ErrorReply(status, _envelope(message, type_ or provider_type, None, status), headers)
    if kind == "context_window":
        tokens = max(8193, ctx.prompt_tokens)
        message = (
            "litellm.ContextWindowExceededError: litellm.BadRequestError: "
            "ContextWindowExceededError: OpenAIException - This model's maximum context length "
            f"is 8192 tokens. However, your messages resulted in {tokens} tokens. Please reduce "
            "the length of the messages."
        )
        return ErrorReply(status, _envelope(message, provider_type, None, status), headers)
    if kind == "content_policy":
        message = (
            "litellm.ContentPolicyViolationError: ContentPolicyViolationError: OpenAIException - "
            "Your request was rejected as a result of our safety system."
        )
        return ErrorReply(status, _envelope(message, provider_type, None, status), headers)
    if kind == "budget_exceeded":
        spend = ctx.spend if ctx.spend is not None else 0.0
        budget = ctx.max_budget if ctx.max_budget is not None else 0.0
        if legacy or ctx.api_key is None:
            message = f"Budget has been exceeded! Current cost: {spend}, Max budget: {budget}"
        else:
            label = f"{ctx.key_alias or 'key'} ({abbreviate_key(ctx.api_key)})"
            message = (
                f"Budget has been exceeded! Key={label} Current cost: {spend}, Max budget: {budget}"
            )
        return ErrorReply(status, _envelope(message, "budget_exceeded", None, status), headers)
    if kind == "model_not_allowed":
        if legacy:
            message = (
                "key not allowed to access model. This key can only access "
                f"models={list(ctx.allowed_models)}. Tried to access {model}"
            )
        else:
            message = (
                f"The requested model '{model}' is not available for this API key, or the model "
                "name is invalid. Check the models available to you and try again."
            )
        return ErrorReply(status, _envelope(message, "key_model_access_denied", "model", status))
    if kind == "guardrail_blocked":
        name = ctx.guardrails[0] if ctx.guardrails else "bedrock-guard"
        detail = {
            "error": "Violated guardrail policy",
            "bedrock_guardrail_response": {
                "action": "GUARDRAIL_INTERVENED",
                "guardrail": name,
                "outputs": [{"text": "Sorry, the model cannot answer this question."}],
                "assessments": [
                    {
                        "contentPolicy": {
                            "filters": [
                                {"type": "VIOLENCE", "confidence": "HIGH", "action": "BLOCKED"}
                            ]
                        }
                    }
                ],
            },
        }
        if legacy:
            return ErrorReply(status, _envelope(detail, "None", "None", status))
        return ErrorReply(
            status,
            _envelope(
                detail["error"], http_type, None, status, {"provider_specific_fields": detail}
            ),
        )
    if kind == "no_deployments":
        message = (
            "No deployments available for selected model, Try again in 5 seconds. "
            f"Passed model={model}. pre-call-checks=False, cooldown_list=[]"
        )
        headers["retry-after"] = "5"
        type_ = "None" if legacy else "rate_limit_error"
        return ErrorReply(status, _envelope(message, type_, http_param, status), headers)
    if kind == "auth":
        if ctx.api_key is None:
            message = "Authentication Error, No api key passed in."
        else:
            message = (
                "Authentication Error, Invalid proxy server token passed. Received API Key = "
                f"{abbreviate_key(ctx.api_key)}, Key Hash (Token) ={hash_key(ctx.api_key)}. "
                "Unable to find token in cache or `LiteLLM_VerificationTokenTable`"
            )
        return ErrorReply(status, _envelope(message, "auth_error", http_param, status))
    if kind == "not_found":
        message = (
            f"{ctx.path}: Invalid model name passed in model={model}. {_AVAILABLE_MODELS_HINT}"
        )
        extra = None if legacy else {"provider_specific_fields": {"error": message}}
        return ErrorReply(status, _envelope(message, http_type, http_param, status, extra))
    if kind == "timeout":
        message = (
            "litellm.Timeout: APITimeoutError - Request timed out. "
            f"Error_str: Request timed out after {ctx.hang_s} seconds."
        )
        return ErrorReply(status, _envelope(message, provider_type, None, status), headers)
    # bad_request
    message = f"litellm.BadRequestError: OpenAIException - {ctx.detail or 'Invalid request'}"
    return ErrorReply(status, _envelope(message, provider_type, None, status), headers)


def proxy_rate_limit(
    api_key: str, limit_type: str, limit: int, window_s: int, *, legacy: bool
) -> ErrorReply:
    """The proxy's own per-key limiter (``parallel_request_limiter_v3``): 429 with
    ``retry-after``, ``rate_limit_type`` and ``reset_at`` headers."""
    reset = datetime.fromtimestamp(datetime.now(UTC).timestamp() + window_s, tz=UTC)
    reset_at = reset.strftime("%Y-%m-%d %H:%M:%S UTC")
    message = (
        f"Rate limit exceeded for api_key: {hash_key(api_key)}. Limit type: {limit_type}. "
        f"Current limit: {limit}, Remaining: 0. Limit resets at: {reset_at}"
    )
    type_ = "None" if legacy else "throttling_error"
    param = "None" if legacy else None
    headers = {"retry-after": str(window_s), "rate_limit_type": limit_type, "reset_at": reset_at}
    return ErrorReply(429, _envelope(message, type_, param, 429), headers)


def _openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "internal_server_error"
