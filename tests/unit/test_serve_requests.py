"""What ``create_app`` does with each OpenAI request field: honoured, ignored or refused.

Real pieces only: ``create_app`` on uvicorn (``AppServer``), the OpenAI SDK and httpx as
clients, MockGateway as the router's upstream, a LangGraph agent (with and without a
checkpointer), and an A2A peer (``tests/standard/agent_peers.py``: a LangGraph agent served over
A2A by ``create_app``, a2a-sdk's server on uvicorn). A field that changes what kind of answer
comes back (tool calls, JSON, several choices, logprobs) is passed to a model that can honour it
or refused with 400; it is never dropped behind a 200.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import BaseModel, SecretStr

from gatewaykit import RouterChatModel
from gatewaykit.agents import A2AAgentChatModel, AgentChatModel, RemoteAgentChatModel
from gatewaykit.agents.serve import DEFAULT_MAX_BODY_BYTES, THREAD_ID_HEADER, create_app
from gatewaykit.testing import AppServer, Behavior, MockGateway
from tests.standard.agent_peers import AGENT_NAME, PEER_KEY, a2a_peer_url

# GatewayChatModel asks for the gateway's headers, which langchain-openai cannot read on a
# response_format call (it warns; the package silences that warning, pytest shows it again).
pytestmark = pytest.mark.filterwarnings("ignore:Cannot currently include response headers")

USER = [{"role": "user", "content": "A trip to Paris, please"}]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA}}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
# Served names that cannot return tool calls or JSON: a local LangGraph agent, an A2A agent, an
# agent on a LangGraph server (never reached: the request is refused first) and a router group
# whose only deployment is an ``a2a/`` agent.
AGENTS = ["agent", "a2a-agent", "remote-agent", "helpdesk"]


class Echo(BaseChatModel):
    """A custom chat model: no ``bind_tools``, no notion of ``response_format``."""

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = f"echo: {messages[-1].text}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        yield ChatGenerationChunk(message=AIMessageChunk(content=f"echo: {messages[-1].text}"))


def counting_graph(checkpointer: Any = None) -> Any:
    """A one-node agent answering how many messages its state holds (a thread's grow)."""

    def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content=f"seen {len(state['messages'])}")]}

    graph = StateGraph(MessagesState)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile(name="counter", checkpointer=checkpointer)


def router_config(upstream: str, peer: str) -> dict[str, Any]:
    def dep(group: str, model: str, base: str, key: str, **info: Any) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {"model": model, "api_base": base, "api_key": key},
            "model_info": info,
        }

    # "claims" is an agent deployment misdeclared as able to call tools and answer JSON: the
    # router then may pick it, and serve must still not drop what was asked for.
    claims = {"supports_function_calling": True, "supports_response_schema": True}
    return {
        "model_list": [
            dep("smart", "openai/smart-1", upstream, "k"),
            dep("helpdesk", f"a2a/{AGENT_NAME}", peer, PEER_KEY),
            dep("assistant", "openai/up-down", upstream, "k"),
            dep("claims", f"a2a/{AGENT_NAME}", peer, PEER_KEY, **claims),
            dep("assistant-2", "openai/up-down", upstream, "k"),
        ],
        "router_settings": {
            "num_retries": 0,
            "fallbacks": [{"assistant": ["helpdesk"]}, {"assistant-2": ["claims"]}],
        },
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockGateway]:
    with MockGateway() as gw:
        gw.script("up-down", [Behavior(status=500, error="server")])
        yield gw


def served_models(upstream: MockGateway) -> dict[str, BaseChatModel]:
    peer = a2a_peer_url()
    cfg = router_config(upstream.base_url, peer)
    return {
        "smart": RouterChatModel.from_config(cfg, model="smart"),
        "helpdesk": RouterChatModel.from_config(cfg, model="helpdesk"),
        "assistant": RouterChatModel.from_config(cfg, model="assistant"),
        "assistant-2": RouterChatModel.from_config(cfg, model="assistant-2"),
        "agent": AgentChatModel(graph=counting_graph()),
        "threaded": AgentChatModel(graph=counting_graph(InMemorySaver()), agent_name="threaded"),
        "a2a-agent": A2AAgentChatModel(url=peer, api_key=SecretStr(PEER_KEY)),
        "remote-agent": RemoteAgentChatModel(url="http://127.0.0.1:9", assistant_id="calc"),
        "echo": Echo(),
    }


