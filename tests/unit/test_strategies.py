"""Admission filters and deployment choice (gatewaykit.routing.strategies)."""

from __future__ import annotations

import random
import timeit
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gatewaykit.routing import strategies as st
from gatewaykit.routing.store import WINDOW_S, DeploymentState

NOW = 1000.0


@dataclass(frozen=True)
class Dep:
    """The smallest thing that satisfies ``DeploymentLike``."""

    id: str
    model: str = "openai/gpt-4o-mini"
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    order: int | None = None
    tags: tuple[str, ...] = ()
    max_input_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    max_parallel_requests: int | None = None
    supports_function_calling: bool | None = None
    supports_vision: bool | None = None
    supports_response_schema: bool | None = None


def pick(strategy: st.Strategy, deps, states=None, *, seed=0, **kw):
    return strategy.pick(deps, states or {}, rng=random.Random(seed), now=kw.pop("now", NOW), **kw)


def counts(strategy: st.Strategy, deps, states=None, n=2000, **kw) -> Counter[str]:
    rng = random.Random(1234)
    return Counter(strategy.pick(deps, states or {}, rng=rng, now=NOW, **kw).id for _ in range(n))


# --------------------------------------------------------------------------------------------
# Hypothesis building blocks

_opt_int = hs.none() | hs.integers(min_value=0, max_value=500)
_opt_bool = hs.none() | hs.booleans()
_TAGS = ("free", "paid", "eu", "default")


@hs.composite
def deployments(draw: hs.DrawFn, min_size: int = 1, max_size: int = 6) -> list[Dep]:
    n = draw(hs.integers(min_value=min_size, max_value=max_size))
    return [
        Dep(
            id=f"d{i}",
            model=draw(hs.sampled_from(["openai/a", "b", "anthropic/c"])),
            rpm=draw(hs.none() | hs.integers(min_value=0, max_value=50)),
            tpm=draw(hs.none() | hs.integers(min_value=0, max_value=5000)),
            weight=draw(hs.none() | hs.floats(min_value=0, max_value=10)),
            order=draw(hs.none() | hs.integers(min_value=0, max_value=3)),
            tags=tuple(draw(hs.lists(hs.sampled_from(_TAGS), max_size=2, unique=True))),
            max_input_tokens=draw(hs.none() | hs.integers(min_value=1, max_value=1000)),
            input_cost_per_token=draw(hs.none() | hs.floats(min_value=0, max_value=1e-4)),
            output_cost_per_token=draw(hs.none() | hs.floats(min_value=0, max_value=1e-4)),
            max_parallel_requests=draw(hs.none() | hs.integers(min_value=1, max_value=5)),
            supports_function_calling=draw(_opt_bool),
            supports_vision=draw(_opt_bool),
            supports_response_schema=draw(_opt_bool),
        )
        for i in range(n)
    ]


@hs.composite
def states_for(draw: hs.DrawFn, deps: list[Dep]) -> dict[str, DeploymentState]:
    out: dict[str, DeploymentState] = {}
    for d in deps:
        if draw(hs.booleans()):
            continue  # the store has not seen this one
        lat = draw(hs.none() | hs.floats(min_value=0.001, max_value=30))
        out[d.id] = DeploymentState(
            in_flight=draw(hs.integers(min_value=0, max_value=6)),
            window_start=NOW - draw(hs.floats(min_value=0, max_value=2 * WINDOW_S)),
            rpm_used=draw(hs.integers(min_value=0, max_value=60)),
            tpm_used=draw(hs.integers(min_value=0, max_value=6000)),
            latency_s=lat,
            ttft_s=draw(hs.none() | hs.floats(min_value=0.001, max_value=5)),
            latency_at=NOW - draw(hs.floats(min_value=0, max_value=7200)),
        )
    return out


