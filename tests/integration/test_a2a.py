"""A2A both ways, with real parts only.

- A2AAgentChatModel against an a2a-sdk server (a real ``AgentExecutor`` on uvicorn);
- A2AAgentChatModel against the LangGraph server's own A2A endpoint (``langgraph dev``);
- the a2a-sdk client against ``gatewaykit serve``'s A2A face;
- a router group falling back to an ``a2a/`` deployment.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from pydantic import SecretStr
from starlette.applications import Starlette

from gatewaykit import ConfigError, RouterChatModel
from gatewaykit.agents import A2AAgentChatModel, A2ATaskError, AgentError
from gatewaykit.agents.serve import create_app
from gatewaykit.errors import AuthenticationFailed, GatewayConnectionError, GatewayTimeout
from gatewaykit.testing import AppServer, Behavior, MockGateway

from .conftest import _free_port
from .test_agent_remote import ANSWER, FINAL, MODEL, TOOL_TURN, agent_server  # noqa: F401
from .test_agent_remote import Server as LangGraphServer
from .test_serve import EchoAgent

PEER_KEY = "sk-a2a-peer-key-0042"
SERVE_KEY = "sk-a2a-serve-key-0007"


# --- an a2a-sdk peer --------------------------------------------------------------------------


class PeerExecutor(AgentExecutor):
    """A small agent; the first word of the message picks the behaviour.

    ``fail`` / ``reject`` / ``ask`` end the task failed / rejected / input-required; ``progress``
    streams its answer as working-status messages (as a LangGraph server does) and then sends the
    whole answer as an artifact; ``reply`` answers with a bare message; ``slow`` sleeps; ``turns``
    counts the messages seen in its context. Anything else: ``echo: <text>`` streamed word by
    word as artifact chunks, the last event carrying the whole text and its usage.
    """

    def __init__(self) -> None:
        self.turns: dict[str, int] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        text = context.get_user_input()
        word = text.split()[0] if text.split() else ""
        if word == "reply":
            msg = Message(
                role=Role.ROLE_AGENT,
                message_id="r1",
                parts=[Part(text="a bare reply")],
                context_id=context.context_id,
            )
            await event_queue.enqueue_event(msg)
            return
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        up = TaskUpdater(event_queue, task.id, task.context_id)
        await up.start_work()
        if word == "fail":
            await up.failed(up.new_agent_message([Part(text="the tool crashed")]))
            return
        if word == "reject":
            await up.reject(up.new_agent_message([Part(text="not my job")]))
            return
        if word == "ask":
            await up.requires_input(up.new_agent_message([Part(text="which city?")]))
            return
        if word == "slow":
            await asyncio.sleep(3)
        if word == "turns":
            self.turns[task.context_id] = self.turns.get(task.context_id, 0) + 1
            text = f"turn {self.turns[task.context_id]}: {text}"
        words = f"echo: {text}".split(" ")
        if word == "progress":
            for i, w in enumerate(words):
                piece = w if i == 0 else " " + w
                await up.update_status(
                    TaskState.TASK_STATE_WORKING, up.new_agent_message([Part(text=piece)])
                )
        else:
            for i, w in enumerate(words):
                piece = w if i == 0 else " " + w
                await up.add_artifact([Part(text=piece)], artifact_id="answer", append=i > 0)
        await up.add_artifact(
            [Part(text=" ".join(words))],
            artifact_id="answer",
            append=False,
            last_chunk=True,
            metadata={"usage": {"input_tokens": len(text.split()), "output_tokens": len(words)}},
        )
        await up.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


class Uvicorn(AppServer):
    """An app on a free port; ``root`` is its base URL."""

    @property
    def root(self) -> str:
        return self.url


def peer_app(port: int, *, key: str | None = None) -> Starlette:
    url = f"http://127.0.0.1:{port}/rpc"
    card = AgentCard(
        name="echo-peer",
        description="Echoes, streams, fails on request",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="echo", tags=["echo"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=PeerExecutor(), task_store=InMemoryTaskStore(), agent_card=card
    )
    (rpc,) = create_jsonrpc_routes(handler, rpc_url="/rpc", enable_v0_3_compat=True)
    legacy = AgentCard()
    legacy.CopyFrom(card)
    legacy.supported_interfaces[0].protocol_version = "0.3"

    async def guarded(request: Any) -> Any:
        from starlette.responses import JSONResponse

        if key and request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return await rpc.endpoint(request)

    from starlette.routing import Route

    routes = [
        Route("/rpc", guarded, methods=["POST"]),
        *create_agent_card_routes(card),
        *create_agent_card_routes(legacy, card_url="/v03/.well-known/agent-card.json"),
    ]
    return Starlette(routes=routes)


@pytest.fixture(scope="module")
def peer() -> Iterator[Uvicorn]:
    port = _free_port()
    with Uvicorn(peer_app(port, key=PEER_KEY), port=port) as s:
        yield s


def model_for(peer: Uvicorn, **kw: Any) -> A2AAgentChatModel:
    kw.setdefault("url", peer.root)
    return A2AAgentChatModel(api_key=SecretStr(PEER_KEY), **kw)


# --- (a) A2AAgentChatModel against an a2a-sdk peer --------------------------------------------


def test_invoke_discovers_the_card_and_answers(peer: Uvicorn) -> None:
    model = model_for(peer)
    assert model.agent_card is None
    msg = model.invoke("hello big world")
    assert isinstance(msg, AIMessage)
    assert msg.content == "echo: hello big world"
    assert msg.usage_metadata == {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    info = msg.response_metadata["agent"]
    assert info["name"] == "echo-peer"  # from the card
    assert info["state"] == "completed"
    assert info["task_id"] and info["context_id"]
    assert model.agent_card is not None and model.agent_card.name == "echo-peer"
    assert PEER_KEY not in repr(model) and PEER_KEY not in str(model.model_dump())


async def test_ainvoke_and_card_url_forms(peer: Uvicorn) -> None:
    by_card = model_for(peer, url=f"{peer.root}/.well-known/agent-card.json")
    assert (await by_card.ainvoke("via card url")).content == "echo: via card url"
    explicit = model_for(
        peer, url="http://ignored.invalid", card_url=f"{peer.root}/.well-known/agent-card.json"
    )
    assert (await explicit.ainvoke("explicit")).content == "echo: explicit"


def test_a2a_0_3_agent_gets_the_0_3_methods(peer: Uvicorn) -> None:
    model = model_for(peer, url=f"{peer.root}/v03")
    assert model.invoke("old protocol").content == "echo: old protocol"
    texts = [c.content for c in model.stream("old stream") if c.content]
    assert texts == ["echo:", " old", " stream"]
    assert model.agent_card.supported_interfaces[0].protocol_version == "0.3"


@pytest.mark.parametrize("word", ["stream", "progress"])
def test_stream_yields_each_token_once_in_order(peer: Uvicorn, word: str) -> None:
    tokens: list[str] = []

    class Tokens(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            if token:
                tokens.append(token)

    chunks = list(model_for(peer).stream(f"{word} one two three", {"callbacks": [Tokens()]}))
    texts = [c.content for c in chunks if c.content]
    assert texts == ["echo:", f" {word}", " one", " two", " three"]
    assert tokens == texts  # callbacks see each token once too
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert isinstance(total, AIMessageChunk)
    assert total.content == f"echo: {word} one two three"
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] == 5
    assert total.response_metadata["agent"]["state"] == "completed"


async def test_astream_and_bare_message_reply(peer: Uvicorn) -> None:
    texts = [c.content async for c in model_for(peer).astream("stream a b")]
    assert "".join(str(t) for t in texts) == "echo: stream a b"
    assert texts.count(" a") == 1
    reply = await model_for(peer).ainvoke("reply please")
    assert reply.content == "a bare reply"
    streamed = [c.content for c in model_for(peer).stream("reply please")]
    assert "".join(str(t) for t in streamed) == "a bare reply"


@pytest.mark.parametrize(
    ("text", "state", "detail"),
    [
        ("fail now", "failed", "the tool crashed"),
        ("reject this", "rejected", "not my job"),
        ("ask me", "input-required", "which city?"),
    ],
)
def test_unfinished_task_raises_typed_error(
    peer: Uvicorn, text: str, state: str, detail: str
) -> None:
    model = model_for(peer)
    with pytest.raises(A2ATaskError) as info:
        model.invoke(text)
    err = info.value
    assert err.state == state and err.detail == detail and detail in str(err)
    assert err.task_id and err.agent == "echo-peer"
    # The task reached the agent, which may have run its tools: never retried.
    assert err.is_retryable is False and err.kind == "agent"
    with pytest.raises(A2ATaskError) as streamed:
        for _ in model.stream(text):
            pass
    assert streamed.value.state == state


def test_thread_id_is_the_context(peer: Uvicorn) -> None:
    model = model_for(peer)
    config: Any = {"configurable": {"thread_id": "ctx-a2a-1"}}
    first = model.invoke("turns one", config=config)
    assert first.content == "echo: turn 1: turns one"
    assert first.response_metadata["agent"]["context_id"] == "ctx-a2a-1"
    # The whole conversation goes in; only the message after the last AI message is sent.
    second = model.invoke(
        [HumanMessage("turns one"), first, HumanMessage("turns two")], config=config
    )
    assert second.content == "echo: turn 2: turns two"
    other = model.invoke("turns x")  # no thread: a fresh context
    assert other.content == "echo: turn 1: turns x"


def test_unreachable_url_is_a_connection_error() -> None:
    model = A2AAgentChatModel(url=f"http://127.0.0.1:{_free_port()}", timeout=5)
    with pytest.raises(GatewayConnectionError) as info:
        model.invoke("hi")
    assert "unreachable" in str(info.value)


def test_bad_card_url_says_what_to_fix(peer: Uvicorn) -> None:
    model = model_for(peer, url=f"{peer.root}/nope")
    with pytest.raises(AgentError) as info:
        model.invoke("hi")
    assert info.value.status == 404
    assert "/nope/.well-known/agent-card.json" in str(info.value)
    assert "`url`" in str(info.value)


def test_wrong_key_is_authentication_failed_without_the_key(
    peer: Uvicorn, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-a2a-key-123456"
    caplog.set_level(logging.DEBUG)
    model = A2AAgentChatModel(url=peer.root, api_key=SecretStr(wrong))
    with pytest.raises(AuthenticationFailed) as info:
        model.invoke("hi")
    assert info.value.status == 401
    assert wrong not in str(info.value) and wrong not in repr(model)
    assert wrong not in caplog.text


def test_timeout_is_typed(peer: Uvicorn) -> None:
    model = model_for(peer, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout):
        model.invoke("slow answer")
    assert time.monotonic() - started < 2.5


def test_usage_estimate_is_marked(peer: Uvicorn) -> None:
    msg = model_for(peer, estimate_usage=True).invoke("reply please")  # a bare reply: no usage
    assert msg.usage_metadata == {"input_tokens": 3, "output_tokens": 3, "total_tokens": 6}
    assert msg.response_metadata["agent"]["usage_estimated"] is True
    assert model_for(peer).invoke("reply please").usage_metadata is None


def test_composes_with_batch_and_pipes(peer: Uvicorn) -> None:
    from langchain_core.output_parsers import StrOutputParser

    chain = model_for(peer) | StrOutputParser()
    assert chain.batch(["x1", "x2"]) == ["echo: x1", "echo: x2"]


# --- (b) against the LangGraph server's own A2A endpoint --------------------------------------


@pytest.mark.langgraph_server
def test_langgraph_server_a2a_endpoint(agent_server: LangGraphServer) -> None:  # noqa: F811
    agent_server.upstream.reset()
    agent_server.upstream.script(MODEL, [TOOL_TURN, ANSWER, TOOL_TURN, ANSWER])
    found = httpx.post(
        f"{agent_server.url}/assistants/search", json={"graph_id": "calc"}, timeout=10
    ).json()
    uuid_ = found[0]["assistant_id"]
    model = A2AAgentChatModel(
        url=f"{agent_server.url}/.well-known/agent-card.json?assistant_id={uuid_}"
    )
    msg = model.invoke("What is 6*7?")
    assert msg.content == FINAL
    assert msg.response_metadata["agent"]["state"] == "completed"
    texts = [str(c.content) for c in model.stream("What is 6*7?") if c.content]
    assert len(texts) > 1  # streamed, not one block
    assert "".join(texts) == FINAL  # each token once, the tool turn's results left out
    assert agent_server.upstream.count(MODEL) == 4  # both runs ran the tool turn on the server
    # A thread: the contextId is a LangGraph thread, kept between calls.
    agent_server.upstream.script(MODEL, [TOOL_TURN, ANSWER, ANSWER])
    thread = str(uuid.uuid4())
    first = model.invoke("What is 6*7?", thread_id=thread)
    assert first.response_metadata["agent"]["context_id"] == thread
    again = model.invoke(
        [HumanMessage("What is 6*7?"), first, HumanMessage("Again?")], thread_id=thread
    )
    assert again.content == FINAL
    state = httpx.get(f"{agent_server.url}/threads/{thread}/state", timeout=10).json()
    assert [m["type"] for m in state["values"]["messages"]] == [
        "human",
        "ai",
        "tool",
        "ai",
        "human",
        "ai",
    ]


# --- (c) the a2a-sdk client against gatewaykit serve's A2A face ------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[Uvicorn]:
    app = create_app(
        {"agent": EchoAgent(), "broken": EchoAgent(fail_after=1)}, api_keys=[SERVE_KEY]
    )
    with Uvicorn(app) as s:
        yield s


async def test_a2a_sdk_client_against_serve(served: Uvicorn) -> None:
    url = f"{served.root}/a2a/agent"
    card = httpx.get(f"{url}/.well-known/agent-card.json").json()
    assert card["url"] == url and card["capabilities"]["streaming"] is True
    assert card["skills"][0]["id"] == "chat"
    headers = {"authorization": f"Bearer {SERVE_KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        for streaming in (False, True):
            client = await create_client(url, ClientConfig(streaming=streaming, httpx_client=http))
            request = SendMessageRequest(
                message=Message(
                    role=Role.ROLE_USER, message_id=f"m{streaming}", parts=[Part(text="ping pong")]
                )
            )
            events = [e async for e in client.send_message(request)]
            kinds = [e.WhichOneof("payload") for e in events]
            if streaming:
                assert kinds[0] == "task" and kinds[-1] == "status_update"
                pieces = [
                    e.artifact_update.artifact.parts[0].text
                    for e in events
                    if e.HasField("artifact_update") and e.artifact_update.append
                ]
                assert pieces == [" ping", " pong"]  # after the first chunk "echo:"
                task_id = events[0].task.id
            else:
                assert kinds == ["task"]
                assert events[0].task.status.state == TaskState.TASK_STATE_COMPLETED
                assert events[0].task.artifacts[0].parts[0].text == "echo: ping pong"
            await client.close()
        client = await create_client(url, ClientConfig(httpx_client=http))
        task = await client.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert [p.text for p in task.artifacts[0].parts] == ["echo: ping pong"]
        await client.close()
    async with httpx.AsyncClient(headers={"authorization": "Bearer sk-wrong"}) as http:
        client = await create_client(url, ClientConfig(streaming=False, httpx_client=http))
        with pytest.raises(Exception, match="401"):
            async for _ in client.send_message(request):
                pass


def test_a2a_model_round_trip_through_serve(served: Uvicorn) -> None:
    model = A2AAgentChatModel(url=f"{served.root}/a2a/agent", api_key=SecretStr(SERVE_KEY))
    msg = model.invoke("hello")
    assert msg.content == "echo: hello"
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] == 2
    texts = [c.content for c in model.stream("a b c") if c.content]
    assert texts == ["echo:", " a", " b", " c"]
    # A context new to this model receives the whole history, as a transcript.
    history = [HumanMessage("hello"), msg, HumanMessage("again")]
    first = model.invoke(history, thread_id="c-1")
    assert first.content == "echo: user: hello\n\nassistant: echo: hello\n\nuser: again"
    # Once it holds the conversation, only what is new is sent: the context is the memory.
    follow = model.invoke([*history, first, HumanMessage("once more")], thread_id="c-1")
    assert follow.content == "echo: once more"
    broken = A2AAgentChatModel(url=f"{served.root}/a2a/broken", api_key=SecretStr(SERVE_KEY))
    with pytest.raises(A2ATaskError) as info:
        broken.invoke("x y z")
    assert info.value.state == "failed" and "RuntimeError" in info.value.detail
    assert "sk-internal" not in str(info.value)
    with pytest.raises(AuthenticationFailed):
        A2AAgentChatModel(url=f"{served.root}/a2a/agent", api_key=SecretStr("sk-no")).invoke("x")


# --- (d) a router group falling back to an a2a/ deployment -----------------------------------


def test_router_falls_back_to_a2a_deployment(peer: Uvicorn) -> None:
    upstream = MockGateway()
    upstream.start()
    try:
        upstream.script("up-down", [Behavior(status=500, error="server")])
        config = {
            "model_list": [
                {
                    "model_name": "assistant",
                    "litellm_params": {
                        "model": "openai/up-down",
                        "api_base": upstream.base_url,
                        "api_key": "k",
                    },
                },
                {
                    "model_name": "peer-agent",
                    "litellm_params": {
                        "model": "a2a/echo-peer",
                        "api_base": peer.root,
                        "api_key": PEER_KEY,
                    },
                },
            ],
            "router_settings": {"num_retries": 0, "fallbacks": [{"assistant": ["peer-agent"]}]},
        }
        router = RouterChatModel.from_config(config, model="assistant")
        msg = router.invoke("routed here")
        assert msg.content == "echo: routed here"
        routing = msg.response_metadata["routing"]
        assert upstream.count("up-down") == 1
        assert routing["group"] == "peer-agent" and routing["fallbacks"] == ["peer-agent"]
        assert [a["ok"] for a in routing["attempts"]] == [False, True]
        assert routing["attempts"][0]["status"] == 500
        assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] == 3
        streamed = "".join(str(c.content) for c in router.stream("streamed here"))
        assert streamed == "echo: streamed here"
    finally:
        upstream.stop()


def test_a2a_agent_prefix_needs_api_base() -> None:
    config = {
        "model_list": [{"model_name": "peer", "litellm_params": {"model": "a2a_agent/peer"}}],
    }
    router = RouterChatModel.from_config(config, model="peer")
    with pytest.raises(ConfigError) as info:
        router.invoke("hi")
    assert "model_list[0].litellm_params.api_base" in str(info.value)
    assert "A2A agent's URL" in str(info.value)


# --- images and files cross A2A ----------------------------------------------------------------


class Looker(BaseChatModel):
    """Describes the non-text content it was given, so the test sees what crossed the wire."""

    @property
    def _llm_type(self) -> str:
        return "looker"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        from langchain_core.outputs import ChatGeneration, ChatResult

        seen = []
        last = messages[-1].content
        for block in last if isinstance(last, list) else []:
            if block.get("type") == "text":
                seen.append(f"text={block['text']!r}")
            elif "base64" in block:
                data = base64.b64decode(block["base64"])
                seen.append(f"{block['type']}:{block.get('mime_type')}:{len(data)} bytes")
            else:
                seen.append(f"{block['type']}:{block.get('url')}")
        answer = "; ".join(seen) or f"text only: {last}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])


def test_images_and_files_cross_a2a_both_ways() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    with Uvicorn(create_app({"looker": Looker()}, metrics=False)) as s:
        model = A2AAgentChatModel(url=f"{s.root}/a2a/looker")
        msg = model.invoke(
            [
                HumanMessage(
                    content=[
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                        {"type": "image", "url": "https://example.com/cat.jpg"},
                        {"type": "file", "base64": png, "mime_type": "application/pdf"},
                    ]
                )
            ]
        )
        assert msg.content == (
            "text='what is this?'; image:image/png:9 bytes; image:https://example.com/cat.jpg; "
            "file:application/pdf:9 bytes"
        )
        assert model.invoke("plain").content == "text only: plain"
        with pytest.raises(ValueError, match=r"content block 1 of type 'file'.*file_id"):
            model.invoke(
                [
                    HumanMessage(
                        content=[{"type": "text", "text": "x"}, {"type": "file", "file_id": "f-1"}]
                    )
                ]
            )
        with pytest.raises(ValueError, match="content block 0: invalid base64"):
            model.invoke(
                [
                    HumanMessage(
                        content=[{"type": "image", "base64": "%%%", "mime_type": "image/png"}]
                    )
                ]
            )
