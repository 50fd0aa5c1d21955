"""What one routed request carries through the graph, and the decisions taken on it.

Plain data, no behaviour: :class:`RouteRequest` is fixed for the request, :class:`RouterState`
is the graph's state, and :data:`Decision` is what
:meth:`~gatewaykit.routing.engine.RouterEngine.decide` answers each time it is asked what to do
next (call a deployment, sleep, look again, or stop).

Example::

    state = engine.start("claude-sonnet", messages, None, {}, stream=False)
    decision = engine.decide(state, store.view(ids, now), now)
    if isinstance(decision, Call): ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from gatewaykit.config import Deployment
from gatewaykit.cost import Reservation

__all__ = [
    "AttemptRecord",
    "Call",
    "Decision",
    "Done",
    "Failure",
    "GroupAdmission",
    "Look",
    "Recovery",
    "Refusal",
    "RouteRequest",
    "RouterState",
    "Sleep",
    "estimate_tokens",
    "request_needs",
]


@dataclass(slots=True)
class AttemptRecord:
    """One call to one deployment, as shown in ``response_metadata["routing"]["attempts"]``."""

    deployment: str
    group: str
    ok: bool
    latency_ms: float
    kind: str | None = None
    status: int | None = None
    error: str | None = None
    waited_ms: float = 0.0
    trial: bool = False

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "deployment": self.deployment,
            "group": self.group,
            "ok": self.ok,
            "latency_ms": round(self.latency_ms, 3),
        }
        if not self.ok:
            d.update(kind=self.kind, status=self.status, error=self.error)
        if self.waited_ms:
            d["waited_ms"] = round(self.waited_ms, 3)
        if self.trial:
            d["trial"] = True
        return d


@dataclass(slots=True)
class RouteRequest:
    """What is being asked, fixed for the whole request."""

    alias: str
    messages: list[BaseMessage]
    stop: list[str] | None
    kwargs: dict[str, Any]
    stream: bool
    tags: tuple[str, ...]
    needs: frozenset[str]
    input_tokens: int
    started: float
    deadline: float
    max_attempts: int
    max_wait: float = 2.0
    """Longest single wait for a recovery or a backoff when no fallback group remains."""
    fallbacks_allowed: bool = True
    on_chunk: Callable[[Any], None] | None = None
    buffer_attempts: bool = False
    """Hold each attempt's chunks until it completes, so a mid-stream failure can restart."""
    delivered: bool = False
    """Whether a token already reached the caller (from then on, no silent failover)."""
    delivered_text: list[str] = field(default_factory=list)
    """The text that reached the caller, for :class:`~gatewaykit.StreamInterrupted`."""
    condemned: set[str] = field(default_factory=set)
    """Deployments that failed with their own key/model/access error in this request."""
    limited: set[str] = field(default_factory=set)
    """Deployments that answered this request with a rate limit (429)."""
    trialled: set[str] = field(default_factory=set)
    """Cooled deployments this request already sent its one half-open trial to."""
    attempt_ttft: float | None = None
    """Time to first token of the latest streamed attempt (latency-based routing)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """The attempt that just failed, waiting for :meth:`RouterEngine.decide` to say what next."""

    deployment: str
    kind: str
    status: int | None = None
    retry_after: float | None = None
    retryable: bool = True
    """The error's own ``is_retryable``: False for a call that reached an agent, which may have
    run its tools (unless the deployment opts in with ``retry_agent_runs``)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The store refused a picked deployment (the view was stale): skip it until ``until``."""

    reason: str
    until: float
    known: bool
    """Whether ``until`` is a real recovery time (False: a trial is in flight elsewhere)."""


class RouterState(TypedDict, total=False):
    """Graph state: the request, where it is, and how it ended."""

    request: RouteRequest
    group: str
    visited: list[str]
    tried: list[str]
    retries: int
    attempts: list[AttemptRecord]
    result: ChatResult | None
    error: BaseException | None
    served: Deployment | None
    cost: float
    """What the served call cost (the gateway's figure, else the configured prices)."""
    reservation: Reservation | None
    waited_s: float
    done: bool
    failure: Failure | None
    not_before: float
    refused: dict[str, Refusal]
    pending: Call | Sleep | Look | None
    """A decision taken before the graph ran (:meth:`RouterEngine.first_step`)."""


# ---------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Call:
    """Send the request to ``deployment`` (``trial``: its half-open trial after a cooldown)."""

    deployment: Deployment
    trial: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds``, then ask again: a retry's backoff, or a recovery known to be near."""

    seconds: float
    why: str = ""


@dataclass(frozen=True, slots=True)
class Look:
    """The request moved to another model group: read that group's state and ask again."""

    group: str


@dataclass(frozen=True, slots=True)
class Done:
    """Stop: ``state["result"]`` holds the answer, or ``state["error"]`` the typed error."""


Decision = Call | Sleep | Look | Done


@dataclass(frozen=True, slots=True)
class Recovery:
    """When a temporarily unavailable deployment may take calls again.

    ``kind``: ``known`` (the end of a rate limit's Retry-After, of an rpm/tpm window, a free
    parallel slot: full traffic resumes), ``trial`` (the end of a health cooldown: one trial
    call may go, whose verdict decides) or ``unknown`` (a trial is in flight: no clock says).
    """

    at: float
    kind: Literal["known", "trial", "unknown"]
    deployment: str


@dataclass(slots=True)
class GroupAdmission:
    """What :meth:`RouterEngine.admit` let through in one group, and why it dropped the rest."""

    candidates: list[Deployment] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each dropped deployment was dropped, by id."""
    recoveries: list[Recovery] = field(default_factory=list)
    """When each temporarily unavailable one (cooldown, headroom, trial) may be back."""
    context_excluded: bool = False
    """The context window alone left nothing."""

    def earliest(self, *kinds: str) -> Recovery | None:
        """The earliest recovery of these kinds, or None."""
        found = [r for r in self.recoveries if r.kind in kinds]
        return min(found, key=lambda r: r.at) if found else None


# ---------------------------------------------------------------------- request features


def request_needs(messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> frozenset[str]:
    """Capabilities the request needs from a deployment: tools, json_schema, vision."""
    needs: set[str] = set()
    if kwargs.get("tools"):
        needs.add("tools")
    rf = kwargs.get("response_format")
    if isinstance(rf, Mapping) and rf.get("type") == "json_schema":
        needs.add("json_schema")
    for m in messages:
        if isinstance(m.content, list) and any(
            isinstance(b, Mapping) and b.get("type") in ("image_url", "image") for b in m.content
        ):
            needs.add("vision")
            break
    return frozenset(needs)


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """Rough prompt size (4 characters a token, 4 tokens a message) for admission checks."""
    chars = 0
    for m in messages:
        c = m.content
        if isinstance(c, str):
            chars += len(c)
        else:
            for b in c:
                if isinstance(b, str):
                    chars += len(b)
                elif isinstance(b, Mapping) and isinstance(b.get("text"), str):
                    chars += len(b["text"])
    return chars // 4 + 4 * len(messages)