# --------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=150, deadline=None)
@given(data=hs.data())
def test_filters_compose_and_every_strategy_picks_an_admitted_member(data: hs.DataObject) -> None:
    deps = data.draw(deployments())
    states = data.draw(states_for(deps))
    tags = tuple(data.draw(hs.lists(hs.sampled_from(_TAGS), max_size=2)))
    needs = frozenset(data.draw(hs.sets(hs.sampled_from(sorted(st.CAPABILITY_NEEDS)))))
    tokens = data.draw(hs.integers(min_value=0, max_value=1500))

    admitted = st.by_tags(deps, tags, enabled=True)
    admitted = st.by_capabilities(admitted, needs)
    admitted = st.by_context_window(admitted, tokens)
    admitted = st.by_headroom(admitted, states, NOW, tokens)
    admitted = st.by_order(admitted)

    # Every filter keeps a subsequence of its input: order preserved, nothing invented.
    ids = [d.id for d in deps]
    kept = [d.id for d in admitted]
    assert kept == [i for i in ids if i in kept]
    for d in admitted:
        assert not ("tools" in needs and d.supports_function_calling is False)
        assert not ("vision" in needs and d.supports_vision is False)
        assert not ("json_schema" in needs and d.supports_response_schema is False)
        assert d.max_input_tokens is None or d.max_input_tokens >= tokens
        if d.max_parallel_requests is not None and d.id in states:
            assert states[d.id].in_flight < d.max_parallel_requests
    if not admitted:
        return
    orders = {d.order for d in admitted}
    assert len(orders) == 1
    seed = data.draw(hs.integers(min_value=0, max_value=2**32))
    for name in st.STRATEGY_NAMES:
        chosen = pick(
            st.make_strategy(name),
            admitted,
            states,
            seed=seed,
            stream=data.draw(hs.booleans()),
            input_tokens=tokens,
        )
        assert chosen in admitted, name


@settings(max_examples=100, deadline=None)
@given(deps=deployments(min_size=1, max_size=5), seed=hs.integers(min_value=0, max_value=999))
def test_pick_returns_a_member_for_any_states(deps: list[Dep], seed: int) -> None:
    states = {
        d.id: DeploymentState(
            in_flight=i % 3, latency_s=0.1 * i, latency_at=NOW, window_start=NOW, rpm_used=i
        )
        for i, d in enumerate(deps)
    }
    for name in st.STRATEGY_NAMES:
        assert pick(st.make_strategy(name), deps, states, seed=seed) in deps


def test_empty_input_is_a_programming_error() -> None:
    for name in st.STRATEGY_NAMES:
        with pytest.raises(ValueError, match="at least one deployment"):
            pick(st.make_strategy(name), [])


def test_a_pick_among_three_costs_well_under_20_microseconds() -> None:
    deps = [Dep("a", weight=2), Dep("b", rpm=100), Dep("c", weight=1, order=1)]
    states = {d.id: DeploymentState(in_flight=1, latency_s=0.2, latency_at=NOW) for d in deps}
    rng = random.Random(0)
    for name in st.STRATEGY_NAMES:
        s = st.make_strategy(name)
        n = 2000
        per_pick = min(
            timeit.repeat(lambda s=s: s.pick(deps, states, rng=rng, now=NOW), number=n, repeat=5)
        )
        assert per_pick / n < 20e-6, (name, per_pick / n)


# --------------------------------------------------------------------------------------------
# Tags


def test_tags_disabled_does_not_filter() -> None:
    deps = [Dep("a", tags=("paid",)), Dep("b")]
    assert st.by_tags(deps, ("free",), enabled=False) == deps


def test_tagged_request_goes_to_deployments_sharing_any_tag() -> None:
    free, paid, both = Dep("free", tags=("free",)), Dep("paid", tags=("paid",)), Dep("x")
    deps = [free, paid, both]
    assert st.by_tags(deps, ("paid", "eu"), enabled=True) == [paid]
    assert st.by_tags(deps, ("paid", "free"), enabled=True) == [free, paid]


def test_default_tag_serves_untagged_requests() -> None:
    a, b, d = Dep("a", tags=("paid",)), Dep("b"), Dep("dflt", tags=("default",))
    assert st.by_tags([a, b, d], (), enabled=True) == [d]
    # No "default" deployment: untagged requests may go anywhere.
    assert st.by_tags([a, b], (), enabled=True) == [a, b]


def test_unmatched_tags_fall_to_default_deployments_or_to_nothing() -> None:
    a, d = Dep("a", tags=("paid",)), Dep("dflt", tags=("default",))
    assert st.by_tags([a, d], ("free",), enabled=True) == [d]
    assert st.by_tags([a], ("free",), enabled=True) == []


def test_tag_reasons_name_each_excluded_deployment() -> None:
    a, b, d = Dep("a", tags=("paid",)), Dep("b", tags=("free",)), Dep("dflt", tags=("default",))
    kept, why = st.by_tags_explained([a, b, d], ("paid",), enabled=True)
    assert kept == [a]
    assert set(why) == {"b", "dflt"}
    assert "['free']" in why["b"] and "['paid']" in why["b"]
    kept, why = st.by_tags_explained([a, d], (), enabled=True)
    assert kept == [d] and "default" in why["a"]
    assert st.by_tags_explained([a, b], ("x",), enabled=False) == ([a, b], {})


