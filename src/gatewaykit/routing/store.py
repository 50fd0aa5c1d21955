"""Router state: where per-deployment counters, latencies and cooldowns live.

The router never keeps state in its graph; it asks a :class:`StateStore`. ``InMemoryStore`` is the
embedded default (one process). A shared store (Redis) lets many processes see one rpm window and
one cooldown. The protocol is shaped so a remote store costs one round trip per call on the hot
path: :meth:`StateStore.acquire` is the only call whose answer the request waits for (an atomic
check-and-reserve of rpm/tpm/parallel headroom); :meth:`StateStore.view` may be served from a
local copy, and :meth:`StateStore.release` may be pipelined.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Admission",
    "DeploymentState",
    "InMemoryStore",
    "Outcome",
    "StateStore",
]

WINDOW_S = 60.0
"""Length of the rpm/tpm and failure-rate windows (LiteLLM counts per minute too)."""


@dataclass(slots=True)
class DeploymentState:
    """What the router knows about one deployment right now.

    Example::

        state = store.view(["dep-a"], now)["dep-a"]
        if state.cooldown_until > now: ...
    """

    in_flight: int = 0
    """Calls sent and not yet answered (least-busy routing, max_parallel_requests)."""
    window_start: float = 0.0
    """Start of the current one-minute window for the counters below."""
    rpm_used: int = 0
    """Requests admitted in the current window."""
    tpm_used: int = 0
    """Tokens admitted (estimated, then settled) in the current window."""
    successes: int = 0
    """Successful calls in the current window (failure-rate cooldowns need a sample size)."""
    failures: int = 0
    """Failed calls in the current window."""
    consecutive_failures: int = 0
    """Failures since the last success."""
    latency_s: float | None = None
    """Moving average of whole-call latency, seconds (latency-based routing)."""
    ttft_s: float | None = None
    """Moving average of time to first token for streams, seconds."""
    latency_at: float = 0.0
    """When the latency figures were last updated (they expire after the strategy's ttl)."""
    cooldown_until: float = 0.0
    """The deployment is excluded until this time."""
    cooldown_reason: str = ""
    """Why it is cooling down (error kind and status)."""
    half_open: bool = False
    """The cooldown has expired; one trial call decides whether it closes or cools again."""
    trial_in_flight: bool = False
    """A half-open trial call is under way; others do not wait for its verdict."""
    trips: int = 0
    """Health cooldowns in a row that no success interrupted (each one doubles the next)."""
    spend: float = 0.0
    """Cost recorded for this deployment (USD)."""

    def roll(self, now: float) -> None:
        """Start a new counting window if the current one is over."""
        if now - self.window_start >= WINDOW_S:
            self.window_start = now - (
                (now - self.window_start) % WINDOW_S if self.window_start else 0.0
            )
            self.rpm_used = 0
            self.tpm_used = 0
            self.successes = 0
            self.failures = 0


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of :meth:`StateStore.acquire`: admitted, or why not and until when."""

    ok: bool
    reason: str = ""
    retry_at: float = 0.0
    kind: str = ""
    """Why it was refused: ``cooldown``, ``trial`` (another call holds the half-open trial),
    ``rpm``, ``tpm`` or ``parallel``."""
    trial: bool = False
    """Admitted as the deployment's half-open trial after a cooldown."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended, for :meth:`StateStore.release`."""

    ok: bool
    latency_s: float = 0.0
    ttft_s: float | None = None
    tokens: int = 0
    """Actual tokens used (settles the estimate reserved by acquire)."""
    reserved_tokens: int = 0
    cost: float = 0.0
    kind: str | None = None
    """Error kind (``GatewayError.kind``) when ``ok`` is False."""
    status: int | None = None
    cooldown_s: float | None = None
    """Set by the health policy when this failure cools the deployment down."""
    counts_as_failure: bool = True
    """False for errors that say nothing about the deployment's health (a 400 of the caller)."""
    stream: bool = False

    @property
    def reason(self) -> str:
        """The cooldown reason this outcome gives: error kind and status."""
        return f"{self.kind} {self.status or ''}".strip()


LATENCY_ALPHA = 0.3
"""Weight of a new sample in the latency moving average."""


@runtime_checkable
class StateStore(Protocol):
    """Where the router keeps per-deployment state. Sync methods; async twins default to them.

    Example::

        store = InMemoryStore()
        router = RouterChatModel.from_config("config.yaml", model="claude-sonnet", store=store)
    """

    def view(self, ids: Iterable[str], now: float) -> Mapping[str, DeploymentState]:
        """Current state of these deployments (may be a recent local copy)."""
        ...

    def acquire(
        self,
        id_: str,
        now: float,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        tokens: int = 0,
        max_parallel: int | None = None,
        trial: bool = False,
    ) -> Admission:
        """Atomically check headroom and reserve one request (and ``tokens``) on ``id_``."""
        ...

    def release(self, id_: str, now: float, outcome: Outcome) -> DeploymentState:
        """Record how the call ended; returns the updated state (the health policy reads it)."""
        ...

    def cool_down(
        self, id_: str, until: float, reason: str, *, trial: bool = True, now: float | None = None
    ) -> None:
        """Exclude ``id_`` until ``until`` (seen by every router sharing the store).

        ``trial``: after it, one half-open trial call decides (a health cooldown; a new one
        counts in ``trips``); False: full traffic resumes at ``until`` (a rate limit). ``now``
        is the caller's clock (default ``time.monotonic()``)."""
        ...


class InMemoryStore:
    """Process-local state: a dict and a lock. The embedded default.

    Example::

        store = InMemoryStore()
        adm = store.acquire("dep-a", time.monotonic(), rpm=100)
    """

    def __init__(self) -> None:
        self._states: dict[str, DeploymentState] = {}
        self._lock = threading.Lock()

    def _get(self, id_: str, now: float) -> DeploymentState:
        st = self._states.get(id_)
        if st is None:
            st = self._states[id_] = DeploymentState(window_start=now)
        st.roll(now)
        return st

    def view(self, ids: Iterable[str], now: float) -> Mapping[str, DeploymentState]:
        with self._lock:
            return {i: self._get(i, now) for i in ids}

    def acquire(
        self,
        id_: str,
        now: float,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        tokens: int = 0,
        max_parallel: int | None = None,
        trial: bool = False,
    ) -> Admission:
        with self._lock:
            st = self._get(id_, now)
            if st.cooldown_until > now:
                why = f"cooling down ({st.cooldown_reason})"
                return Admission(False, why, st.cooldown_until, "cooldown")
            if st.half_open and st.trial_in_flight:
                return Admission(False, "half-open: trial call in flight", now + 0.05, "trial")
            if rpm is not None and st.rpm_used + 1 > rpm:
                why = f"rpm limit {rpm} reached"
                return Admission(False, why, st.window_start + WINDOW_S, "rpm")
            if tpm is not None and st.tpm_used + tokens > tpm and st.tpm_used > 0:
                why = f"tpm limit {tpm} reached"
                return Admission(False, why, st.window_start + WINDOW_S, "tpm")
            if max_parallel is not None and st.in_flight >= max_parallel:
                return Admission(False, f"{max_parallel} calls in flight", now + 0.01, "parallel")
            if st.half_open:
                st.trial_in_flight = True  # only an admitted call is the trial
            st.rpm_used += 1
            st.tpm_used += tokens
            st.in_flight += 1
            return Admission(True, trial=st.half_open)

    def release(self, id_: str, now: float, outcome: Outcome) -> DeploymentState:
        with self._lock:
            st = self._get(id_, now)
            st.in_flight = max(0, st.in_flight - 1)
            if outcome.tokens and outcome.tokens != outcome.reserved_tokens:
                st.tpm_used = max(0, st.tpm_used + outcome.tokens - outcome.reserved_tokens)
            st.spend += outcome.cost
            st.trial_in_flight = False
            if outcome.ok:
                st.successes += 1
                st.consecutive_failures = 0
                st.half_open = False
                st.trips = 0
                _update_latency(st, outcome, now)
            elif outcome.counts_as_failure:
                # A failed trial leaves the deployment half-open (one call at a time) until the
                # health policy cools it again or a call succeeds.
                st.failures += 1
                st.consecutive_failures += 1
                if outcome.kind == "timeout":
                    _update_latency(st, outcome, now)
            if outcome.cooldown_s:
                self._cool(st, now, now + outcome.cooldown_s, outcome.reason, trial=True)
            return DeploymentState(**{f: getattr(st, f) for f in DeploymentState.__slots__})

    def cool_down(
        self, id_: str, until: float, reason: str, *, trial: bool = True, now: float | None = None
    ) -> None:
        with self._lock:
            st = self._states.setdefault(id_, DeploymentState())
            self._cool(st, time.monotonic() if now is None else now, until, reason, trial=trial)

    @staticmethod
    def _cool(st: DeploymentState, now: float, until: float, reason: str, *, trial: bool) -> None:
        if trial and st.cooldown_until <= now:
            st.trips += 1  # a new cooldown, not a late failure extending the current one
        st.cooldown_until = max(st.cooldown_until, until)
        st.cooldown_reason = reason
        st.half_open = trial

    def reset(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._states.clear()

    def seed(self, states: Mapping[str, DeploymentState]) -> None:
        """Start these deployments from copies of ``states`` (other deployments are kept).

        Used by a shared store that falls back to process-local state: the local copy begins
        with the last shared view (cooldowns, window counters) instead of from nothing.

        Example::

            local = InMemoryStore()
            local.seed({"dep-a": DeploymentState(cooldown_until=now + 5, half_open=True)})
        """
        with self._lock:
            for id_, st in states.items():
                self._states[id_] = dataclasses.replace(st)


def _update_latency(st: DeploymentState, outcome: Outcome, now: float) -> None:
    a = LATENCY_ALPHA
    st.latency_s = (
        outcome.latency_s
        if st.latency_s is None
        else (1 - a) * st.latency_s + a * outcome.latency_s
    )
    if outcome.ttft_s is not None:
        st.ttft_s = (
            outcome.ttft_s if st.ttft_s is None else (1 - a) * st.ttft_s + a * outcome.ttft_s
        )
    st.latency_at = now