@pytest.fixture(scope="module")
def server(upstream: MockGateway) -> Iterator[AppServer]:
    with AppServer(create_app(served_models(upstream), metrics=False)) as s:
        yield s


@pytest.fixture
def client(server: AppServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)


def post(server: AppServer, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def events(r: httpx.Response) -> list[str]:
    return [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]


def streamed_text(r: httpx.Response) -> str:
    chunks = [json.loads(e) for e in events(r) if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def assert_refused(r: httpx.Response, param: str, *needles: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    for needle in needles:
        assert needle in err["message"], err["message"]
    return err


# --- response_format --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_router_honours_json_schema(server: AppServer, upstream: MockGateway, stream: bool) -> None:
    r = post(
        server,
        {"model": "smart", "messages": USER, "response_format": JSON_SCHEMA, "stream": stream},
    )
    assert r.status_code == 200, r.text
    text = streamed_text(r) if stream else r.json()["choices"][0]["message"]["content"]
    answer = json.loads(text)
    assert set(answer) == {"city", "days"} and isinstance(answer["days"], int)
    sent = upstream.requests_for("smart-1")[-1].body
    assert sent is not None and sent["response_format"]["json_schema"]["schema"] == SCHEMA


def test_router_honours_json_object(server: AppServer, upstream: MockGateway) -> None:
    body = {"model": "smart", "messages": USER, "response_format": {"type": "json_object"}}
    r = post(server, body)
    assert r.status_code == 200, r.text
    assert isinstance(json.loads(r.json()["choices"][0]["message"]["content"]), dict)
    sent = upstream.requests_for("smart-1")[-1].body
    assert sent is not None and sent["response_format"] == {"type": "json_object"}


def test_sdk_parse_through_a_router(client: openai.OpenAI) -> None:
    class Trip(BaseModel):
        city: str
        days: int

    out = client.chat.completions.parse(model="smart", messages=USER, response_format=Trip)  # type: ignore[arg-type]
    parsed = out.choices[0].message.parsed
    assert isinstance(parsed, Trip) and isinstance(parsed.days, int)


@pytest.mark.parametrize("name", [*AGENTS, "echo"])
@pytest.mark.parametrize("kind", ["json_schema", "json_object"])
def test_response_format_refused_where_it_cannot_be_honoured(
    server: AppServer, name: str, kind: str
) -> None:
    fmt = JSON_SCHEMA if kind == "json_schema" else {"type": "json_object"}
    r = post(server, {"model": name, "messages": USER, "response_format": fmt})
    err = assert_refused(r, "response_format", repr(name))
    if name != "echo":
        assert "answers in text" in err["message"] and "leave out" in err["message"]


# --- tools ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", AGENTS)
def test_tools_refused_for_agents(server: AppServer, name: str, stream: bool) -> None:
    body = {
        "model": name,
        "messages": USER,
        "tools": TOOLS,
        "tool_choice": "required",
        "stream": stream,
    }
    assert_refused(post(server, body), "tools", repr(name), "runs its own tools")


def test_tools_refused_by_a_model_without_tool_support(server: AppServer) -> None:
    body = {"model": "echo", "messages": USER, "tools": TOOLS}
    assert_refused(post(server, body), "tools", "'echo'", "does not take tools")


def test_router_still_returns_tool_calls(server: AppServer) -> None:
    body = {"model": "smart", "messages": USER, "tools": TOOLS, "tool_choice": "required"}
    r = post(server, body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "lookup"


def test_the_router_never_falls_back_to_an_agent_for_tools(
    server: AppServer, upstream: MockGateway
) -> None:
    """An agent deployment declares no tool calling nor JSON answers: the router's admission
    skips it for requests that need them, and the group's own failure is the answer."""
    before = upstream.count("up-down")
    body = {"model": "assistant", "messages": USER, "tools": TOOLS, "tool_choice": "required"}
    r = post(server, body)
    assert upstream.count("up-down") == before + 1
    assert r.status_code >= 500 and "choices" not in r.json(), r.text
    # Without tools the same fallback is a plain answer from the agent.
    plain = post(server, {"model": "assistant", "messages": USER})
    assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"]


def test_fallback_to_an_agent_never_drops_tools(server: AppServer, upstream: MockGateway) -> None:
    """An agent misdeclared as able to call tools may be picked: serve still refuses to pass
    its prose off as the tool calls that were asked for."""
    before = upstream.count("up-down")
    body = {"model": "assistant-2", "messages": USER, "tools": TOOLS, "tool_choice": "required"}
    r = post(server, body)
    assert upstream.count("up-down") == before + 1  # the group failed, its fallback answered
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["param"] == "tools" and err["code"] == "fallback_cannot_honour"
    assert "agent deployment" in err["message"] and "claims" in err["message"]


def test_streamed_fallback_to_an_agent_ends_on_an_error(server: AppServer) -> None:
    body = {
        "model": "assistant-2",
        "messages": USER,
        "response_format": JSON_SCHEMA,
        "stream": True,
    }
    r = post(server, body)
    assert r.status_code == 200  # the agent's first token had already been sent
    sent = events(r)
    assert "[DONE]" not in sent
    last = json.loads(sent[-1])
    assert last["error"]["param"] == "response_format"
    assert last["error"]["code"] == "fallback_cannot_honour"


# --- other fields -----------------------------------------------------------------------------


REFUSED = [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"functions": [TOOLS[0]["function"]]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [], "tool_choice": {"type": "function", "function": {"name": "x"}}}, "tool_choice"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"response_format": "json"}, "response_format"),
]


@pytest.mark.parametrize("name", ["smart", "agent"])
@pytest.mark.parametrize(("extra", "param"), REFUSED, ids=[p for _, p in REFUSED])
def test_fields_that_change_the_answer_are_refused(
    server: AppServer, name: str, extra: dict[str, Any], param: str
) -> None:
    assert_refused(post(server, {"model": name, "messages": USER, **extra}), param)


HARMLESS = {
    "user": "u-1",
    "metadata": {"team": "search"},
    "store": False,
    "service_tier": "auto",
    "prompt_cache_key": "k",
    "safety_identifier": "s",
    "parallel_tool_calls": True,
    "logprobs": False,
    "response_format": {"type": "text"},
    "tool_choice": "auto",
    "stream_options": {"include_usage": True},
    "prediction": {"type": "content", "content": "a guess"},
}
SETTINGS = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "seed": 1}


