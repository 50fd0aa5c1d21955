"""Cooldowns, half-open recovery and retry policy (gatewaykit.routing.health)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gatewaykit.routing.health import (
    DETERMINISTIC_KINDS,
    NO_COOLDOWN_KINDS,
    RETRYABLE_KINDS,
    CooldownPolicy,
    RetryPolicy,
    cooldown_for,
    is_available,
)
from gatewaykit.routing.store import DeploymentState, InMemoryStore, Outcome

ALL_KINDS = sorted(DETERMINISTIC_KINDS | RETRYABLE_KINDS)
HEALTH_KINDS = ("upstream", "timeout", "connection", "stream_interrupted")


def after(successes: int = 0, failures: int = 1, consecutive: int | None = None, **kw):
    """A deployment's state right after a failure was counted."""
    return DeploymentState(
        successes=successes,
        failures=failures,
        consecutive_failures=failures if consecutive is None else consecutive,
        **kw,
    )


def cool(state: DeploymentState, kind: str = "upstream", **kw) -> float | None:
    policy = kw.pop("policy", CooldownPolicy())
    kw.setdefault("status", None)
    kw.setdefault("retry_after", None)
    kw.setdefault("group_size", 2)
    return cooldown_for(policy, state, kind=kind, **kw)


# --------------------------------------------------------------------------------------------
# Health errors: minimum sample, failure rate, hard-down


@pytest.mark.parametrize("kind", HEALTH_KINDS)
def test_a_single_failure_never_cools_down(kind: str) -> None:
    """LiteLLM #17418: 1 failure out of 1 is 100 % > 50 %, yet says nothing yet."""
    assert cool(after(failures=1), kind, status=500) is None
    assert cool(after(successes=40, failures=1), kind, status=500) is None
    assert cool(after(failures=1), kind, status=500, group_size=1) is None


def test_failure_rate_above_threshold_with_enough_requests_cools_down() -> None:
    # 3 failures of 5, not in a row: 60 % > 50 % over the minimum sample of 5.
    assert cool(after(successes=2, failures=3, consecutive=1)) == 5.0
    # 2 of 4: below the minimum sample.
    assert cool(after(successes=2, failures=2, consecutive=2)) is None
    # 5 of 10: not above the threshold.
    assert cool(after(successes=5, failures=5, consecutive=2)) is None
    # A stricter policy.
    strict = CooldownPolicy(failure_threshold=0.2, min_requests=10)
    assert cool(after(successes=7, failures=3, consecutive=1), policy=strict) == 5.0
    assert cool(after(successes=5, failures=3, consecutive=1), policy=strict) is None


def test_failure_rate_spares_a_lone_deployment() -> None:
    """With nobody to take over, a partly working deployment beats an excluded one."""
    assert cool(after(successes=2, failures=3, consecutive=1), group_size=1) is None


def test_hard_down_deployment_cools_down_even_alone() -> None:
    """LiteLLM PR #34836: 25 consecutive 500s left a deployment in rotation."""
    policy = CooldownPolicy()
    assert policy.hard_down_after == 5
    assert cool(after(failures=4), group_size=1) is None
    assert cool(after(failures=5), group_size=1) == 5.0
    # The consecutive run counts even when the window's mix looks fine.
    assert cool(after(successes=100, failures=5, consecutive=5)) == 5.0
    assert CooldownPolicy(min_requests=1).hard_down_after == 3


def test_allowed_fails_legacy_rule() -> None:
    policy = CooldownPolicy(allowed_fails=1)
    assert cool(after(failures=1), policy=policy, group_size=1) is None
    assert cool(after(failures=2), policy=policy, group_size=1) == 5.0
    # Consecutive failures from an earlier window do not count.
    assert cool(after(failures=1, consecutive=3), policy=policy) is None
    assert cool(after(failures=1), policy=CooldownPolicy(allowed_fails=0)) == 5.0


