"""Gateway response headers -> the typed GatewayInfo record."""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as hs

from gatewaykit.gateway_headers import parse_gateway_headers

# Headers as a real LiteLLM 1.106.2 proxy sent them after a fallback (see the proxy tests).
PROXY_HEADERS = {
    "x-litellm-call-id": "cf24ea05-29d1-491c-af31-78d3026a0504",
    "x-litellm-model-id": "dep-ok",
    "x-litellm-model-name": "openai/ok",
    "x-litellm-model-api-base": "http://127.0.0.1:18081/v1",
    "x-litellm-version": "1.106.2",
    "x-litellm-response-cost": "4.9999999999999996e-06",
    "x-litellm-key-spend": "4.9999999999999996e-06",
    "x-litellm-response-duration-ms": "582.2370052337646",
    "x-litellm-overhead-duration-ms": "248.7631",
    "llm_provider-server": "uvicorn",
    "x-litellm-model-group": "g",
    "x-litellm-attempted-retries": "0",
    "x-litellm-attempted-fallbacks": "1",
    "x-ratelimit-remaining-requests": "99",
    "x-ratelimit-limit-requests": "100",
    "x-ratelimit-remaining-tokens": "9000",
    "x-ratelimit-reset-requests": "1s",
    "x-litellm-key-remaining-requests-gpt-4o": "7",
    "x-litellm-applied-guardrails": "pii-mask, content-filter",
    "x-litellm-cache-key": "abc123",
}


def test_full_proxy_record() -> None:
    info = parse_gateway_headers(PROXY_HEADERS)
    assert info["call_id"] == "cf24ea05-29d1-491c-af31-78d3026a0504"
    assert info["deployment_id"] == "dep-ok"
    assert info["model_group"] == "g"
    assert info["model_name"] == "openai/ok"
    assert info["api_base"] == "http://127.0.0.1:18081/v1"
    assert info["gateway_version"] == "1.106.2"
    assert abs(info["response_cost"] - 5e-06) < 1e-12
    assert info["attempted_retries"] == 0 and info["attempted_fallbacks"] == 1
    assert info["overhead_duration_ms"] == 248.7631
    assert info["rate_limit"] == {
        "remaining_requests": 99,
        "limit_requests": 100,
        "remaining_tokens": 9000,
        "reset_requests_s": 1.0,
    }
    assert info["key_remaining_requests"] == {"gpt-4o": 7}
    assert info["applied_guardrails"] == ["pii-mask", "content-filter"]
    assert info["cache_key"] == "abc123"
    assert "llm_provider-server" not in str(info)


def test_case_insensitive_and_httpx_headers() -> None:
    headers = httpx.Headers({"X-LiteLLM-Model-Id": "d1", "Retry-After": "3"})
    info = parse_gateway_headers(headers)
    assert info == {"deployment_id": "d1", "retry_after_s": 3.0}


def test_malformed_values_are_skipped_not_fatal() -> None:
    info = parse_gateway_headers(
        {
            "x-litellm-response-cost": "NaN",
            "x-litellm-attempted-retries": "many",
            "x-litellm-key-spend": "None",
            "x-ratelimit-reset-requests": "soon",
            "x-litellm-model-id": "ok",
        }
    )
    assert info == {"deployment_id": "ok"}


def test_empty() -> None:
    assert parse_gateway_headers(None) == {}
    assert parse_gateway_headers({}) == {}


@given(hs.dictionaries(hs.text(max_size=40), hs.text(max_size=40), max_size=20))
def test_never_raises(headers: dict[str, str]) -> None:
    parse_gateway_headers(headers)
    parse_gateway_headers({("x-litellm-" + k): v for k, v in headers.items()})