# --------------------------------------------------------------------------------------------
# Capabilities, context window, order, headroom


def test_capabilities_exclude_only_explicit_false() -> None:
    yes = Dep("yes", supports_function_calling=True, supports_vision=True)
    unknown = Dep("unknown")
    no_tools = Dep("no-tools", supports_function_calling=False, supports_vision=True)
    no_schema = Dep("no-schema", supports_response_schema=False)
    deps = [yes, unknown, no_tools, no_schema]
    assert st.by_capabilities(deps, frozenset()) == deps
    assert st.by_capabilities(deps, frozenset({"tools"})) == [yes, unknown, no_schema]
    assert st.by_capabilities(deps, frozenset({"vision"})) == deps
    assert st.by_capabilities(deps, frozenset({"json_schema", "tools"})) == [yes, unknown]


def test_unknown_capability_need_is_rejected() -> None:
    with pytest.raises(ValueError, match="telepathy"):
        st.by_capabilities([Dep("a")], frozenset({"telepathy"}))


def test_context_window_excludes_only_smaller_known_windows() -> None:
    small, exact, big, unknown = (
        Dep("small", max_input_tokens=1000),
        Dep("exact", max_input_tokens=5000),
        Dep("big", max_input_tokens=200_000),
        Dep("unknown"),
    )
    assert st.by_context_window([small, exact, big, unknown], 5000) == [exact, big, unknown]


def test_order_keeps_the_best_priority_and_falls_to_the_next() -> None:
    p1, p1b, p2, none = Dep("p1", order=1), Dep("p1b", order=1), Dep("p2", order=2), Dep("n")
    assert st.by_order([p2, none, p1, p1b]) == [p1, p1b]
    # Order 1 cooling down (filtered out before): order 2 takes over, no switch needed.
    assert st.by_order([p2, none]) == [p2]
    # Unordered deployments come after every ordered one...
    assert st.by_order([none]) == [none]
    # ...and with no order anywhere nothing is filtered.
    assert st.by_order([Dep("a"), Dep("b")]) == [Dep("a"), Dep("b")]


def test_order_composes_with_availability() -> None:
    """The router filters by availability first, then by order."""
    primary, secondary = Dep("primary", order=1, rpm=1), Dep("secondary", order=2)
    states = {"primary": DeploymentState(window_start=NOW - 1, rpm_used=1)}
    assert st.by_order(st.by_headroom([primary, secondary], {}, NOW)) == [primary]
    assert st.by_order(st.by_headroom([primary, secondary], states, NOW)) == [secondary]


def test_headroom_rpm_tpm_and_parallel() -> None:
    rpm_full = Dep("rpm", rpm=10)
    tpm_full = Dep("tpm", tpm=1000)
    busy = Dep("busy", max_parallel_requests=2)
    free = Dep("free", rpm=10, tpm=1000, max_parallel_requests=2)
    states = {
        "rpm": DeploymentState(window_start=NOW - 5, rpm_used=10),
        "tpm": DeploymentState(window_start=NOW - 5, tpm_used=900),
        "busy": DeploymentState(in_flight=2),
        "free": DeploymentState(window_start=NOW - 5, rpm_used=9, tpm_used=500, in_flight=1),
    }
    deps = [rpm_full, tpm_full, busy, free]
    assert st.by_headroom(deps, states, NOW, tokens=100) == [tpm_full, free]
    assert st.by_headroom(deps, states, NOW, tokens=101) == [free]


def test_headroom_ignores_counters_of_a_finished_window() -> None:
    dep = Dep("a", rpm=10, tpm=100)
    stale = {"a": DeploymentState(window_start=NOW - WINDOW_S, rpm_used=10, tpm_used=100)}
    assert st.by_headroom([dep], stale, NOW, tokens=50) == [dep]
    # rpm 0 admits nothing, whatever the window.
    assert st.by_headroom([Dep("z", rpm=0)], {}, NOW) == []


def test_headroom_lets_an_oversized_prompt_into_an_empty_window() -> None:
    dep = Dep("a", tpm=100)
    assert st.by_headroom([dep], {"a": DeploymentState(window_start=NOW)}, NOW, tokens=500) == [dep]
    used = {"a": DeploymentState(window_start=NOW, tpm_used=1)}
    assert st.by_headroom([dep], used, NOW, tokens=500) == []


