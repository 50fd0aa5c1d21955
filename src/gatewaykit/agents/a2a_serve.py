"""The A2A face of :func:`gatewaykit.agents.serve.create_app`, built on a2a-sdk's server parts.

Each served chat model gets a ``DefaultRequestHandler`` over an in-memory task store and a
:class:`ChatModelAgentExecutor`, mounted as JSON-RPC at ``/a2a/{name}``: ``message/send``,
``message/stream`` (SSE), ``tasks/get``, ``tasks/cancel`` (A2A 0.3 method names) and their A2A 1.0
twins (``SendMessage``, ``SendStreamingMessage``, ``GetTask``...), which is what a2a-sdk clients
send.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gatewaykit.agents._common import ThreadedAgentModel, text_of
from gatewaykit.agents.a2a_parts import parts_to_blocks

__all__ = ["ChatModelAgentExecutor", "a2a_routes", "agent_card"]

ARTIFACT_NAME = "answer"
MAX_CONTEXTS = 1024
"""Conversations an executor remembers for models that keep no threads of their own."""

try:  # a2a-sdk is a dependency; the guard only keeps the import error readable.
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
except ImportError as exc:  # pragma: no cover
    raise ImportError("the A2A routes need a2a-sdk (pip install 'a2a-sdk[http-server]')") from exc


class ChatModelAgentExecutor(AgentExecutor):
    """Runs a chat model for each A2A message and streams its answer as one artifact.

    Tokens go out as ``append`` chunks of the ``answer`` artifact; the last event replaces the
    artifact with the whole text (so ``tasks/get`` and ``message/send`` return it as one part)
    and carries the model's usage as ``metadata.usage``. A model error ends the task ``failed``
    with the error's (redacted) text as the status message.

    The A2A ``contextId`` is the conversation: agent models that keep threads get it as their
    ``thread_id``; for any other model the executor remembers the context's messages itself
    (the last :data:`MAX_CONTEXTS` contexts).

    Example::

        from a2a.server.request_handlers import DefaultRequestHandler
        from a2a.server.tasks import InMemoryTaskStore

        handler = DefaultRequestHandler(
            agent_executor=ChatModelAgentExecutor(model, "support"),
            task_store=InMemoryTaskStore(),
            agent_card=agent_card("support", "http://host/a2a/support"),
        )
    """

    def __init__(
        self,
        model: BaseChatModel,
        name: str,
        describe_error: Callable[[BaseException], str] | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.describe_error = describe_error or (lambda exc: type(exc).__name__)
        self._threads = isinstance(model, ThreadedAgentModel)
        self._history: OrderedDict[str, list[BaseMessage]] = OrderedDict()
        self._lock = asyncio.Lock()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        from a2a.helpers.proto_helpers import new_task_from_user_message
        from a2a.server.tasks import TaskUpdater
        from a2a.types import Part

        message = context.message
        if message is None:  # pragma: no cover - the handler always sets it
            return
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        text = context.get_user_input()
        files = parts_to_blocks(message.parts)
        if not text.strip() and not files:
            await updater.reject(
                updater.new_agent_message([Part(text="the message has no text or file to answer")])
            )
            return
        await updater.start_work()
        context_id = task.context_id
        content: Any = [{"type": "text", "text": text}, *files] if files else text
        messages, config = await self._input(context_id, HumanMessage(content=content))
        total: AIMessageChunk | None = None
        first = True
        try:
            async for chunk in self.model.astream(messages, config=config):
                if not isinstance(chunk, AIMessageChunk):
                    chunk = AIMessageChunk(content=text_of(getattr(chunk, "content", "")))
                total = chunk if total is None else total + chunk
                piece = text_of(chunk.content)
                if piece:
                    await updater.add_artifact(
                        [Part(text=piece)],
                        artifact_id=f"{task.id}-answer",
                        name=ARTIFACT_NAME,
                        append=not first,
                    )
                    first = False
        except Exception as exc:
            await updater.failed(updater.new_agent_message([Part(text=self.describe_error(exc))]))
            return
        answer = text_of(total.content) if total is not None else ""
        usage = _usage_dict(total)
        await updater.add_artifact(
            [Part(text=answer)],
            artifact_id=f"{task.id}-answer",
            name=ARTIFACT_NAME,
            append=False,
            last_chunk=True,
            metadata={"usage": usage} if usage else None,
        )
        await self._remember(context_id, messages, AIMessage(content=answer))
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        from a2a.server.tasks import TaskUpdater

        if context.task_id and context.context_id:
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    async def _input(
        self, context_id: str, message: HumanMessage
    ) -> tuple[list[BaseMessage], RunnableConfig]:
        if self._threads:
            return [message], {"configurable": {"thread_id": context_id}}
        async with self._lock:
            past = list(self._history.get(context_id, []))
        return [*past, message], {}

    async def _remember(
        self, context_id: str, messages: list[BaseMessage], answer: AIMessage
    ) -> None:
        if self._threads:
            return
        async with self._lock:
            self._history[context_id] = [*messages, answer]
            self._history.move_to_end(context_id)
            while len(self._history) > MAX_CONTEXTS:
                self._history.popitem(last=False)


def _usage_dict(msg: AIMessageChunk | None) -> dict[str, int] | None:
    um = msg.usage_metadata if msg is not None else None
    if not um:
        return None
    return {
        "input_tokens": int(um.get("input_tokens", 0)),
        "output_tokens": int(um.get("output_tokens", 0)),
        "total_tokens": int(um.get("total_tokens", 0)),
    }


def agent_card(name: str, url: str, *, secured: bool = False) -> Any:
    """The A2A card of one served model (an ``a2a.types.AgentCard``), reachable at ``url``."""
    from a2a.types import (
        AgentCapabilities,
        AgentCard,
        AgentInterface,
        AgentSkill,
        HTTPAuthSecurityScheme,
        SecurityRequirement,
        SecurityScheme,
        StringList,
    )

    card = AgentCard(
        name=name,
        description=f"{name}, served by gatewaykit",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="chat",
                name="chat",
                description=f"Converse with {name}: send text, get the answer as text",
                tags=["chat"],
                input_modes=["text/plain"],
                output_modes=["text/plain"],
            )
        ],
    )
    if secured:
        card.security_schemes["bearer"].CopyFrom(
            SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="bearer"))
        )
        card.security_requirements.append(
            SecurityRequirement(schemes={"bearer": StringList(list=[])})
        )
    return card


Endpoint = Callable[[Request], Awaitable[Response]]


def a2a_routes(
    models: Mapping[str, BaseChatModel],
    *,
    authorize: Callable[[Request], Response | None],
    lookup_error: Callable[[str | None], Response | None],
    describe_error: Callable[[BaseException], str],
    secured: bool,
) -> list[Route]:
    """The A2A routes for ``models``: JSON-RPC at ``/a2a/{name}``, the card at
    ``/a2a/{name}/.well-known/agent-card.json`` and ``/.well-known/agent-card.json?model={name}``.

    ``authorize`` returns an error response for a request without a valid key (the card stays
    public); ``lookup_error`` one for an unknown model name.
    """
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.request_handlers.response_helpers import agent_card_to_dict
    from a2a.server.routes import create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore

    routes: list[Route] = []
    for name, model in models.items():
        handler = DefaultRequestHandler(
            agent_executor=ChatModelAgentExecutor(model, name, describe_error),
            task_store=InMemoryTaskStore(),
            agent_card=agent_card(name, f"/a2a/{name}", secured=secured),
        )
        (rpc,) = create_jsonrpc_routes(handler, rpc_url=f"/a2a/{name}", enable_v0_3_compat=True)
        routes.append(Route(f"/a2a/{name}", _guarded(rpc.endpoint, authorize), methods=["POST"]))

    async def card(request: Request) -> Response:
        name = request.path_params.get("name") or request.query_params.get("model")
        if name is None and len(models) == 1:
            name = next(iter(models))
        error = lookup_error(name)
        if error is not None:
            return error
        assert isinstance(name, str)
        url = str(request.base_url).rstrip("/") + f"/a2a/{name}"
        return JSONResponse(agent_card_to_dict(agent_card(name, url, secured=secured)))

    async def unknown_agent(request: Request) -> Response:
        denied = authorize(request)
        if denied is not None:
            return denied
        error = lookup_error(request.path_params["name"])
        return error if error is not None else Response(status_code=404)

    routes += [
        Route("/.well-known/agent-card.json", card, methods=["GET"]),
        Route("/a2a/{name}/.well-known/agent-card.json", card, methods=["GET"]),
        Route("/a2a/{name}", unknown_agent, methods=["POST"]),
    ]
    return routes


def _guarded(endpoint: Any, authorize: Callable[[Request], Response | None]) -> Endpoint:
    async def guarded(request: Request) -> Response:
        denied = authorize(request)
        if denied is not None:
            return denied
        response: Response = await endpoint(request)
        return response

    return guarded
