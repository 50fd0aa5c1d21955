"""Deployment health: when a failure cools a deployment down, and when a call is retried.

Pure decisions. The :class:`~gatewaykit.routing.store.StateStore` keeps the counters and the
cooldowns; the router asks this module what a failure means, then tells the store.

Compared with LiteLLM's Router:

- **a minimum sample** before a failure *rate* cools a deployment down (LiteLLM cooled down on the
  first failure, 1/1 > 50 %, until PR #17464), and a **consecutive-failure** rule so a deployment
  that fails every call leaves rotation even with little traffic (LiteLLM left one in rotation
  after 25 consecutive 500s);
- **half-open recovery**: after a cooldown one trial call decides whether the deployment is back
  (LiteLLM's recovery is a TTL expiry that lets full traffic in at once);
- **Retry-After is capped**, for cooldowns and for retry sleeps;
- deterministic errors (a 400, a context window, a content policy...) are **never retried**: they
  go straight to the fallbacks (LiteLLM retries them unless a RetryPolicy says 0).

Example::

    after = store.release(dep.id, now, Outcome(ok=False, kind=err.kind, status=err.status))
    seconds = cooldown_for(policy, after, kind=err.kind, status=err.status,
                           retry_after=err.retry_after, group_size=len(group))
    if seconds:
        store.cool_down(dep.id, now + seconds, err.kind)
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gatewaykit.routing.store import DeploymentState

__all__ = [
    "DETERMINISTIC_KINDS",
    "NO_COOLDOWN_KINDS",
    "RATE_KINDS",
    "RETRYABLE_KINDS",
    "CooldownPolicy",
    "RetryPolicy",
    "cooldown_for",
    "is_available",
]

NO_COOLDOWN_KINDS = frozenset(
    {
        "invalid_request",
        "context_window",
        "content_policy",
        "guardrail",
        "budget_exceeded",
        "structured_output",
        "agent",
    }
)
"""Errors that say nothing about the deployment's health: the request or the caller caused them
(``agent``: an agent ran and failed, in its graph or its tools)."""

_MISCONFIGURED = frozenset({"authentication", "not_found", "access_denied"})
"""The deployment itself is wrong (bad key, unknown model, not allowed): every call will fail."""

RATE_KINDS = frozenset({"rate_limited", "no_deployment"})
"""The deployment is full right now. ``no_deployment`` is a LiteLLM proxy whose own group is
cooling down (it answers 429 "No deployments available"): the same signal one level down."""

_SIGNAL_STATUS = {401: "authentication", 403: "access_denied", 404: "not_found"}


@dataclass(frozen=True, slots=True)
class CooldownPolicy:
    """When a failure takes a deployment out of rotation, and for how long.

    - ``cooldown_time``: base duration, seconds (LiteLLM's router ``cooldown_time``, default 5);
      a deployment's own ``cooldown_time`` wins over it; 0 disables cooldowns.
    - ``failure_threshold`` and ``min_requests``: health errors (5xx, timeouts, connection
      errors, broken streams) cool a deployment down when its failure rate in the current window
      exceeds the threshold over at least ``min_requests`` calls — and only when the group has
      another deployment to take the traffic.
    - a deployment failing ``max(min_requests, 3)`` calls in a row cools down even alone in its
      group: the circuit breaker then fails fast and probes, instead of hammering a dead upstream.
    - ``allowed_fails``: LiteLLM's legacy rule, when set: cool down once more than this many
      consecutive failures fall in the current window.
    - ``allowed_fails_by_kind``: the same rule per error kind (LiteLLM's
      ``allowed_fails_policy``; see :meth:`from_litellm`): an error of a listed kind cools the
      deployment down once more than that many consecutive failures have happened, even alone
      in its group, in place of that kind's default rule. Request errors never cool down.
    - ``retry_after_cap``: longest Retry-After honoured as a cooldown.
    - ``max_cooldown``: cap of the exponential growth of repeated cooldowns.
    - ``disabled``: never cool down (LiteLLM's ``disable_cooldowns``).

    Example::

        policy = CooldownPolicy(cooldown_time=10, min_requests=10)
        router = RouterChatModel.from_config("config.yaml", model="gpt-4o", cooldown=policy)
    """

    cooldown_time: float = 5.0
    allowed_fails: int | None = None
    failure_threshold: float = 0.5
    min_requests: int = 5
    retry_after_cap: float = 60.0
    max_cooldown: float = 300.0
    disabled: bool = False
    allowed_fails_by_kind: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_litellm(
        cls, allowed_fails_policy: Mapping[str, int | None] | None = None, **fields: object
    ) -> CooldownPolicy:
        """Build with LiteLLM's ``allowed_fails_policy`` (``AllowedFailsPolicy`` field names,
        e.g. ``RateLimitErrorAllowedFails: 100``, or error kinds); unknown names raise
        ``ValueError``.

        Example::

            CooldownPolicy.from_litellm({"TimeoutErrorAllowedFails": 2}, cooldown_time=30)
        """
        per_kind: dict[str, int] = {}
        for name, n in (allowed_fails_policy or {}).items():
            if n is None:
                continue
            kind = _LITELLM_ALLOWED_FAILS_NAMES.get(name, name)
            if kind not in _ALL_KINDS:
                raise ValueError(
                    f"unknown allowed_fails_policy entry {name!r}; use one of "
                    f"{', '.join(_LITELLM_ALLOWED_FAILS_NAMES)} (or an error kind)"
                )
            per_kind[kind] = int(n)
        return cls(allowed_fails_by_kind=MappingProxyType(per_kind), **fields)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.cooldown_time < 0:
            raise ValueError(f"cooldown_time must be >= 0, got {self.cooldown_time!r}")
        if self.allowed_fails is not None and self.allowed_fails < 0:
            raise ValueError(f"allowed_fails must be >= 0, got {self.allowed_fails!r}")
        if not 0.0 <= self.failure_threshold <= 1.0:
            raise ValueError(f"failure_threshold must be in [0, 1], got {self.failure_threshold!r}")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be >= 1, got {self.min_requests!r}")
        if not self.retry_after_cap > 0:
            raise ValueError(f"retry_after_cap must be > 0, got {self.retry_after_cap!r}")
        if not self.max_cooldown > 0:
            raise ValueError(f"max_cooldown must be > 0, got {self.max_cooldown!r}")
        for kind, n in self.allowed_fails_by_kind.items():
            if n < 0:
                raise ValueError(f"allowed_fails_by_kind[{kind!r}] must be >= 0, got {n!r}")

    @property
    def hard_down_after(self) -> int:
        """Consecutive failures that cool a deployment down whatever its traffic mix."""
        return max(self.min_requests, 3)


def cooldown_for(
    policy: CooldownPolicy,
    state_after: DeploymentState,
    *,
    kind: str,
    status: int | None,
    retry_after: float | None,
    group_size: int,
    deployment_cooldown: float | None = None,
    now: float | None = None,
    trial: bool = False,
) -> float | None:
    """Seconds to cool a deployment down after this failure, or None to keep it in rotation.

    ``state_after`` is the deployment's state with this failure already counted (what
    :meth:`StateStore.release` returns).

    Rules, by error kind:

    - request or caller errors (:data:`NO_COOLDOWN_KINDS`): never;
    - ``rate_limited`` / ``no_deployment`` (or any 429): at once when the group has another
      deployment; a lone deployment is not cooled for a 429 (the retry waits out Retry-After);
    - ``authentication`` / ``not_found`` / ``access_denied`` (401/403/404): at once, even alone
      in the group — the deployment is misconfigured and every call would fail;
    - health errors (``upstream``, ``timeout``, ``connection``, ``stream_interrupted``, anything
      else): failure rate > ``failure_threshold`` over >= ``min_requests`` calls this window
      (group of 2+), or ``hard_down_after`` consecutive failures (any group), or more than
      ``allowed_fails`` consecutive failures this window when that is set;
    - a failed half-open **trial** (``trial=True``) of a health kind: at once, whatever the
      counts say — the deployment was given its chance.

    Duration: the deployment's ``cooldown_time``, else Retry-After (capped at
    ``retry_after_cap``), else the policy's ``cooldown_time``. A configured duration doubles with
    each cooldown in a row that no success interrupted (``state_after.trips``: x1 the first
    time, x2 after a failed trial, x4 after the next...), capped at ``max_cooldown``. Failures
    of calls that were already in flight when the cooldown began only extend it, never escalate
    it, so a burst of them cannot send a deployment to ``max_cooldown``. Retry-After is the
    provider's own answer and is never scaled. The result is always in ``(0, max_cooldown]``.

    When ``now`` is given and the deployment is already cooling down, the failure (of a call sent
    before the cooldown began) only extends the cooldown to ``now + duration`` if that is later,
    and never escalates it.

    Example::

        cooldown_for(CooldownPolicy(), after, kind="rate_limited", status=429, retry_after=7.0,
                     group_size=2)   # -> 7.0
    """
    if policy.disabled or kind in NO_COOLDOWN_KINDS:
        return None
    c = state_after.consecutive_failures
    per_kind = policy.allowed_fails_by_kind.get(kind)
    if per_kind is not None:
        if c <= per_kind and not trial:
            return None
    elif kind in RATE_KINDS or status == 429:
        if group_size <= 1:
            return None
    elif kind in _MISCONFIGURED or (status in _SIGNAL_STATUS and kind not in _HEALTH):
        pass
    elif not trial and not _health_trips(policy, state_after, group_size):
        return None

    cooling = now is not None and state_after.cooldown_until > now
    if deployment_cooldown is not None:
        base, scalable = float(deployment_cooldown), True
    elif retry_after is not None and retry_after > 0:
        base, scalable = min(float(retry_after), policy.retry_after_cap), False
    else:
        base, scalable = policy.cooldown_time, True
    if not base > 0:
        return None  # a cooldown_time of 0 turns cooldowns off (as in LiteLLM)
    if scalable and not cooling and state_after.trips:
        base *= 2.0 ** min(state_after.trips, 32)
    seconds = min(base, policy.max_cooldown)
    if cooling and now is not None and now + seconds <= state_after.cooldown_until:
        return None
    return seconds


_HEALTH = frozenset({"upstream", "timeout", "connection", "stream_interrupted"})


def _health_trips(policy: CooldownPolicy, s: DeploymentState, group_size: int) -> bool:
    """Whether a health failure cools the deployment down now: a run of consecutive failures,
    a failure rate over a minimum sample (groups of two or more), or LiteLLM's allowed_fails."""
    c = s.consecutive_failures
    if c >= policy.hard_down_after:
        return True
    n = s.successes + s.failures
    if group_size > 1 and n >= policy.min_requests and s.failures > policy.failure_threshold * n:
        return True
    return policy.allowed_fails is not None and min(c, s.failures) > policy.allowed_fails


