"""Spend per model and per tag, read from what the gateway reported on each call.

A LangChain callback handler, so it sees every model call of a chain, an agent or a router,
however deeply nested. Only the innermost model runs are counted: a router's or an agent's own
run reports the same spend its inner calls already reported, and would count it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

__all__ = ["CallRecord", "CostTally", "served_and_cost"]

_INTERNAL_TAGS = ("seq:", "graph:", "langsmith:", "gatewaykit:")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One model call: who served it, what it cost, under which tags.

    Example::

        CallRecord("smart-primary", 0.000045, ("step:chain",))
    """

    model: str
    cost: float
    tags: tuple[str, ...]


def served_and_cost(meta: Mapping[str, Any]) -> tuple[str, float]:
    """The deployment that served a message, and its cost, from ``response_metadata``."""
    routing = meta.get("routing")
    if isinstance(routing, Mapping) and routing.get("deployment"):
        return str(routing["deployment"]), float(routing.get("cost") or 0.0)
    gateway = meta.get("gateway")
    if isinstance(gateway, Mapping):
        model = gateway.get("deployment_id") or gateway.get("model_group") or meta.get("model_name")
        return str(model or "?"), float(gateway.get("response_cost") or 0.0)
    return str(meta.get("model_name") or "?"), 0.0


class CostTally(BaseCallbackHandler):
    """Counts the cost of every innermost model call, by served deployment and by run tag.

    Example::

        tally = CostTally()
        chain.invoke(x, config={"callbacks": [tally], "tags": ["step:chain"]})
        tally.by_model()   # {'smart-primary': (1, 0.000045)}
        tally.by_tag()     # {'step:chain': (1, 0.000045)}
    """

    raise_error = False

    def __init__(self) -> None:
        self._parent: dict[UUID, UUID | None] = {}
        self._llm_runs: set[UUID] = set()
        self._outer: set[UUID] = set()
        self._tags: dict[UUID, list[str]] = {}
        self._records: dict[UUID, CallRecord] = {}

    def _start(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        self._parent[run_id] = parent_run_id

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id)
        self._llm_runs.add(run_id)
        self._tags[run_id] = [t for t in tags or () if not t.startswith(_INTERNAL_TAGS)]
        seen: set[UUID] = set()
        node = parent_run_id
        while node is not None and node not in seen:
            seen.add(node)
            if node in self._llm_runs:
                self._outer.add(node)
            node = self._parent.get(node)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id not in self._llm_runs or not response.generations:
            return
        gen = response.generations[0][0] if response.generations[0] else None
        message = getattr(gen, "message", None)
        meta = getattr(message, "response_metadata", None) or {}
        if "agent" in meta:
            # An agent's answer sums its inner model calls, which are counted on their own.
            self._outer.add(run_id)
        model, cost = served_and_cost(meta)
        tags = list(self._tags.get(run_id, ()))
        task = meta.get("task")
        if isinstance(task, Mapping) and task.get("task"):
            tags.append(f"task:{task['task']}")  # the gateway tag the TaskSelector sends
        self._records[run_id] = CallRecord(model, cost, tuple(tags))

    def records(self) -> list[CallRecord]:
        """The innermost calls, in completion order."""
        return [r for run, r in self._records.items() if run not in self._outer]

    def by_model(self) -> dict[str, tuple[int, float]]:
        """Calls and cost per serving deployment."""
        out: dict[str, tuple[int, float]] = {}
        for r in self.records():
            n, c = out.get(r.model, (0, 0.0))
            out[r.model] = (n + 1, c + r.cost)
        return out

    def by_tag(self) -> dict[str, tuple[int, float]]:
        """Calls and cost per run tag (a call with two tags counts under both)."""
        out: dict[str, tuple[int, float]] = {}
        for r in self.records():
            for tag in r.tags or ("(untagged)",):
                n, c = out.get(tag, (0, 0.0))
                out[tag] = (n + 1, c + r.cost)
        return out

    @property
    def total(self) -> float:
        return sum(r.cost for r in self.records())