def test_allowed_fails_policy_sets_each_kinds_own_trip_point() -> None:
    policy = CooldownPolicy.from_litellm(
        {"RateLimitErrorAllowedFails": 2, "TimeoutErrorAllowedFails": 0}, cooldown_time=10
    )
    assert policy.allowed_fails_by_kind == {"rate_limited": 2, "timeout": 0}
    # A 429 normally cools at once in a group of two; here only after more than 2 in a row.
    assert cool(after(failures=2), "rate_limited", status=429, policy=policy) is None
    assert cool(after(failures=3), "rate_limited", status=429, policy=policy) == 10.0
    # A timeout, normally judged on a sample of 5, cools at the first one, even alone.
    assert cool(after(failures=1), "timeout", policy=policy, group_size=1) == 10.0
    # Kinds not listed keep their default rule; request errors never cool down.
    assert cool(after(failures=1), "upstream", status=500, policy=policy) is None
    strict = CooldownPolicy.from_litellm({"BadRequestErrorAllowedFails": 0})
    assert cool(after(failures=9), "invalid_request", status=400, policy=strict) is None


def test_allowed_fails_policy_rejects_unknown_names_and_negative_counts() -> None:
    with pytest.raises(
        ValueError, match="unknown allowed_fails_policy entry 'TimeoutAllowedFails'"
    ):
        CooldownPolicy.from_litellm({"TimeoutAllowedFails": 1})
    with pytest.raises(ValueError, match=r"allowed_fails_by_kind\['timeout'\] must be >= 0"):
        CooldownPolicy(allowed_fails_by_kind={"timeout": -1})


# --------------------------------------------------------------------------------------------
# Rate limits and misconfigured deployments


def test_rate_limit_cools_at_once_for_retry_after_capped() -> None:
    s = after(successes=50, failures=1)
    assert cool(s, "rate_limited", status=429, retry_after=7.0) == 7.0
    assert cool(s, "rate_limited", status=429, retry_after=600.0) == 60.0
    assert cool(s, "rate_limited", status=429) == 5.0
    assert cool(s, "rate_limited", status=429, retry_after=0.0) == 5.0
    # Alone in its group a 429 does not cool: the retry waits out Retry-After instead.
    assert cool(s, "rate_limited", status=429, retry_after=7.0, group_size=1) is None


def test_proxy_no_deployment_is_a_rate_limit_one_level_down() -> None:
    assert cool(after(), "no_deployment", status=429, retry_after=3.0) == 3.0
    assert cool(after(), "no_deployment", status=429, group_size=1) is None


@pytest.mark.parametrize(
    ("kind", "status"), [("authentication", 401), ("access_denied", 403), ("not_found", 404)]
)
def test_misconfigured_deployment_cools_down_even_alone(kind: str, status: int) -> None:
    assert cool(after(successes=99), kind, status=status) == 5.0
    assert cool(after(successes=99), kind, status=status, group_size=1) == 5.0


@pytest.mark.parametrize("kind", sorted(NO_COOLDOWN_KINDS))
@settings(max_examples=25, deadline=None)
@given(
    failures=hs.integers(min_value=0, max_value=1000),
    status=hs.sampled_from([None, 400, 401, 404, 413, 422, 429, 500]),
    group=hs.integers(min_value=1, max_value=5),
)
def test_request_errors_never_cool_down(kind: str, failures: int, status: int, group: int) -> None:
    state = after(failures=failures, consecutive=failures)
    assert cool(state, kind, status=status, retry_after=5.0, group_size=group) is None
    strict = CooldownPolicy(allowed_fails=0, min_requests=1)
    assert cool(state, kind, status=status, group_size=group, policy=strict) is None


def test_status_alone_is_read_for_kinds_it_does_not_know() -> None:
    assert cool(after(), "something_new", status=429) == 5.0
    assert cool(after(), "something_new", status=401, group_size=1) == 5.0
    assert cool(after(), "something_new", status=500) is None  # a health error: one is not enough