def is_available(state: DeploymentState, now: float) -> tuple[bool, str]:
    """Whether a deployment may be sent a call now, and if not why (for error messages).

    Unavailable while cooling down. After the cooldown the deployment is half-open: one trial
    call at a time goes through; its outcome closes the breaker or cools the deployment again.

    Example::

        ok, why = is_available(store.view([dep.id], now)[dep.id], now)
        # (False, "cooling down for 4.2s more (rate_limited 429)")
    """
    if state.cooldown_until > now:
        return False, (
            f"cooling down for {state.cooldown_until - now:.1f}s more "
            f"({state.cooldown_reason or 'failures'})"
        )
    if state.half_open and state.trial_in_flight:
        return False, "recovering from a cooldown: a trial call is in flight"
    return True, ""


# --------------------------------------------------------------------------------------------
# Retries

DETERMINISTIC_KINDS = frozenset(
    {
        "invalid_request",
        "context_window",
        "content_policy",
        "guardrail",
        "budget_exceeded",
        "access_denied",
        "authentication",
        "not_found",
        "structured_output",
        "agent",
    }
)
"""Errors the same call would get again: never retried (the router moves to fallbacks).
``agent``: an agent that ran and failed may have run tools; running it again repeats them."""

RETRYABLE_KINDS = frozenset(
    {"rate_limited", "upstream", "timeout", "connection", "no_deployment", "stream_interrupted"}
)
"""Transient errors worth another attempt. ``stream_interrupted`` only before the first token:
the router enforces that, as it alone knows whether tokens were delivered."""