# --------------------------------------------------------------------------------------------
# simple-shuffle


def _chi_square(observed: Counter[str], expected: dict[str, float]) -> float:
    return sum((observed[k] - e) ** 2 / e for k, e in expected.items())


# Critical values of chi-square at p = 0.001 for 1..4 degrees of freedom.
_CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47}


@pytest.mark.parametrize(
    ("deps", "shares"),
    [
        (
            [Dep("a", weight=1), Dep("b", weight=2), Dep("c", weight=7)],
            {"a": 0.1, "b": 0.2, "c": 0.7},
        ),
        # Weights on a non-first deployment still apply; a missing weight counts 1.
        ([Dep("a"), Dep("b", weight=3)], {"a": 0.25, "b": 0.75}),
        # No weights: rpm; a missing rpm counts as the mean of the others.
        (
            [Dep("a", rpm=100), Dep("b", rpm=300), Dep("c")],
            {"a": 100 / 600, "b": 300 / 600, "c": 200 / 600},
        ),
        # No weights or rpm: tpm.
        ([Dep("a", tpm=1000), Dep("b", tpm=3000)], {"a": 0.25, "b": 0.75}),
        # Nothing: uniform.
        ([Dep("a"), Dep("b"), Dep("c"), Dep("d")], {k: 0.25 for k in "abcd"}),
    ],
)
def test_weighted_shuffle_matches_weights_over_20k_picks(
    deps: list[Dep], shares: dict[str, float]
) -> None:
    n = 20_000
    seen = counts(st.SimpleShuffle(), deps, n=n)
    assert set(seen) == set(shares)
    expected = {k: v * n for k, v in shares.items()}
    assert _chi_square(seen, expected) < _CHI2_999[len(shares) - 1], seen


def test_weight_wins_over_rpm_and_zero_weight_drains() -> None:
    deps = [Dep("a", rpm=1_000_000), Dep("b", weight=1), Dep("c", weight=0)]
    seen = counts(st.SimpleShuffle(), deps, n=4000)
    assert seen["c"] == 0
    assert 1600 < seen["a"] < 2400  # weights 1 (missing) : 1 : 0
    # Every weight zero: still a pick (uniform), never an error.
    assert set(counts(st.SimpleShuffle(), [Dep("x", weight=0), Dep("y", weight=0)])) == {"x", "y"}


def test_weighting_does_not_depend_on_input_order() -> None:
    a, b = Dep("a"), Dep("b", weight=4)
    first = counts(st.SimpleShuffle(), [a, b], n=5000)
    second = counts(st.SimpleShuffle(), [b, a], n=5000)
    for seen in (first, second):
        assert 0.75 < seen["b"] / 5000 < 0.85


# --------------------------------------------------------------------------------------------
# least-busy


def test_least_busy_picks_fewest_in_flight_with_random_ties() -> None:
    deps = [Dep("a"), Dep("b"), Dep("c"), Dep("d")]
    states = {
        "a": DeploymentState(in_flight=3),
        "b": DeploymentState(in_flight=1),
        "c": DeploymentState(in_flight=1),
        "d": DeploymentState(in_flight=2),
    }
    seen = counts(st.LeastBusy(), deps, states)
    assert set(seen) == {"b", "c"}
    assert abs(seen["b"] - seen["c"]) < 250
    # A deployment the store has not seen has nothing in flight.
    assert pick(st.LeastBusy(), [*deps, Dep("new")], states).id == "new"


@settings(max_examples=100, deadline=None)
@given(
    loads=hs.lists(hs.integers(min_value=0, max_value=5), min_size=1, max_size=6),
    seed=hs.integers(min_value=0, max_value=1000),
)
def test_least_busy_is_always_a_minimum(loads: list[int], seed: int) -> None:
    deps = [Dep(f"d{i}") for i in range(len(loads))]
    states = {d.id: DeploymentState(in_flight=n) for d, n in zip(deps, loads, strict=True)}
    chosen = pick(st.LeastBusy(), deps, states, seed=seed)
    assert states[chosen.id].in_flight == min(loads)


# --------------------------------------------------------------------------------------------
# latency-based-routing


def _lat(latency: float | None, *, at: float = NOW, ttft: float | None = None, busy: int = 0):
    return DeploymentState(latency_s=latency, ttft_s=ttft, latency_at=at, in_flight=busy)