# --------------------------------------------------------------------------------------------
# Duration: precedence, growth, caps, off switches


def test_deployment_cooldown_time_wins() -> None:
    s = after(successes=10, failures=1)
    assert cool(s, "rate_limited", status=429, retry_after=7.0, deployment_cooldown=20.0) == 20.0
    assert cool(s, "authentication", status=401, deployment_cooldown=1.5) == 1.5
    # Retry-After beats the policy's time.
    assert cool(s, "rate_limited", retry_after=2.0, policy=CooldownPolicy(cooldown_time=30)) == 2.0


def test_zero_or_disabled_means_no_cooldown() -> None:
    s = after(failures=10)
    assert cool(s, deployment_cooldown=0.0) is None
    assert cool(s, policy=CooldownPolicy(cooldown_time=0)) is None
    assert cool(s, "authentication", policy=CooldownPolicy(disabled=True)) is None


def test_repeated_trips_back_off_exponentially_up_to_the_cap() -> None:
    """The cooldown doubles with each cooldown in a row that no success interrupted."""
    policy = CooldownPolicy(cooldown_time=5.0, max_cooldown=60.0)
    got = [cool(after(failures=5, trips=t), policy=policy) for t in (0, 1, 2, 3, 4, 40)]
    assert got == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    # A long run of failures alone does not escalate: only trips do.
    assert cool(after(failures=10_000), policy=policy) == 5.0
    # 401s trip from the first failure and grow the same way.
    auth = [cool(after(failures=1, trips=t), "authentication", policy=policy) for t in (0, 1, 3)]
    assert auth == [5.0, 10.0, 40.0]
    # A deployment's own cooldown_time grows the same way.
    assert cool(after(failures=20, trips=2), deployment_cooldown=2.0) == 8.0


def test_a_failed_trial_cools_at_once_and_longer() -> None:
    """A half-open trial that fails re-cools the deployment whatever its counts, doubled."""
    policy = CooldownPolicy(cooldown_time=5.0, min_requests=50)
    few = after(successes=40, failures=2, consecutive=1, trips=1)
    assert cool(few, policy=policy) is None  # no rule fires on the counts alone
    assert cool(few, policy=policy, trial=True) == 10.0
    # Errors that say nothing of health still never cool, trial or not.
    assert cool(few, "invalid_request", policy=policy, trial=True) is None


def test_retry_after_is_never_scaled() -> None:
    s = after(failures=64)
    assert cool(s, "rate_limited", status=429, retry_after=7.0) == 7.0


def test_a_burst_of_in_flight_failures_does_not_escalate() -> None:
    """Calls sent before the trip fail while the deployment already cools down."""
    now = 100.0
    cooling = after(failures=30, cooldown_until=now + 4.0, trips=2)
    assert cool(cooling, now=now) == 5.0  # extends to now + 5, not 5 x 4
    assert cool(cooling, now=now, policy=CooldownPolicy(cooldown_time=3.0)) is None
    # The same failure with no cooldown running escalates.
    assert cool(after(failures=30, cooldown_until=now - 1.0, trips=2), now=now) == 20.0


