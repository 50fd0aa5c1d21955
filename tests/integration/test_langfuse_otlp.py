"""Langfuse's real OTLP/HTTP export, received by a local collector this test runs.

The Langfuse SDK (5.x) exports spans as protobuf ``ExportTraceServiceRequest`` to
``{base_url}/api/public/otel/v1/traces``; the receiver below decodes them with
``opentelemetry-proto`` so the assertions read exactly what a Langfuse server would store.
MockGateway stands for the LLM providers.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate
from langfuse import get_client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from gatewaykit import RouterChatModel, UpstreamError
from gatewaykit.observability import GatewayLangfuseHandler, langfuse_callbacks
from gatewaykit.testing import Behavior, MockGateway

OTLP_PATH = "/api/public/otel/v1/traces"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Collector:
    """A minimal OTLP/HTTP trace receiver: keeps every span it is sent, with its attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self.auth: list[str] = []
        spans, lock, outer = self.spans, threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != OTLP_PATH:
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    outer.requests += 1
                    outer.auth.append(self.headers.get("Authorization", ""))
                    for rs in request.resource_spans:
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                attrs = {a.key: _value(a.value) for a in s.attributes}
                                spans.append(
                                    {
                                        "name": s.name,
                                        "trace_id": s.trace_id.hex(),
                                        "attrs": attrs,
                                    }
                                )
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def generations(self) -> list[dict[str, Any]]:
        return [
            s for s in self.spans if s["attrs"].get("langfuse.observation.type") == "generation"
        ]


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as gateway:
        yield gateway


def config(base_url: str) -> dict[str, Any]:
    def dep(group: str, name: str) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {"model": f"openai/{name}", "api_base": base_url, "api_key": "sk-p"},
            "model_info": {"id": name},
        }

    return {
        "model_list": [dep("smart", "primary-a"), dep("cheap", "cheap-a")],
        "router_settings": {"num_retries": 0, "fallbacks": [{"smart": ["cheap"]}]},
    }


def traced(collector: Collector, **options: Any) -> tuple[str, list[Any]]:
    """A fresh Langfuse project key (the SDK keeps one client per key) and its callbacks."""
    public_key = f"pk-lf-{uuid.uuid4().hex[:12]}"
    callbacks = langfuse_callbacks(
        public_key=public_key,
        secret_key="sk-lf-test-secret",
        base_url=collector.url,
        **options,
    )
    return public_key, callbacks


def md(attrs: dict[str, Any], key: str) -> Any:
    return json.loads(attrs[f"langfuse.observation.metadata.{key}"])


def test_direct_router_call_exports_routing_cost_usage_user_session_tags(
    collector: Collector, gw: MockGateway
) -> None:
    gw.reset()
    gw.script("primary-a", Behavior(status=500))
    gw.script("cheap-a", Behavior(cost=0.25, usage=USAGE))
    public_key, callbacks = traced(collector)
    assert [type(c) for c in callbacks] == [GatewayLangfuseHandler]
    router = RouterChatModel.from_config(
        config(gw.base_url), model="smart", seed=3, gateway_tags=["team:search"]
    )
    before = len(collector.spans)

    msg = router.invoke(
        "What broke?",
        config={
            "callbacks": callbacks,
            "tags": ["incident"],
            "metadata": {"langfuse_user_id": "user-42", "langfuse_session_id": "sess-7"},
        },
    )
    get_client(public_key=public_key).flush()

    assert msg.response_metadata["routing"]["deployment"] == "cheap-a"
    new = collector.spans[before:]
    gens = [s for s in new if s["attrs"].get("langfuse.observation.type") == "generation"]
    assert len(gens) == 1, "one generation per routed call: usage is reported once"
    a = gens[0]["attrs"]
    assert gens[0]["name"] == "RouterChatModel"
    assert a["langfuse.observation.model.name"] == "cheap-a"
    assert json.loads(a["langfuse.observation.usage_details"]) == {
        "input": 11,
        "output": 7,
        "total": 18,
    }
    assert json.loads(a["langfuse.observation.cost_details"]) == {"total": 0.25}
    routing = md(a, "routing")
    assert [(x["deployment"], x["ok"], x.get("status")) for x in routing["attempts"]] == [
        ("primary-a", False, 500),
        ("cheap-a", True, None),
    ]
    assert md(a, "fallbacks") == ["cheap"]
    assert md(a, "deployment") == "cheap-a"
    assert md(a, "requested_model") == "smart"
    assert md(a, "gateway")["response_cost"] == 0.25
    # a chat model invoked directly still gets trace attributes
    assert a["user.id"] == "user-42"
    assert a["session.id"] == "sess-7"
    assert "incident" in a["langfuse.trace.tags"]
    assert "team:search" in a["langfuse.trace.tags"]  # the model's own gateway tags too
    # each attempt is a step of the router graph, shown as a compact routing view
    steps = [s for s in new if s["name"] == "attempt"]
    assert len(steps) == 2
    last = json.loads(steps[-1]["attrs"]["langfuse.observation.output"])
    assert last["deployment"] == "cheap-a" and last["fallbacks"] == ["cheap"]
    graph = next(s for s in new if s["name"] == "gatewaykit-router")
    assert "What broke?" not in graph["attrs"]["langfuse.observation.input"]
    # every span of the call is in the same trace, and secrets never left the process
    assert len({s["trace_id"] for s in new}) == 1
    assert "sk-p" not in json.dumps([s["attrs"] for s in new])
    assert collector.auth[-1].startswith("Basic ")


