"""The router as a LangGraph graph: one node, ``attempt``, that loops until an answer or a verdict.

Each execution of the node is one call to one deployment, so every attempt is a visible step in
traces and in ``graph.stream(stream_mode="updates")``. The node is a thin loop around the
engine's decision core (:meth:`~gatewaykit.routing.engine.RouterEngine.decide`)::

    observe the group  ->  decide  ->  Call   -> reserve -> call the deployment -> record  -> next
                                  +->  Sleep  -> sleep, then decide again
                                  +->  Look   -> the request moved group: observe it, decide again
                                  +->  Done   -> END (``result`` or ``error`` in the state)

The sync and async nodes differ only in how they sleep and call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from gatewaykit.chat_model import GatewayChatModel
from gatewaykit.config import GatewayConfig
from gatewaykit.errors import UpstreamError
from gatewaykit.routing import outcomes
from gatewaykit.routing.engine import RouterEngine
from gatewaykit.routing.state import (
    AttemptRecord,
    Call,
    Done,
    RouteRequest,
    RouterState,
    Sleep,
)
from gatewaykit.routing.transport import can_use_lean_path

__all__ = [
    "AttemptRecord",
    "RouteRequest",
    "RouterEngine",
    "RouterState",
    "build_router_graph",
]


# ---------------------------------------------------------------------- the node


def _attempt_sync(engine: RouterEngine, state: RouterState) -> RouterState:
    while True:
        now = time.monotonic()
        decision = state.get("pending") or engine.decide(state, engine.observe(state, now), now)
        state["pending"] = None
        if isinstance(decision, Call):
            call = outcomes.reserve(engine, state, decision, now)
            if call is not None:
                _call_sync(engine, state, call)
                return state
        elif isinstance(decision, Sleep):
            time.sleep(decision.seconds)
            state["waited_s"] = state.get("waited_s", 0.0) + decision.seconds
        elif isinstance(decision, Done):
            return state
        # Look, or a refused reservation: observe again and decide again.


async def _attempt_async(engine: RouterEngine, state: RouterState) -> RouterState:
    while True:
        now = time.monotonic()
        decision = state.get("pending") or engine.decide(state, engine.observe(state, now), now)
        state["pending"] = None
        if isinstance(decision, Call):
            call = outcomes.reserve(engine, state, decision, now)
            if call is not None:
                await _call_async(engine, state, call)
                return state
        elif isinstance(decision, Sleep):
            await asyncio.sleep(decision.seconds)
            state["waited_s"] = state.get("waited_s", 0.0) + decision.seconds
        elif isinstance(decision, Done):
            return state
        # Look, or a refused reservation: observe again and decide again.


def _call_sync(engine: RouterEngine, state: RouterState, call: Call) -> None:
    req = state["request"]
    started = time.monotonic()
    try:
        model = engine.model_for(call.deployment)
        started = time.monotonic()  # building a client on first use is not the call's time
        kwargs = outcomes.call_kwargs(engine, req, call.deployment, started)
        if req.stream:
            result = _collect_stream_sync(model, req, kwargs)
        elif _lean(engine, model, kwargs):
            result = engine.transport.generate(model, req.messages, req.stop, **kwargs)  # type: ignore[union-attr]
        else:
            result = model._generate(req.messages, stop=req.stop, **kwargs)
    except Exception as exc:
        outcomes.record_failure(engine, state, call, exc, started)
        return
    outcomes.record_success(engine, state, call, result, started)


async def _call_async(engine: RouterEngine, state: RouterState, call: Call) -> None:
    req = state["request"]
    started = time.monotonic()
    try:
        model = engine.model_for(call.deployment)
        started = time.monotonic()  # building a client on first use is not the call's time
        kwargs = outcomes.call_kwargs(engine, req, call.deployment, started)
        if req.stream:
            result = await _collect_stream_async(model, req, kwargs)
        elif _lean(engine, model, kwargs):
            result = await engine.transport.agenerate(model, req.messages, req.stop, **kwargs)  # type: ignore[union-attr]
        else:
            result = await model._agenerate(req.messages, stop=req.stop, **kwargs)
    except Exception as exc:
        outcomes.record_failure(engine, state, call, exc, started)
        return
    outcomes.record_success(engine, state, call, result, started)


def _lean(engine: RouterEngine, model: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether the plain call can take the lean HTTP path (no SDK) for this model."""
    return (
        engine.transport is not None
        and isinstance(model, GatewayChatModel)
        and can_use_lean_path(kwargs)
    )