@settings(max_examples=300, deadline=None)
@given(
    kind=hs.sampled_from([*ALL_KINDS, "something_new"]),
    status=hs.none() | hs.sampled_from([400, 401, 403, 404, 408, 429, 500, 503]),
    successes=hs.integers(min_value=0, max_value=10_000),
    failures=hs.integers(min_value=0, max_value=10_000),
    consecutive=hs.integers(min_value=0, max_value=10**9),
    retry_after=hs.none() | hs.floats(min_value=-10, max_value=1e9, allow_nan=False),
    group=hs.integers(min_value=1, max_value=8),
    dep_cooldown=hs.none() | hs.floats(min_value=0, max_value=1e6),
    cooldown_time=hs.floats(min_value=0, max_value=1e4),
    max_cooldown=hs.floats(min_value=0.001, max_value=1e4),
    allowed=hs.none() | hs.integers(min_value=0, max_value=10),
    now=hs.none() | hs.floats(min_value=0, max_value=1e6),
    until=hs.floats(min_value=0, max_value=1e6),
)
def test_cooldown_is_none_or_within_bounds(
    kind: str,
    status: int | None,
    successes: int,
    failures: int,
    consecutive: int,
    retry_after: float | None,
    group: int,
    dep_cooldown: float | None,
    cooldown_time: float,
    max_cooldown: float,
    allowed: int | None,
    now: float | None,
    until: float,
) -> None:
    policy = CooldownPolicy(
        cooldown_time=cooldown_time, max_cooldown=max_cooldown, allowed_fails=allowed
    )
    state = after(successes, failures, consecutive, cooldown_until=until)
    got = cooldown_for(
        policy,
        state,
        kind=kind,
        status=status,
        retry_after=retry_after,
        group_size=group,
        deployment_cooldown=dep_cooldown,
        now=now,
    )
    assert got is None or 0 < got <= max_cooldown
    if got is not None and retry_after is not None and retry_after > 0 and dep_cooldown is None:
        assert got <= policy.retry_after_cap


def test_policy_rejects_nonsense() -> None:
    for bad in (
        {"cooldown_time": -1},
        {"allowed_fails": -1},
        {"failure_threshold": 1.5},
        {"min_requests": 0},
        {"retry_after_cap": 0},
        {"max_cooldown": 0},
    ):
        with pytest.raises(ValueError):
            CooldownPolicy(**bad)


# --------------------------------------------------------------------------------------------
# Availability and half-open recovery


def test_cooling_deployment_is_unavailable_with_a_reason() -> None:
    state = DeploymentState(cooldown_until=104.25, cooldown_reason="rate_limited 429")
    ok, why = is_available(state, 100.0)
    assert not ok
    assert "4.2s" in why and "rate_limited 429" in why


def test_half_open_lets_one_trial_through() -> None:
    state = DeploymentState(cooldown_until=100.0, half_open=True)
    assert is_available(state, 100.0) == (True, "")
    state.trial_in_flight = True
    ok, why = is_available(state, 100.5)
    assert not ok and "trial" in why
    assert is_available(DeploymentState(), 0.0) == (True, "")


def test_half_open_cycle_with_the_store() -> None:
    store = InMemoryStore()
    store.acquire("d", 0.0)
    policy = CooldownPolicy()
    for t in range(5):  # a deployment that fails every call
        state = store.release("d", float(t), Outcome(ok=False, kind="upstream", status=500))
        seconds = cooldown_for(
            policy, state, kind="upstream", status=500, retry_after=None, group_size=1
        )
        if t < 4:
            assert seconds is None
            store.acquire("d", float(t))
    assert seconds == 5.0
    store.cool_down("d", 4.0 + seconds, "upstream 500")
    assert not is_available(store.view(["d"], 8.0)["d"], 8.0)[0]
    # Expired: half-open, one trial call at a time.
    assert is_available(store.view(["d"], 9.0)["d"], 9.0)[0]
    assert store.acquire("d", 9.0).ok
    assert not is_available(store.view(["d"], 9.1)["d"], 9.1)[0]
    # The trial succeeds: the breaker closes and traffic flows again.
    store.release("d", 9.2, Outcome(ok=True, latency_s=0.2))
    state = store.view(["d"], 9.3)["d"]
    assert is_available(state, 9.3) == (True, "")
    assert not state.half_open and state.consecutive_failures == 0 and state.trips == 0