def test_inside_a_chain_the_root_chain_owns_the_trace(
    collector: Collector, gw: MockGateway
) -> None:
    gw.reset()
    gw.script("primary-a", Behavior(cost=0.5, usage=USAGE))
    public_key, callbacks = traced(collector)
    router = RouterChatModel.from_config(config(gw.base_url), model="smart")
    chain = ChatPromptTemplate.from_messages([("user", "Say {x}")]) | router
    before = len(collector.spans)
    chain.invoke(
        {"x": "hi"},
        config={
            "callbacks": callbacks,
            "metadata": {"langfuse_user_id": "chain-user", "langfuse_tags": ["batch"]},
        },
    )
    get_client(public_key=public_key).flush()
    new = collector.spans[before:]
    gen = next(s for s in new if s["attrs"].get("langfuse.observation.type") == "generation")
    a = gen["attrs"]
    assert json.loads(a["langfuse.observation.cost_details"]) == {"total": 0.5}
    assert md(a, "routing")["fallbacks"] == []
    assert a["user.id"] == "chain-user"
    assert a["langfuse.trace.tags"] == ["batch"]
    assert {s["name"] for s in new} >= {"RunnableSequence", "RouterChatModel"}


async def test_failed_async_call_is_an_error_generation_with_its_routing(
    collector: Collector, gw: MockGateway
) -> None:
    gw.reset()
    gw.script("primary-a", Behavior(status=500))
    gw.script("cheap-a", Behavior(status=503))
    public_key, callbacks = traced(collector)
    router = RouterChatModel.from_config(config(gw.base_url), model="smart")
    before = len(collector.spans)
    with pytest.raises(UpstreamError):
        await router.ainvoke("Anyone?", config={"callbacks": callbacks})
    get_client(public_key=public_key).flush()
    gens = [
        s
        for s in collector.spans[before:]
        if s["attrs"].get("langfuse.observation.type") == "generation"
    ]
    assert len(gens) == 1
    a = gens[0]["attrs"]
    assert a["langfuse.observation.level"] == "ERROR"
    assert md(a, "status") == "upstream"
    assert md(a, "status_code") == "503"
    assert [x["deployment"] for x in md(a, "routing")["attempts"]] == ["primary-a", "cheap-a"]
    assert json.loads(a["langfuse.observation.cost_details"]) == {"total": 0}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_langfuse_down_never_fails_or_blocks_a_call(gw: MockGateway) -> None:
    gw.reset()
    gw.script("primary-a", Behavior(usage=USAGE))
    public_key = f"pk-lf-{uuid.uuid4().hex[:12]}"
    callbacks = langfuse_callbacks(
        public_key=public_key,
        secret_key="sk-lf-test-secret",
        base_url=f"http://127.0.0.1:{_closed_port()}",
        timeout=2,  # the exporter's own timeout: calls must never wait for it
        flush_interval=0.05,  # exports run (and fail) while the calls below are made
    )
    router = RouterChatModel.from_config(config(gw.base_url), model="smart")
    started = time.monotonic()
    answers = [router.invoke(f"q{i}", config={"callbacks": callbacks}) for i in range(20)]
    elapsed = time.monotonic() - started
    assert all(m.response_metadata["routing"]["deployment"] == "primary-a" for m in answers)
    assert elapsed < 2.0, f"20 calls took {elapsed:.2f}s: the exporter blocked a call"


def test_without_keys_langfuse_is_a_no_op_that_opens_no_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Langfuse tried to connect without keys")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert langfuse_callbacks() == []
    assert langfuse_callbacks(public_key="pk-lf-only") == []
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-x")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-x")
    monkeypatch.setenv("LANGFUSE_TRACING_ENABLED", "false")
    assert langfuse_callbacks() == []
