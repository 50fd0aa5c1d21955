"""An A2A agent called as a LangChain chat model, fully offline.

A small "trip planner" agent is built with the official a2a-sdk (an ``AgentExecutor`` behind its
``DefaultRequestHandler``, an in-memory task store and an agent card) and served on a local port.
A2AAgentChatModel then uses it like any chat model:

1. card discovery from the base URL (read once, cached);
2. ``invoke`` (A2A ``message/send``): the answer artifact's text, with the usage the agent reports;
3. ``stream`` (A2A ``message/stream``): each token once, in order;
4. a chain with ``|`` and ``batch``;
5. a thread: ``thread_id`` is the A2A ``contextId``, so the agent answers in context;
6. an agent that asks a question back: a typed ``A2ATaskError(state='input-required')``, never an
   empty answer.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from a2a.helpers.proto_helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from starlette.applications import Starlette

from gatewaykit.agents import A2AAgentChatModel, A2ATaskError


class TripPlanner(AgentExecutor):
    """Plans a trip to the city in the message; asks back when there is no city."""

    CITIES = ("Lisbon", "Kyoto", "Oslo")

    def __init__(self) -> None:
        self.last_city: dict[str, str] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        text = context.get_user_input()
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        city = next((c for c in self.CITIES if c.lower() in text.lower()), None)
        city = city or self.last_city.get(task.context_id)
        if city is None:
            question = updater.new_agent_message([Part(text="Which city would you like to visit?")])
            await updater.requires_input(question)
            return
        self.last_city[task.context_id] = city
        days = 3 if "weekend" not in text.lower() else 2
        words = f"Plan for {city}: {days} days, museums first, then the old town.".split(" ")
        for i, word in enumerate(words):  # token by token, as appended artifact chunks
            piece = word if i == 0 else " " + word
            await updater.add_artifact([Part(text=piece)], artifact_id="plan", append=i > 0)
        await updater.add_artifact(
            [Part(text=" ".join(words))],
            artifact_id="plan",
            append=False,
            last_chunk=True,
            metadata={"usage": {"input_tokens": len(text.split()), "output_tokens": len(words)}},
        )
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def start_agent() -> tuple[str, uvicorn.Server]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    card = AgentCard(
        name="trip-planner",
        description="Plans city trips",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=f"{base}/rpc", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="plan", name="plan", description="Plan a trip", tags=["travel"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=TripPlanner(), task_store=InMemoryTaskStore(), agent_card=card
    )
    app = Starlette(
        routes=[*create_jsonrpc_routes(handler, rpc_url="/rpc"), *create_agent_card_routes(card)]
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the A2A agent did not start")
        time.sleep(0.02)
    return base, server


def main() -> None:
    base, server = start_agent()
    try:
        model = A2AAgentChatModel(url=base)

        print("1. invoke")
        msg = model.invoke("Plan a trip to Lisbon")
        card = model.agent_card
        print(f"  card: {card.name}, streaming={card.capabilities.streaming}")
        print(f"  answer: {msg.content}")
        usage = msg.usage_metadata or {}
        print(
            f"  usage reported by the agent: {usage.get('input_tokens')} in, "
            f"{usage.get('output_tokens')} out"
        )
        print(f"  task state: {msg.response_metadata['agent']['state']}")

        print("2. stream")
        tokens = [str(c.content) for c in model.stream("A weekend in Kyoto") if c.content]
        print(f"  streamed {len(tokens)} tokens: {'|'.join(tokens)}")
        expected = "Plan for Kyoto: 2 days, museums first, then the old town."
        print(f"  each token once: {''.join(tokens) == expected}")

        print("3. chain and batch")
        chain = (
            ChatPromptTemplate.from_template("Plan a trip to {city}") | model | StrOutputParser()
        )
        for plan in chain.batch([{"city": "Oslo"}, {"city": "Kyoto"}]):
            print(f"  {plan}")

        print("4. thread")
        config = {"configurable": {"thread_id": "trip-42"}}
        model.invoke("Plan a trip to Oslo", config=config)
        follow = model.invoke("Make it a weekend", config=config)
        print(f"  follow-up in context: {follow.content}")

        print("5. the agent asks back")
        try:
            model.invoke("Plan me a trip")
        except A2ATaskError as exc:
            print(f"  A2ATaskError(state={exc.state}): {exc.detail}")
    finally:
        server.should_exit = True


if __name__ == "__main__":
    main()
