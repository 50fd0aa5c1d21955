"""LangChain's standard suites with guardrails on: natively in GatewayChatModel, and wrapped.

Guardrails must not change anything a chat model promises (tools, structured output,
streaming, usage, callbacks) for text that holds nothing to mask.
"""

from __future__ import annotations

from typing import Any

from langchain_tests.integration_tests import ChatModelIntegrationTests

from gatewaykit import (
    ContentFilter,
    GatewayChatModel,
    GuardedChatModel,
    PIIGuardrail,
    PromptInjectionGuardrail,
)

from .conftest import shared_gateway


def _guardrails() -> list[Any]:
    return [PIIGuardrail(), PromptInjectionGuardrail(), ContentFilter(["project bluebird"])]


def _gateway_params() -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "api_key": "sk-integration-test",
        "base_url": shared_gateway().base_url,
        "stream_usage": True,
        "http_socket_options": (),
    }


class TestGatewayChatModelWithLocalGuardrails(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[GatewayChatModel]:
        return GatewayChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {**_gateway_params(), "local_guardrails": _guardrails()}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}


class TestGuardedChatModel(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[GuardedChatModel]:
        return GuardedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": GatewayChatModel(**_gateway_params()), "guardrails": _guardrails()}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}