@pytest.mark.parametrize("name", ["smart", "agent", "a2a-agent", "echo"])
def test_harmless_fields_are_ignored(server: AppServer, name: str) -> None:
    r = post(server, {"model": name, "messages": USER, **HARMLESS})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("name", ["smart", "echo"])
def test_model_settings_reach_models(server: AppServer, upstream: MockGateway, name: str) -> None:
    r = post(server, {"model": name, "messages": USER, **SETTINGS})
    assert r.status_code == 200, r.text
    if name == "smart":
        sent = upstream.requests_for("smart-1")[-1].body
        assert sent is not None
        sent.setdefault("max_tokens", sent.get("max_completion_tokens"))
        assert {k: sent[k] for k in SETTINGS} == SETTINGS


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", AGENTS)
def test_model_settings_refused_for_agents(server: AppServer, name: str, setting: str) -> None:
    body = {"model": name, "messages": USER, setting: SETTINGS[setting]}
    assert_refused(post(server, body), setting, "the model inside it")


# --- thread ids -------------------------------------------------------------------------------


def test_checkpointed_agent_without_thread_id_says_how_to_pass_one(server: AppServer) -> None:
    r = post(server, {"model": "threaded", "messages": USER})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "thread_id_required"
    assert THREAD_ID_HEADER in err["message"] and "metadata" in err["message"]