def test_failed_trials_double_the_cooldown_with_the_store() -> None:
    """A deployment that fails every trial gets one trial per cooldown, each cooldown twice
    the last (5, 10, 20, 40 s), never one every 5 s."""
    store = InMemoryStore()
    policy = CooldownPolicy(cooldown_time=5.0, max_cooldown=30.0)
    now, gaps = 0.0, []
    store.cool_down("d", now + 5.0, "upstream 500", now=now)
    for _ in range(5):
        now = store.view(["d"], now)["d"].cooldown_until
        assert store.acquire("d", now).trial  # the one trial after the cooldown
        assert not store.acquire("d", now).ok  # nobody else while it is in flight
        state = store.release("d", now, Outcome(ok=False, kind="upstream", status=500))
        assert state.half_open  # still one call at a time until the policy decides
        seconds = cooldown_for(
            policy,
            state,
            kind="upstream",
            status=500,
            retry_after=None,
            group_size=1,
            now=now,
            trial=True,
        )
        assert seconds is not None
        store.cool_down("d", now + seconds, "upstream 500", now=now)
        gaps.append(seconds)
    assert gaps == [10.0, 20.0, 30.0, 30.0, 30.0]
    # A rate-limit cooldown lets full traffic in when it ends: no trial, no trip.
    store.cool_down("r", 1.0, "rate_limited 429", trial=False, now=0.0)
    state = store.view(["r"], 1.0)["r"]
    assert not state.half_open and state.trips == 0
    assert store.acquire("r", 1.0).ok and store.acquire("r", 1.0).ok


# --------------------------------------------------------------------------------------------
# Retry policy


@pytest.mark.parametrize("kind", sorted(DETERMINISTIC_KINDS))
def test_deterministic_kinds_are_never_retried(kind: str) -> None:
    policy = RetryPolicy(num_retries=5, per_kind={kind: 3})
    assert not policy.is_retryable(kind)
    assert policy.retries_for(kind) == 0


@pytest.mark.parametrize("kind", sorted(RETRYABLE_KINDS))
def test_transient_kinds_are_retried(kind: str) -> None:
    policy = RetryPolicy(num_retries=3)
    assert policy.is_retryable(kind)
    assert policy.retries_for(kind) == 3
    assert RetryPolicy(num_retries=3, per_kind={kind: 0}).retries_for(kind) == 0


def test_unknown_kinds_are_not_retried() -> None:
    assert not RetryPolicy().is_retryable("something_new")
    assert RetryPolicy().retries_for("something_new") == 0


def test_from_litellm_maps_retry_policy_names() -> None:
    policy = RetryPolicy.from_litellm(
        4,
        {
            "BadRequestErrorRetries": 2,
            "AuthenticationErrorRetries": 1,
            "TimeoutErrorRetries": 0,
            "RateLimitErrorRetries": 6,
            "ContentPolicyViolationErrorRetries": 1,
            "InternalServerErrorRetries": 2,
            "connection": 1,
            "ServiceUnavailableErrorRetries": None,
        },
    )
    assert policy.num_retries == 4
    assert dict(policy.per_kind) == {
        "invalid_request": 2,
        "authentication": 1,
        "timeout": 0,
        "rate_limited": 6,
        "content_policy": 1,
        "upstream": 2,
        "connection": 1,
    }
    assert policy.retries_for("rate_limited") == 6
    assert policy.retries_for("timeout") == 0
    assert policy.retries_for("no_deployment") == 4
    assert policy.retries_for("invalid_request") == 0  # configured, never used
    assert RetryPolicy.from_litellm(2, None) == RetryPolicy()


def test_from_litellm_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="RateLimitErrorRetries"):
        RetryPolicy.from_litellm(2, {"RateLimitRetries": 3})


