"""A lean HTTP path for routed, non-streaming calls.

The router's happy path must cost less than a bare ``ChatOpenAI`` call, so for plain
(non-streaming, no ``response_format``) requests it skips the openai SDK: the payload is still
built by langchain-openai (message conversion, tools, stop...) and the answer still goes through
``_create_chat_result`` (usage, tool calls, ``response_metadata``), but the request itself is one
``httpx`` POST on a shared connection pool, and an error answer is classified straight from its
status, body and headers. Everything else (streams, structured output) uses the full SDK path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import httpx
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from gatewaykit._http import PerLoopAsyncTransport
from gatewaykit.chat_model import GatewayChatModel
from gatewaykit.errors import GatewayConnectionError, GatewayTimeout, UpstreamError, classify

__all__ = ["LeanTransport", "can_use_lean_path"]

_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=256, keepalive_expiry=30.0)


def can_use_lean_path(kwargs: Mapping[str, Any]) -> bool:
    """Plain chat calls only: structured output and the Responses API need the SDK."""
    return "response_format" not in kwargs and not kwargs.get("stream")


class LeanTransport:
    """Shared httpx clients (one sync, one async per event loop) for routed calls.

    Example::

        transport = LeanTransport()
        result = await transport.agenerate(model, messages)
    """

    def __init__(self, timeout: float = 600.0) -> None:
        self._timeout = timeout
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> httpx.Client:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = httpx.Client(limits=_LIMITS, timeout=self._timeout)
        return self._sync

    def _aclient(self) -> httpx.AsyncClient:
        if self._async is None:
            # A pooled connection belongs to the loop that opened it: one pool per loop.
            self._async = httpx.AsyncClient(
                transport=PerLoopAsyncTransport(limits=_LIMITS), timeout=self._timeout
            )
        return self._async

    @staticmethod
    def _request(
        model: GatewayChatModel, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> tuple[str, dict[str, str], bytes, Any]:
        payload = model._get_request_payload(messages, stop=stop, **kwargs)
        extra_body = payload.pop("extra_body", None)
        extra_headers = payload.pop("extra_headers", None)
        timeout = payload.pop("timeout", None)
        if extra_body:
            payload.update(extra_body)
        base = (model.openai_api_base or "https://api.openai.com/v1").rstrip("/")
        key = model.openai_api_key
        headers = {"content-type": "application/json"}
        if key is not None:
            secret = key.get_secret_value() if hasattr(key, "get_secret_value") else None
            if secret:
                headers["authorization"] = f"Bearer {secret}"
        if model.default_headers:
            headers.update(model.default_headers)
        if extra_headers:
            headers.update(extra_headers)
        if timeout is None:
            rt = model.request_timeout
            timeout = rt if isinstance(rt, int | float | httpx.Timeout) else None
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return f"{base}/chat/completions", headers, body, timeout

    @staticmethod
    def _result(model: GatewayChatModel, response: httpx.Response) -> ChatResult:
        headers = response.headers
        if response.status_code >= 400:
            try:
                err_body: object = response.json()
            except ValueError:
                err_body = response.text
            raise classify(
                response.status_code,
                err_body,
                headers,
                deployment=model.deployment_id,
                model_group=model.model_group,
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise UpstreamError(
                f"the gateway answered HTTP {response.status_code} with a body that is not JSON",
                status=response.status_code,
                deployment=model.deployment_id,
                model_group=model.model_group,
            ) from exc
        if isinstance(data, dict) and data.get("error"):
            raise classify(response.status_code, data, headers, deployment=model.deployment_id)
        return model._create_chat_result(data, {"headers": headers})

    def generate(
        self,
        model: GatewayChatModel,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        url, headers, body, timeout = self._request(model, messages, stop, **kwargs)
        try:
            response = self._client().post(
                url, content=body, headers=headers, timeout=timeout or self._timeout
            )
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(
                "the deployment did not answer in time",
                deployment=model.deployment_id,
                model_group=model.model_group,
            ) from exc
        except httpx.TransportError as exc:
            raise GatewayConnectionError(
                f"could not reach the deployment: {type(exc).__name__}",
                deployment=model.deployment_id,
                model_group=model.model_group,
            ) from exc
        return self._result(model, response)

    async def agenerate(
        self,
        model: GatewayChatModel,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        url, headers, body, timeout = self._request(model, messages, stop, **kwargs)
        try:
            response = await self._aclient().post(
                url, content=body, headers=headers, timeout=timeout or self._timeout
            )
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(
                "the deployment did not answer in time",
                deployment=model.deployment_id,
                model_group=model.model_group,
            ) from exc
        except httpx.TransportError as exc:
            raise GatewayConnectionError(
                f"could not reach the deployment: {type(exc).__name__}",
                deployment=model.deployment_id,
                model_group=model.model_group,
            ) from exc
        return self._result(model, response)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