class _Relay:
    """Passes one attempt's chunks to the caller, holding back what must not leak.

    Chunks without payload (the role chunk, headers) wait until the first token, so an attempt
    that fails before answering leaves no trace in the caller's stream. With
    ``buffer_attempts`` every chunk waits until the attempt has finished, so a failure at any
    point can restart on another deployment without the caller ever seeing a partial answer.
    """

    __slots__ = ("final", "held", "req", "started")

    def __init__(self, req: RouteRequest) -> None:
        self.req = req
        self.held: list[ChatGenerationChunk] = []
        self.final: ChatGenerationChunk | None = None
        self.started = time.monotonic()
        req.attempt_ttft = None

    def push(self, chunk: ChatGenerationChunk) -> None:
        self.final = chunk if self.final is None else self.final + chunk
        req = self.req
        if req.attempt_ttft is None and _has_payload(chunk):
            req.attempt_ttft = time.monotonic() - self.started
        if req.on_chunk is None:
            return
        if req.buffer_attempts or (not req.delivered and not _has_payload(chunk)):
            self.held.append(chunk)
            return
        req.delivered = True
        self._flush()
        req.delivered_text.append(chunk.text)
        req.on_chunk(chunk)

    def result(self, deployment: str) -> ChatResult:
        final = self.final
        if final is None:
            raise UpstreamError("the deployment's stream carried no answer", deployment=deployment)
        if self.held and self.req.on_chunk is not None:
            self.req.delivered = True
            self._flush()
        return ChatResult(
            generations=[
                ChatGeneration(message=final.message, generation_info=final.generation_info)
            ]
        )

    def _flush(self) -> None:
        on_chunk = self.req.on_chunk
        assert on_chunk is not None
        for held in self.held:
            if held.text:
                self.req.delivered_text.append(held.text)
            on_chunk(held)
        self.held.clear()


def _has_payload(chunk: ChatGenerationChunk) -> bool:
    return bool(chunk.text) or bool(getattr(chunk.message, "tool_call_chunks", None))


def _collect_stream_sync(model: Any, req: RouteRequest, kwargs: dict[str, Any]) -> ChatResult:
    relay = _Relay(req)
    for chunk in model._stream(req.messages, stop=req.stop, **kwargs):
        relay.push(chunk)
    return relay.result(_model_id(model))


async def _collect_stream_async(
    model: Any, req: RouteRequest, kwargs: dict[str, Any]
) -> ChatResult:
    relay = _Relay(req)
    async for chunk in model._astream(req.messages, stop=req.stop, **kwargs):
        relay.push(chunk)
    return relay.result(_model_id(model))


def build_router_graph(
    config: GatewayConfig | RouterEngine | str | Mapping[str, Any], **engine_kwargs: Any
) -> Any:
    """Compile the router graph for a config (or an existing engine).

    Input is a :class:`RouterState` made by :meth:`RouterEngine.start`; the output state holds
    ``result`` or ``error`` and every attempt.

    Example::

        engine = RouterEngine("config.yaml")
        graph = build_router_graph(engine)
        out = await graph.ainvoke(engine.start("claude-sonnet", msgs, None, {}, stream=False))
    """
    engine = config if isinstance(config, RouterEngine) else RouterEngine(config, **engine_kwargs)

    # Each node run is one attempt; the node says where to go next with a Command, which
    # costs less per step than a conditional edge (the happy path is a single step).
    def attempt(state: RouterState) -> Command[str]:
        out = _attempt_sync(engine, state)
        return Command(goto=END if out.get("done") else "attempt", update=out)

    async def aattempt(state: RouterState) -> Command[str]:
        out = await _attempt_async(engine, state)
        return Command(goto=END if out.get("done") else "attempt", update=out)

    builder = StateGraph(RouterState)
    builder.add_node("attempt", _node(attempt, aattempt), destinations=("attempt", END))
    builder.add_edge(START, "attempt")
    graph = builder.compile(name="gatewaykit-router")
    graph.engine = engine  # type: ignore[attr-defined]
    return graph


def _node(func: Callable[..., Any], afunc: Callable[..., Any]) -> Any:
    """A node with sync and async bodies, as LangGraph itself wraps plain functions."""
    try:
        from langgraph._internal._runnable import RunnableCallable
    except ImportError:  # pragma: no cover - layout changed: the public (slower) equivalent
        return RunnableLambda(func, afunc=afunc, name="attempt")
    return RunnableCallable(func, afunc, name="attempt", trace=False)


# ---------------------------------------------------------------------- helpers


def _model_id(model: Any) -> str:
    return str(
        getattr(model, "deployment_id", None)
        or getattr(model, "model_name", None)
        or getattr(model, "assistant_id", "")
    )