def test_latency_picks_the_fastest() -> None:
    deps = [Dep("slow"), Dep("fast"), Dep("mid")]
    states = {"slow": _lat(2.0), "fast": _lat(0.3), "mid": _lat(0.9)}
    assert set(counts(st.LatencyBased(), deps, states, n=200)) == {"fast"}


def test_latency_buffer_spreads_over_near_equals() -> None:
    deps = [Dep("a"), Dep("b"), Dep("c")]
    states = {"a": _lat(1.0), "b": _lat(1.15), "c": _lat(1.5)}
    seen = counts(st.LatencyBased(lowest_latency_buffer=0.2), deps, states)
    assert set(seen) == {"a", "b"}
    assert min(seen.values()) > 800


def test_latency_explores_unmeasured_and_stale_deployments_first() -> None:
    deps = [Dep("fast"), Dep("new"), Dep("stale")]
    states = {"fast": _lat(0.1), "stale": _lat(0.05, at=NOW - 4000)}
    seen = counts(st.LatencyBased(ttl=3600), deps, states)
    assert set(seen) == {"new", "stale"}
    # Within the ttl the old sample counts again.
    assert pick(st.LatencyBased(ttl=5000), deps[::2], states).id == "stale"


def test_latency_explores_one_probe_at_a_time() -> None:
    deps = [Dep("fast"), Dep("new")]
    probing = {"fast": _lat(0.1), "new": _lat(None, busy=1)}
    assert set(counts(st.LatencyBased(), deps, probing, n=200)) == {"fast"}
    # Nothing measured yet (cold start): any deployment, busy or not.
    cold = {"a": _lat(None, busy=2), "b": _lat(None, busy=1)}
    assert set(counts(st.LatencyBased(), [Dep("a"), Dep("b")], cold, n=400)) == {"a", "b"}


def test_latency_uses_time_to_first_token_for_streams() -> None:
    deps = [Dep("quick-start"), Dep("quick-total")]
    states = {
        "quick-start": _lat(3.0, ttft=0.2),
        "quick-total": _lat(1.0, ttft=0.8),
    }
    assert pick(st.LatencyBased(), deps, states, stream=False).id == "quick-total"
    assert pick(st.LatencyBased(), deps, states, stream=True).id == "quick-start"
    # A deployment without a ttft sample is compared on whole-call latency.
    states["quick-start"] = _lat(3.0)
    assert pick(st.LatencyBased(), deps, states, stream=True).id == "quick-total"


def test_latency_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ttl"):
        st.LatencyBased(ttl=0)
    with pytest.raises(ValueError, match="buffer"):
        st.LatencyBased(lowest_latency_buffer=-1)


# --------------------------------------------------------------------------------------------
# cost-based-routing


def test_cost_picks_the_cheapest_from_deployment_prices() -> None:
    deps = [
        Dep("pricey", input_cost_per_token=3e-6, output_cost_per_token=15e-6),
        Dep("cheap", input_cost_per_token=1e-7, output_cost_per_token=4e-7),
    ]
    assert pick(st.CostBased(), deps).id == "cheap"


def test_cost_uses_price_table_by_model_and_unknown_costs_a_dollar() -> None:
    deps = [
        Dep("unpriced", model="mystery/model"),
        Dep("table", model="openai/gpt-4o-mini"),
        Dep("partial", model="x", input_cost_per_token=1e-3),  # output unknown: $1
    ]
    table = {"gpt-4o-mini": (1.5e-7, 6e-7)}  # found without the provider prefix
    strategy = st.CostBased(table)
    assert strategy.price(deps[0]) == 2.0
    assert strategy.price(deps[1]) == pytest.approx(7.5e-7)
    assert strategy.price(deps[2]) == pytest.approx(1.001)
    assert pick(strategy, deps).id == "table"
    # Deployment fields beat the table.
    own = Dep("own", model="openai/gpt-4o-mini", input_cost_per_token=0.0, output_cost_per_token=0)
    assert pick(strategy, [deps[1], own]).id == "own"
    # Without any price everything costs the same: random among ties.
    assert set(counts(st.CostBased(), [Dep("a"), Dep("b")], n=200)) == {"a", "b"}


# --------------------------------------------------------------------------------------------
# usage-based-routing