_LITELLM_RETRY_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "BadRequestErrorRetries": "invalid_request",
        "AuthenticationErrorRetries": "authentication",
        "TimeoutErrorRetries": "timeout",
        "RateLimitErrorRetries": "rate_limited",
        "ContentPolicyViolationErrorRetries": "content_policy",
        "InternalServerErrorRetries": "upstream",
    }
)

_LITELLM_ALLOWED_FAILS_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "BadRequestErrorAllowedFails": "invalid_request",
        "AuthenticationErrorAllowedFails": "authentication",
        "TimeoutErrorAllowedFails": "timeout",
        "RateLimitErrorAllowedFails": "rate_limited",
        "ContentPolicyViolationErrorAllowedFails": "content_policy",
        "InternalServerErrorAllowedFails": "upstream",
        "ServiceUnavailableErrorAllowedFails": "upstream",
        "BadGatewayErrorAllowedFails": "upstream",
        "NotFoundErrorAllowedFails": "not_found",
    }
)

_ALL_KINDS = DETERMINISTIC_KINDS | RETRYABLE_KINDS


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times a model group retries a failed call, and how long it waits in between.

    ``num_retries`` applies per group (each fallback group gets its own); ``per_kind`` overrides
    it by error kind. Deterministic kinds (:data:`DETERMINISTIC_KINDS`) are never retried, whatever
    ``per_kind`` says: the same request would fail the same way, so the router goes straight to
    its fallbacks. Waits: see :meth:`backoff`.

    Example::

        policy = RetryPolicy(num_retries=3, per_kind={"rate_limited": 5, "timeout": 1})
        policy = RetryPolicy.from_litellm(2, {"RateLimitErrorRetries": 4})
    """

    num_retries: int = 2
    per_kind: Mapping[str, int] = field(default_factory=dict)
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.25
    retry_after_cap: float = 30.0
    min_retry_after: float = 0.0

    def __post_init__(self) -> None:
        if self.num_retries < 0:
            raise ValueError(f"num_retries must be >= 0, got {self.num_retries!r}")
        for k, n in self.per_kind.items():
            if k not in _ALL_KINDS:
                raise ValueError(f"per_kind: unknown error kind {k!r}; use {sorted(_ALL_KINDS)}")
            if n < 0:
                raise ValueError(f"per_kind[{k!r}] must be >= 0, got {n!r}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.min_retry_after < 0:
            raise ValueError("initial_backoff, max_backoff and min_retry_after must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")
        if self.retry_after_cap < 0:
            raise ValueError(f"retry_after_cap must be >= 0, got {self.retry_after_cap!r}")
        # Frozen in fact, not just by convention: the policy is shared by concurrent requests.
        object.__setattr__(self, "per_kind", MappingProxyType(dict(self.per_kind)))

    @classmethod
    def from_litellm(
        cls, num_retries: int = 2, retry_policy_mapping: Mapping[str, int | None] | None = None
    ) -> RetryPolicy:
        """Build from LiteLLM's ``num_retries`` and ``retry_policy`` (``RetryPolicy`` fields).

        Names map to kinds: BadRequestErrorRetries -> invalid_request, AuthenticationErrorRetries
        -> authentication, TimeoutErrorRetries -> timeout, RateLimitErrorRetries -> rate_limited,
        ContentPolicyViolationErrorRetries -> content_policy, InternalServerErrorRetries ->
        upstream. Kind names are accepted as they are; ``None`` values are skipped; anything else
        raises ``ValueError``. Counts for deterministic kinds are kept but never used.

        Example::

            RetryPolicy.from_litellm(2, {"RateLimitErrorRetries": 4, "TimeoutErrorRetries": 0})
        """
        per_kind: dict[str, int] = {}
        for name, n in (retry_policy_mapping or {}).items():
            if n is None:
                continue
            kind = _LITELLM_RETRY_NAMES.get(name, name)
            if kind not in _ALL_KINDS:
                raise ValueError(
                    f"unknown retry_policy entry {name!r}; use one of "
                    f"{', '.join(_LITELLM_RETRY_NAMES)} (or an error kind)"
                )
            per_kind[kind] = int(n)
        return cls(num_retries=int(num_retries), per_kind=per_kind)

    def is_retryable(self, kind: str) -> bool:
        """Whether an error of this kind may be retried in the same group at all."""
        return kind in RETRYABLE_KINDS

    def retries_for(self, kind: str) -> int:
        """Retries allowed in one group for this kind (0 for deterministic kinds)."""
        if kind not in RETRYABLE_KINDS:
            return 0
        return self.per_kind.get(kind, self.num_retries)

    def backoff(
        self,
        attempt: int,
        *,
        retry_after: float | None,
        rng: random.Random,
        other_deployment_available: bool,
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry).

        - 0 when another healthy deployment of the group can take the retry: the retry hops
          there at once (as in LiteLLM);
        - else Retry-After, capped at ``retry_after_cap`` — a longer Retry-After yields the cap,
          and the caller's deadline decides whether waiting is worth it;
        - else ``min(initial_backoff * 2**attempt, max_backoff)``, moved by up to ± ``jitter``
          of itself (and still at most ``max_backoff``) so clients that failed together do not
          retry together;
        - never below ``min_retry_after`` (LiteLLM's router ``retry_after``), never negative.

        Example::

            policy.backoff(1, retry_after=None, rng=rng, other_deployment_available=False)  # ~1s
        """
        if other_deployment_available:
            return 0.0
        if retry_after is not None and retry_after > 0:
            wait = min(float(retry_after), self.retry_after_cap)
        else:
            wait = min(self.initial_backoff * 2.0 ** min(max(attempt, 0), 62), self.max_backoff)
            if self.jitter:
                wait = min(
                    wait * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)), self.max_backoff
                )
        return max(wait, self.min_retry_after, 0.0)


def policy_names(key: str) -> frozenset[str]:
    """The entries LiteLLM's ``retry_policy`` or ``allowed_fails_policy`` may hold (its field
    names, or gatewaykit's error kinds), so the config loader can name a typo."""
    table = _LITELLM_RETRY_NAMES if key == "retry_policy" else _LITELLM_ALLOWED_FAILS_NAMES
    return frozenset(table) | _ALL_KINDS
