"""GatewayChatModel.from_config: through a gateway, or straight to a deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewaykit import ConfigError, GatewayChatModel, GatewayConfig
from gatewaykit.testing import MockGateway

FIXTURES = Path(__file__).parent.parent / "fixtures" / "configs"


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as g:
        yield g


def test_gateway_mode_sends_the_alias_with_the_virtual_key(
    gw: MockGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_VIRTUAL_KEY", "sk-team-virtual-key-123456")
    cfg = GatewayConfig.from_dict(
        {
            "model_list": [
                {
                    "model_name": "claude-sonnet",
                    "litellm_params": {"model": "anthropic/claude-sonnet-4-6"},
                    "model_info": {"max_input_tokens": 200000, "supports_function_calling": True},
                }
            ],
            "gateway": {
                "base_url": gw.base_url,
                "api_key": "os.environ/TEAM_VIRTUAL_KEY",
                "default_tags": ["svc-search"],
                "user": "svc",
            },
        }
    )
    llm = GatewayChatModel.from_config(cfg, "claude-sonnet")
    msg = llm.invoke("hi")
    req = gw.requests[-1]
    assert req.body is not None and req.body["model"] == "claude-sonnet"
    assert req.headers["authorization"] == "Bearer sk-team-virtual-key-123456"
    assert req.headers["x-litellm-tags"] == "svc-search"
    assert req.body["user"] == "svc"
    assert msg.response_metadata["gateway"]["model_group"] == "claude-sonnet"
    assert llm.profile is not None and llm.profile["max_input_tokens"] == 200000
    assert "sk-team-virtual-key-123456" not in repr(llm)


def test_gateway_mode_unknown_alias_lists_the_known_ones(gw: MockGateway) -> None:
    cfg = GatewayConfig.from_dict(
        {
            "model_list": [{"model_name": "a", "litellm_params": {"model": "openai/a"}}],
            "gateway": {"base_url": gw.base_url, "api_key": "sk-x"},
        }
    )
    with pytest.raises(ConfigError, match=r"unknown model alias 'b'.*defines: a"):
        GatewayChatModel.from_config(cfg, "b")


def test_direct_mode_calls_the_deployment(gw: MockGateway) -> None:
    cfg = {
        "model_list": [
            {
                "model_name": "local",
                "litellm_params": {
                    "model": "openai/llama-3-70b",
                    "api_base": gw.base_url,
                    "api_key": "sk-local",
                    "timeout": 12,
                },
                "model_info": {"id": "local-1"},
            }
        ]
    }
    llm = GatewayChatModel.from_config(cfg, "local")
    assert llm.deployment_id == "local-1" and llm.model_group == "local"
    assert llm.dialect == "openai"
    llm.invoke("hi")
    body = gw.requests[-1].body
    assert body is not None and body["model"] == "llama-3-70b"  # provider prefix stripped
    assert "metadata" not in body  # a plain upstream gets no LiteLLM-only fields


def test_direct_mode_missing_env_var_names_it_only_when_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = GatewayConfig.from_yaml(FIXTURES / "basic.yaml")  # loads: the var is only a reference
    with pytest.raises(ConfigError) as info:
        GatewayChatModel.from_config(cfg, "gpt-4o")
    assert "OPENAI_API_KEY" in str(info.value)
    assert "model_list[0].litellm_params.api_key" in str(info.value)


def test_direct_mode_needs_an_openai_compatible_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-xxxxxxxxxxxxxxxx")
    cfg = GatewayConfig.from_yaml(FIXTURES / "basic.yaml")
    with pytest.raises(ConfigError) as info:
        GatewayChatModel.from_config(cfg, "claude-sonnet")
    assert "model_list[1].litellm_params.api_base" in str(info.value)
    assert "gateway" in str(info.value)
    assert "sk-ant-xxxxxxxxxxxxxxxx" not in str(info.value)