def test_thread_id_header_carries_the_conversation(
    server: AppServer, client: openai.OpenAI
) -> None:
    thread = {THREAD_ID_HEADER: str(uuid.uuid4())}
    first = client.chat.completions.create(model="threaded", messages=USER, extra_headers=thread)  # type: ignore[arg-type]
    assert first.choices[0].message.content == "seen 1"
    turn = [*USER, {"role": "assistant", "content": "seen 1"}, {"role": "user", "content": "again"}]
    second = client.chat.completions.create(model="threaded", messages=turn, extra_headers=thread)  # type: ignore[arg-type]
    assert second.choices[0].message.content == "seen 3"  # the thread held the first turn
    stream = client.chat.completions.create(
        model="threaded",
        messages=turn,
        extra_headers=thread,
        stream=True,  # type: ignore[arg-type]
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "seen 5"


def test_metadata_thread_id_is_a_thread_too(client: openai.OpenAI) -> None:
    thread = str(uuid.uuid4())
    out = client.chat.completions.create(
        model="threaded",
        messages=USER,
        metadata={"thread_id": thread},  # type: ignore[arg-type]
    )
    assert out.choices[0].message.content == "seen 1"
    turn = [*USER, {"role": "assistant", "content": "seen 1"}, {"role": "user", "content": "more"}]
    again = client.chat.completions.create(
        model="threaded",
        messages=turn,
        metadata={"thread_id": thread},  # type: ignore[arg-type]
    )
    assert again.choices[0].message.content == "seen 3"


@pytest.mark.parametrize(
    ("headers", "metadata", "needle"),
    [
        ({THREAD_ID_HEADER: "a"}, {"thread_id": "b"}, "two thread ids"),
        ({}, {"thread_id": 7}, "metadata.thread_id"),
        ({}, {"thread_id": ""}, "metadata.thread_id"),
        ({THREAD_ID_HEADER: "x" * 300}, None, "256"),
    ],
)
def test_bad_thread_ids_are_400(
    server: AppServer, headers: dict[str, str], metadata: Any, needle: str
) -> None:
    body: dict[str, Any] = {"model": "threaded", "messages": USER}
    if metadata is not None:
        body["metadata"] = metadata
    r = post(server, body, **headers)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


# --- the body limit ---------------------------------------------------------------------------

LIMIT = 2048


@pytest.fixture(scope="module")
def small(upstream: MockGateway) -> Iterator[AppServer]:
    models = {"agent": AgentChatModel(graph=counting_graph()), "echo": Echo()}
    with AppServer(create_app(models, metrics=False, max_body_bytes=LIMIT)) as s:
        yield s


def big_body(size: int) -> dict[str, Any]:
    return {"model": "agent", "messages": [{"role": "user", "content": "x" * size}]}


def assert_413(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "request_too_large"
    assert str(LIMIT) in err["message"] and "max_body_bytes" in err["message"]


def test_body_under_the_limit_is_served(small: AppServer) -> None:
    r = post(small, big_body(LIMIT // 2))
    assert r.status_code == 200, r.text


def test_body_over_the_limit_is_413(small: AppServer) -> None:
    assert_413(post(small, big_body(2 * LIMIT)))


def test_chunked_body_is_counted_while_read(small: AppServer) -> None:
    payload = json.dumps(big_body(4 * LIMIT)).encode()
    pieces = [payload[i : i + 512] for i in range(0, len(payload), 512)]
    r = httpx.post(
        f"{small.url}/v1/chat/completions",
        content=iter(pieces),  # no content-length: sent chunked
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert_413(r)


def test_a2a_route_has_the_limit_too(small: AppServer) -> None:
    r = httpx.post(f"{small.url}/a2a/agent", json={"pad": "x" * (2 * LIMIT)}, timeout=30)
    assert_413(r)


def _declared(port: int, length: int) -> bytes:
    """Send only the head of a request that declares ``length`` body bytes; the answer."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        return sock.recv(65536)


def test_declared_length_is_refused_before_the_body_is_sent(small: AppServer) -> None:
    answer = _declared(small.port, 200_000_000)  # 200 MB announced, not one byte sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request_too_large" in answer


def test_default_limit_is_8_mib() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 8 * 1024 * 1024
    with AppServer(create_app({"echo": Echo()}, metrics=False)) as s:
        assert _declared(s.port, DEFAULT_MAX_BODY_BYTES + 1).startswith(b"HTTP/1.1 413")


def test_max_body_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        create_app({"echo": Echo()}, metrics=False, max_body_bytes=0)


async def test_shutdown_closes_this_loops_agent_connections() -> None:
    """The agent models' connections live in a process-wide pool: a server that stops closes
    its event loop's share of it."""
    import asyncio

    from gatewaykit._http import shared_async_transport

    inner = shared_async_transport()._inner  # type: ignore[attr-defined]
    inner._transport()  # this loop's pool, as an agent call would open it
    loop = asyncio.get_running_loop()
    assert loop in inner._by_loop
    app = create_app({"echo": Echo()}, metrics=False)
    async with app.router.lifespan_context(app):
        pass
    assert loop not in inner._by_loop
