"""Error classification: every row of the taxonomy, across LiteLLM versions' status codes."""

from __future__ import annotations

import pickle

import httpx
import openai
import pytest
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelError,
    ModelRateLimitError,
)
from langchain_openai.chat_models.base import OpenAIRateLimitError

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
    UpstreamError,
    classify,
    map_errors,
    parse_retry_after,
    translate,
)


def body(message: object, type_: str | None = None, code: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# (status, body, headers, expected class, extra attribute checks)
ROWS = [
    # budget exceeded: 400 in 2024-25 releases, 429 in recent ones, same type
    (
        400,
        body(
            "Budget has been exceeded! Current cost: 1.5, Max budget: 1.0", "budget_exceeded", "400"
        ),
        {},
        BudgetExceeded,
        {"current_cost": 1.5, "max_budget": 1.0, "scope": "key"},
    ),
    (
        429,
        body(
            "Budget has been exceeded! Current cost: 12.0, Max budget: 10.0",
            "budget_exceeded",
            "429",
        ),
        {},
        BudgetExceeded,
        {"max_budget": 10.0},
    ),
    (
        400,
        body(
            "ExceededTokenBudget: Current spend for token: 7.2; Max Budget for Token: 5.0",
            "budget_exceeded",
        ),
        {},
        BudgetExceeded,
        {"scope": "key"},
    ),
    (
        401,
        body(
            "Budget has been exceeded: User ishaan3 has exceeded their budget. Current spend: 0.0021; Max Budget: 0.001",
            "auth_error",
        ),
        {},
        BudgetExceeded,
        {"scope": "user"},
    ),
    (
        429,
        body(
            "No deployments available - crossed budget: Exceeded budget for provider openai: 0.5 >= 0.1"
        ),
        {},
        BudgetExceeded,
        {"scope": "provider"},
    ),
    (
        400,
        body("Team=eng over budget. Spend=12, Budget=10", "budget_exceeded"),
        {},
        BudgetExceeded,
        {"scope": "team"},
    ),
    # provider / proxy rate limits
    (
        429,
        body(
            "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached",
            "throttling_error",
            "429",
        ),
        {"retry-after": "7"},
        RateLimited,
        {"retry_after": 7.0},
    ),
    (
        429,
        body(
            "Rate limit exceeded for key: sk-...abcd. Limit type: requests. Current limit: 10, Remaining: 0. Limit resets at: 2026-11-24 10:00:00"
        ),
        {"retry-after": "42", "rate_limit_type": "requests"},
        RateLimited,
        {"retry_after": 42.0, "limit_type": "requests"},
    ),
    (429, body("Too many requests"), {"retry-after-ms": "1500"}, RateLimited, {"retry_after": 1.5}),
    # whole group cooling down
    (
        429,
        body(
            "No deployments available for selected model, Try again in 5 seconds. Passed model=gpt-4o. pre-call-checks=False, cooldown_list=['a']"
        ),
        {},
        NoDeploymentAvailable,
        {"retry_after": 5.0},
    ),
    # model access: 401 (older) or 403 (newer)
    (
        401,
        body(
            "key not allowed to access model. This key can only access models=['gpt-4o', 'cheap']. Tried to access claude-opus",
            "key_model_access_denied",
        ),
        {},
        ModelAccessDenied,
        {"model": "claude-opus", "allowed_models": ["gpt-4o", "cheap"]},
    ),
    (
        403,
        body(
            "The requested model 'claude-opus' is not available for this API key, or the model name is invalid.",
            "key_model_access_denied",
            "403",
        ),
        {},
        ModelAccessDenied,
        {"model": "claude-opus"},
    ),
    (
        401,
        body("team not allowed to access model", "team_model_access_denied"),
        {},
        ModelAccessDenied,
        {},
    ),
    (
        401,
        body(
            "Not allowed to access model due to tags configuration. Passed model=gpt-4o and tags=['x']"
        ),
        {},
        ModelAccessDenied,
        {},
    ),
    # authentication
    (
        401,
        body(
            "Authentication Error, Invalid proxy server token passed. Received API Key = sk-1234567890abcdef, Key Hash (Token) = 9a8b",
            "auth_error",
            "401",
        ),
        {},
        AuthenticationFailed,
        {},
    ),
    (401, body("Authentication Error - Expired Key", "expired_key"), {}, AuthenticationFailed, {}),
    # guardrails: message is an object
    (
        400,
        {
            "error": {
                "message": {
                    "error": "Violated guardrail policy",
                    "bedrock_guardrail_response": {"action": "GUARDRAIL_INTERVENED"},
                },
                "type": "None",
                "param": "None",
                "code": "400",
            }
        },
        {"x-litellm-applied-guardrails": "bedrock-pre-guard"},
        GuardrailBlocked,
        {"guardrail": "bedrock-pre-guard"},
    ),
    (
        400,
        body("Guardrail blocked this request: guardrail_name=my-content-filter violated"),
        {},
        GuardrailBlocked,
        {"guardrail": "my-content-filter"},
    ),
    # context window
    (
        400,
        body(
            "litellm.ContextWindowExceededError: litellm.BadRequestError: prompt is too long: 210000 tokens > 200000 maximum"
        ),
        {},
        ContextWindowExceeded,
        {},
    ),
    (
        400,
        body(
            "This model's maximum context length is 8192 tokens",
            "invalid_request_error",
            "context_length_exceeded",
        ),
        {},
        ContextWindowExceeded,
        {},
    ),
    # content policy
    (
        400,
        body(
            "litellm.ContentPolicyViolationError: The response was filtered due to the prompt triggering content management policy"
        ),
        {},
        ContentPolicyViolation,
        {},
    ),
    (400, body("Response output was blocked."), {}, ContentPolicyViolation, {}),
    # unknown model, generic 4xx, 5xx, timeouts
    (
        400,
        body(
            "/chat/completions: Invalid model name passed in model=nope. Call `/v1/models` to view available models for your key.",
            "invalid_request_error",
            "400",
        ),
        {},
        ModelNotFound,
        {},
    ),
    (404, body("model not found", "not_found_error"), {}, ModelNotFound, {}),
    (400, body("temperature must be <= 2", "invalid_request_error"), {}, InvalidRequest, {}),
    (422, "unprocessable", {}, InvalidRequest, {}),
    (
        500,
        body("litellm.InternalServerError: upstream exploded", "internal_server_error"),
        {},
        UpstreamError,
        {},
    ),
    (502, "<html>Bad gateway</html>", {}, UpstreamError, {}),
    (503, body("overloaded"), {}, UpstreamError, {}),
    (408, body("Request timed out"), {}, GatewayTimeout, {}),
]


@pytest.mark.parametrize(("status", "payload", "headers", "cls", "attrs"), ROWS)
def test_classify_taxonomy(
    status: int, payload: object, headers: dict[str, str], cls: type, attrs: dict[str, object]
) -> None:
    err = classify(status, payload, headers, deployment="dep-1")
    assert type(err) is cls, f"{status} {payload!r} -> {type(err).__name__}"
    assert isinstance(err, GatewayError) and isinstance(err, ModelError)
    assert err.status == status
    for name, value in attrs.items():
        assert getattr(err, name) == value, name
    assert err.deployment == "dep-1"


def test_retryable_flags_follow_langchain() -> None:
    assert RateLimited("x").is_retryable
    assert UpstreamError("x").is_retryable
    assert NoDeploymentAvailable("x").is_retryable
    assert not BudgetExceeded("x").is_retryable
    assert not InvalidRequest("x").is_retryable
    assert not ContextWindowExceeded("x").is_retryable
    assert isinstance(ContextWindowExceeded("x"), ContextOverflowError)
    assert isinstance(BudgetExceeded("x"), ModelRateLimitError)


def test_keys_never_in_message() -> None:
    secret = "sk-1234567890abcdefSECRET"
    err = classify(
        401, body(f"Invalid proxy server token passed. Received API Key = {secret}", "auth_error")
    )
    assert secret not in str(err) and secret not in repr(err) and secret not in err.message
    assert "sk-" in str(err)  # masked, not removed


def _status_error(
    cls: type[openai.APIStatusError],
    status: int,
    payload: dict[str, object],
    headers: dict[str, str] | None = None,
) -> openai.APIStatusError:
    req = httpx.Request("POST", "http://gw/v1/chat/completions")
    resp = httpx.Response(status, json=payload, headers=headers or {}, request=req)
    return cls(message="err", response=resp, body=payload.get("error"))


def test_translate_keeps_sdk_classes_catchable() -> None:
    sdk = _status_error(
        OpenAIRateLimitError,
        429,
        body("Budget has been exceeded! Current cost: 2, Max budget: 1", "budget_exceeded"),
        {"retry-after": "3"},
    )
    err = translate(sdk, deployment="d")
    assert isinstance(err, BudgetExceeded)
    assert isinstance(err, openai.RateLimitError)  # existing `except openai.RateLimitError` works
    assert isinstance(err, OpenAIRateLimitError)
    assert err.status_code == 429 and err.retry_after == 3.0 and err.deployment == "d"
    assert err.__cause__ is sdk
    # still pickles (multiprocessing, LangGraph tasks), as the gatewaykit class
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is BudgetExceeded and again.max_budget == 1.0


def test_translate_transport_errors() -> None:
    req = httpx.Request("POST", "http://gw/v1/chat/completions")
    timeout = translate(openai.APITimeoutError(req))
    assert isinstance(timeout, GatewayTimeout) and isinstance(timeout, openai.APITimeoutError)
    conn = translate(openai.APIConnectionError(request=req))
    assert isinstance(conn, GatewayConnectionError) and conn.is_retryable
    assert isinstance(translate(httpx.ConnectError("refused")), GatewayConnectionError)
    bug = KeyError("user bug")
    assert translate(bug) is bug  # a bug is never disguised as a gateway error


def test_map_errors_context_manager() -> None:
    sdk = _status_error(
        openai.BadRequestError, 400, body("litellm.ContextWindowExceededError: too long")
    )
    with pytest.raises(ContextWindowExceeded) as info, map_errors(deployment="d2"):
        raise sdk
    assert info.value.deployment == "d2"
    assert isinstance(info.value, openai.BadRequestError)


@pytest.mark.parametrize(
    ("headers", "message", "expected"),
    [
        ({"retry-after": "12"}, "", 12.0),
        ({"Retry-After-Ms": "250"}, "", 0.25),
        ({}, "No deployments available, Try again in 60 seconds.", 60.0),
        ({"x-ratelimit-reset-requests": "6m0s"}, "", 360.0),
        ({"x-ratelimit-reset-tokens": "250ms"}, "", 0.25),
        ({"retry-after": "garbage"}, "", None),
        ({}, "", None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], message: str, expected: float | None) -> None:
    assert parse_retry_after(headers, message) == expected


def test_retry_after_relayed_by_the_proxy() -> None:
    # LiteLLM 1.106.2 relays the provider's Retry-After as llm_provider-retry-after.
    assert parse_retry_after({"llm_provider-retry-after": "9"}) == 9.0
    assert parse_retry_after({"retry-after": "2", "llm_provider-retry-after": "9"}) == 2.0