def test_retry_policy_is_immutable_and_validated() -> None:
    source = {"timeout": 1}
    policy = RetryPolicy(per_kind=source)
    source["timeout"] = 9
    assert policy.retries_for("timeout") == 1
    with pytest.raises(TypeError):
        policy.per_kind["timeout"] = 5  # type: ignore[index]
    for bad in (
        {"num_retries": -1},
        {"per_kind": {"timeout": -1}},
        {"per_kind": {"nope": 1}},
        {"jitter": 2.0},
        {"initial_backoff": -1},
        {"retry_after_cap": -1},
    ):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def wait(policy: RetryPolicy, attempt: int, retry_after: float | None = None, seed: int = 0):
    return policy.backoff(
        attempt, retry_after=retry_after, rng=random.Random(seed), other_deployment_available=False
    )


def test_backoff_is_zero_when_the_retry_can_hop() -> None:
    policy = RetryPolicy(min_retry_after=2.0)
    got = policy.backoff(3, retry_after=20.0, rng=random.Random(0), other_deployment_available=True)
    assert got == 0.0


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(jitter=0.0)
    waits = [wait(policy, a) for a in range(8)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert wait(policy, 10_000) == 8.0  # no overflow
    assert wait(policy, -3) == 0.5


def test_backoff_honours_retry_after_capped() -> None:
    policy = RetryPolicy()
    assert wait(policy, 0, retry_after=7.0) == 7.0
    assert wait(policy, 0, retry_after=600.0) == 30.0  # the caller's deadline decides the rest
    assert wait(RetryPolicy(retry_after_cap=5.0), 0, retry_after=7.0) == 5.0
    # No usable Retry-After: exponential.
    assert 0.375 <= wait(policy, 0, retry_after=0.0) <= 0.625


def test_backoff_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(jitter=0.25)
    waits = {wait(policy, 1, seed=s) for s in range(200)}
    assert min(waits) >= 0.75 and max(waits) <= 1.25
    assert len(waits) > 100  # clients that failed together do not retry together


def test_backoff_floor_is_min_retry_after() -> None:
    policy = RetryPolicy(min_retry_after=3.0, jitter=0.0)
    assert wait(policy, 0) == 3.0
    assert wait(policy, 0, retry_after=1.0) == 3.0
    assert wait(policy, 5) == 8.0


@settings(max_examples=300, deadline=None)
@given(
    attempt=hs.integers(min_value=-5, max_value=10_000),
    retry_after=hs.none() | hs.floats(min_value=-100, max_value=1e9, allow_nan=False),
    initial=hs.floats(min_value=0, max_value=100),
    maximum=hs.floats(min_value=0, max_value=100),
    jitter=hs.floats(min_value=0, max_value=1),
    floor=hs.floats(min_value=0, max_value=50),
    cap=hs.floats(min_value=0, max_value=100),
    hop=hs.booleans(),
    seed=hs.integers(min_value=0, max_value=10**6),
)
def test_backoff_is_never_negative_and_bounded(
    attempt: int,
    retry_after: float | None,
    initial: float,
    maximum: float,
    jitter: float,
    floor: float,
    cap: float,
    hop: bool,
    seed: int,
) -> None:
    policy = RetryPolicy(
        initial_backoff=initial,
        max_backoff=maximum,
        jitter=jitter,
        min_retry_after=floor,
        retry_after_cap=cap,
    )
    got = policy.backoff(
        attempt, retry_after=retry_after, rng=random.Random(seed), other_deployment_available=hop
    )
    assert got >= 0.0
    if hop:
        assert got == 0.0
        return
    assert got >= floor
    if retry_after is not None and retry_after > 0:
        assert got <= max(cap, floor)
    else:
        assert got <= max(maximum, floor)


@settings(max_examples=100, deadline=None)
@given(
    attempt=hs.integers(min_value=0, max_value=60),
    initial=hs.floats(min_value=0.001, max_value=10),
    maximum=hs.floats(min_value=0.001, max_value=100),
)
def test_backoff_without_jitter_is_monotone(attempt: int, initial: float, maximum: float) -> None:
    policy = RetryPolicy(initial_backoff=initial, max_backoff=maximum, jitter=0.0)
    assert wait(policy, attempt) <= wait(policy, attempt + 1) <= maximum
