"""LangChain's standard chat-model suites for RouterChatModel, routed over MockGateway.

Each group has a deployment that always fails with a 500 beside a healthy one, so every
standard test also exercises a failover.
"""

from __future__ import annotations

from typing import Any

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from gatewaykit import RouterChatModel
from gatewaykit.testing import Behavior

from .conftest import shared_gateway

DOWN = "standard-always-down"


def _config(base_url: str) -> dict[str, Any]:
    def dep(group: str, name: str, order: int, upstream: str | None = None) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{upstream or group}",
                "api_base": base_url,
                "api_key": "sk-standard",
                "order": order,
            },
            "model_info": {"id": name, "supports_response_schema": True},
        }

    return {
        "model_list": [
            dep("gpt-4o-mini", "mini-down", 1, upstream=DOWN),
            dep("gpt-4o-mini", "mini-b", 2),
            dep("gpt-4o", "full-down", 1, upstream=DOWN),
            dep("gpt-4o", "full-a", 2),
        ],
        # No cooldown: every call meets the broken deployment first and fails over.
        "router_settings": {"num_retries": 1, "disable_cooldowns": True},
    }


class TestRouterChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RouterChatModel]:
        return RouterChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"config": _config("http://127.0.0.1:9/v1"), "model": "gpt-4o-mini"}


class TestRouterChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[RouterChatModel]:
        return RouterChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        gw = shared_gateway()
        gw.script(DOWN, Behavior(status=500))
        return {"config": _config(gw.base_url), "model": "gpt-4o-mini"}

    def test_every_call_fails_over(self, model: Any) -> None:
        routed = model.invoke("hello").response_metadata["routing"]
        assert [a["deployment"] for a in routed["attempts"]] == ["mini-down", "mini-b"]

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
