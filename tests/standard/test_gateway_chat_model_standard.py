"""LangChain's standard chat-model suites for GatewayChatModel, against MockGateway."""

from __future__ import annotations

from typing import Any

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from gatewaykit import GatewayChatModel

from .conftest import shared_gateway


class TestGatewayChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[GatewayChatModel]:
        return GatewayChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "gpt-4o-mini",
            "api_key": "sk-unit-test",
            "base_url": "http://127.0.0.1:9/v1",
        }

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"OPENAI_API_KEY": "sk-from-env", "OPENAI_API_BASE": "http://gateway.local/v1"},
            {"model": "gpt-4o-mini"},
            {"openai_api_key": "sk-from-env", "openai_api_base": "http://gateway.local/v1"},
        )


class TestGatewayChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[GatewayChatModel]:
        return GatewayChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "gpt-4o-mini",
            "api_key": "sk-integration-test",
            "base_url": shared_gateway().base_url,
            "stream_usage": True,
            "http_socket_options": (),
        }

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "gpt-4o"

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}