def _used(rpm: int = 0, tpm: int = 0, *, start: float = NOW - 10) -> DeploymentState:
    return DeploymentState(window_start=start, rpm_used=rpm, tpm_used=tpm)


def test_usage_picks_most_headroom() -> None:
    deps = [Dep("small", rpm=10), Dep("big", rpm=1000), Dep("half", rpm=100)]
    states = {"small": _used(1), "big": _used(600), "half": _used(50)}
    # Utilisation after this call: small 0.2, big 0.601, half 0.51.
    assert pick(st.UsageBased(), deps, states).id == "small"
    # Equally idle: the big one has more room.
    assert pick(st.UsageBased(), deps, {}).id == "big"


def test_usage_counts_tokens_against_tpm() -> None:
    deps = [Dep("a", tpm=10_000), Dep("b", tpm=100_000)]
    states = {"a": _used(tpm=1000), "b": _used(tpm=70_000)}
    assert pick(st.UsageBased(), deps, states, input_tokens=500).id == "a"
    assert pick(st.UsageBased(), deps, states, input_tokens=9000).id == "b"


def test_usage_without_limits_ranks_by_requests_this_window() -> None:
    deps = [Dep("a"), Dep("b"), Dep("c")]
    states = {"a": _used(5), "b": _used(2), "c": _used(9, start=NOW - WINDOW_S - 1)}
    assert pick(st.UsageBased(), deps, states).id == "c"  # its window is over: 0 used
    del states["c"]
    assert pick(st.UsageBased(), deps[:2], states).id == "b"


def test_usage_measures_an_unlimited_deployment_against_its_peers() -> None:
    deps = [Dep("limited", rpm=100), Dep("unlimited")]
    assert pick(st.UsageBased(), deps, {"limited": _used(50), "unlimited": _used(10)}).id == (
        "unlimited"
    )
    assert pick(st.UsageBased(), deps, {"limited": _used(10), "unlimited": _used(50)}).id == (
        "limited"
    )


# --------------------------------------------------------------------------------------------
# make_strategy


def test_make_strategy_knows_litellm_names() -> None:
    assert isinstance(st.make_strategy("simple-shuffle"), st.SimpleShuffle)
    assert isinstance(st.make_strategy("least-busy"), st.LeastBusy)
    assert isinstance(st.make_strategy("cost-based-routing"), st.CostBased)
    assert isinstance(st.make_strategy("usage-based-routing"), st.UsageBased)
    assert isinstance(st.make_strategy("usage-based-routing-v2"), st.UsageBased)
    lat = st.make_strategy(
        "latency-based-routing",
        {"ttl": 60, "lowest_latency_buffer": 0.5, "max_latency_list_size": 10},
    )
    assert isinstance(lat, st.LatencyBased)
    assert (lat.ttl, lat.lowest_latency_buffer) == (60.0, 0.5)
    cost = st.make_strategy(
        "cost-based-routing",
        {
            "price_table": {
                "m": [1e-6, 2e-6],
                "n": {"input_cost_per_token": 0, "output_cost_per_token": 1},
            }
        },
    )
    assert isinstance(cost, st.CostBased)
    assert cost.price_table == {"m": (1e-6, 2e-6), "n": (0.0, 1.0)}
    # Arguments of another strategy are ignored, as LiteLLM does.
    assert isinstance(st.make_strategy("least-busy", {"ttl": 5}), st.LeastBusy)


def test_make_strategy_rejects_unknown_names_and_arguments() -> None:
    with pytest.raises(ValueError, match="simple-shuffle") as e:
        st.make_strategy("round-robin")
    for name in st.STRATEGY_NAMES:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="tll"):
        st.make_strategy("latency-based-routing", {"tll": 60})
    with pytest.raises(ValueError, match="number"):
        st.make_strategy("latency-based-routing", {"ttl": "soon"})
    with pytest.raises(ValueError, match="price_table"):
        st.make_strategy("cost-based-routing", {"price_table": {"m": "cheap"}})


def test_strategies_work_with_config_deployments() -> None:
    from gatewaykit.config import Deployment

    deps = [
        Deployment(
            index=i,
            model_name="g",
            litellm_params={"model": "openai/m"},
            id=f"d{i}",
            model="openai/m",
            weight=w,
        )
        for i, w in enumerate((None, 2.0))
    ]
    for name in st.STRATEGY_NAMES:
        assert pick(st.make_strategy(name), deps) in deps
    assert st.by_order(st.by_tags(deps, (), enabled=True)) == deps
