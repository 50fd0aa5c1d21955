"""Which deployment serves a call: admission filters, then a strategy's pick.

The router narrows a model group in two steps, both pure functions of their inputs:

1. **filters** drop deployments that cannot take this call (:func:`by_tags`,
   :func:`by_capabilities`, :func:`by_context_window`, :func:`by_headroom`), then :func:`by_order`
   keeps the best priority among the ones left;
2. a :class:`Strategy` picks one of the survivors.

Semantics follow LiteLLM's Router where they are sound, with its known quirks fixed:

- ``simple-shuffle`` weights by ``weight`` whenever *any* deployment has one (LiteLLM looks only at
  the first deployment, so weighting switches on and off with the filter's output order);
- ``order`` works without a separate switch (LiteLLM needs ``enable_pre_call_checks``), and because
  it is applied to *available* deployments, order 2 takes over while order 1 cools down;
- ``latency-based-routing`` explores deployments it has no fresh sample for, so a new or
  recovered deployment gets measured instead of being judged on a stale (or missing) number.

This module is on the hot path of every call: no I/O, no locks, no allocations beyond a few small
lists. A pick among three deployments costs a few microseconds.

Example::

    deps = by_order(by_headroom(by_capabilities(group, needs), states, now, tokens))
    dep = make_strategy("least-busy").pick(deps, states, rng=rng, now=now)
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from gatewaykit.routing.store import WINDOW_S, DeploymentState

__all__ = [
    "STRATEGY_NAMES",
    "CostBased",
    "DeploymentLike",
    "LatencyBased",
    "LeastBusy",
    "SimpleShuffle",
    "Strategy",
    "UsageBased",
    "by_capabilities",
    "by_context_window",
    "by_headroom",
    "by_order",
    "by_tags",
    "by_tags_explained",
    "make_strategy",
]


class DeploymentLike(Protocol):
    """The attributes of a deployment that routing reads (``config.Deployment`` has them all)."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def rpm(self) -> int | None: ...
    @property
    def tpm(self) -> int | None: ...
    @property
    def weight(self) -> float | None: ...
    @property
    def order(self) -> int | None: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def max_input_tokens(self) -> int | None: ...
    @property
    def input_cost_per_token(self) -> float | None: ...
    @property
    def output_cost_per_token(self) -> float | None: ...
    @property
    def max_parallel_requests(self) -> int | None: ...
    @property
    def supports_function_calling(self) -> bool | None: ...
    @property
    def supports_vision(self) -> bool | None: ...
    @property
    def supports_response_schema(self) -> bool | None: ...


D = TypeVar("D", bound=DeploymentLike)

_NO_STATE = DeploymentState()
"""Stands in for a deployment the store has not seen yet (never mutated)."""

DEFAULT_TAG = "default"
"""A deployment carrying this tag serves requests without tags (LiteLLM's rule)."""


# --------------------------------------------------------------------------------------------
# Admission filters: (deployments, ...) -> the ones that may take this call, in input order.


def by_tags(deps: Iterable[D], request_tags: Sequence[str], *, enabled: bool) -> list[D]:
    """LiteLLM tag routing (``router_settings.enable_tag_filtering``).

    A tagged request goes to deployments sharing any of its tags; when none does, to the
    deployments tagged ``"default"``; when there are none of those either, nowhere (an empty
    list: the router reports the group as unavailable). An untagged request goes to the
    ``"default"``-tagged deployments when the group has some, else to all of them. Disabled: no
    filtering. Use :func:`by_tags_explained` to learn why a deployment was dropped.

    Example::

        by_tags(group, ("paid",), enabled=True)   # the deployments tagged "paid"
    """
    deps = list(deps)
    if not enabled:
        return deps
    if request_tags:
        matched = [d for d in deps if _shares_tag(d.tags, request_tags)]
        if matched:
            return matched
    defaults = [d for d in deps if DEFAULT_TAG in d.tags]
    if request_tags or defaults:
        return defaults
    return deps


def by_tags_explained(
    deps: Iterable[D], request_tags: Sequence[str], *, enabled: bool
) -> tuple[list[D], dict[str, str]]:
    """:func:`by_tags`, plus why each dropped deployment was dropped (by deployment id).

    Off the hot path: call it when a request ends up with no deployment and the error should say
    which tag rule excluded what.

    Example::

        kept, why = by_tags_explained(group, ("paid",), enabled=True)
        why["dep-free"]   # "tags ['free'] share none of the request's tags ['paid']"
    """
    deps = list(deps)
    kept = by_tags(deps, request_tags, enabled=enabled)
    kept_ids = {d.id for d in kept}
    reasons: dict[str, str] = {}
    for d in deps:
        if d.id in kept_ids:
            continue
        if request_tags:
            reasons[d.id] = (
                f"tags {list(d.tags)} share none of the request's tags {list(request_tags)}"
            )
        else:
            reasons[d.id] = (
                f"untagged requests go to the {DEFAULT_TAG!r}-tagged deployments "
                f"(this one has {list(d.tags)})"
            )
    return kept, reasons


def _shares_tag(dep_tags: tuple[str, ...], request_tags: Sequence[str]) -> bool:
    # A plain loop: any(<generator>) would allocate a generator per deployment per call.
    for t in dep_tags:  # noqa: SIM110
        if t in request_tags:
            return True
    return False


CAPABILITY_NEEDS = frozenset({"tools", "vision", "json_schema"})
"""What a request may need from a deployment (see :func:`by_capabilities`)."""


def by_capabilities(deps: Iterable[D], needs: frozenset[str]) -> list[D]:
    """Drop deployments known to lack something the request needs.

    ``needs`` is a subset of :data:`CAPABILITY_NEEDS`: ``"tools"`` (``supports_function_calling``),
    ``"vision"`` (``supports_vision``), ``"json_schema"`` (``supports_response_schema``). Only an
    explicit ``False`` excludes: ``None`` means unknown, and an unknown deployment is given the
    chance rather than leaving a group empty because its ``model_info`` is incomplete.

    Example::

        by_capabilities(group, frozenset({"tools"}))
    """
    if not needs:
        return list(deps)
    if not needs <= CAPABILITY_NEEDS:
        raise ValueError(
            f"unknown capability need(s) {sorted(needs - CAPABILITY_NEEDS)}; "
            f"use {sorted(CAPABILITY_NEEDS)}"
        )
    tools = "tools" in needs
    vision = "vision" in needs
    schema = "json_schema" in needs
    return [
        d
        for d in deps
        if not (
            (tools and d.supports_function_calling is False)
            or (vision and d.supports_vision is False)
            or (schema and d.supports_response_schema is False)
        )
    ]


def by_context_window(deps: Iterable[D], input_tokens: int) -> list[D]:
    """Drop deployments whose ``max_input_tokens`` is set and smaller than the prompt.

    Example::

        by_context_window(group, 150_000)   # only the long-context deployments
    """
    return [d for d in deps if d.max_input_tokens is None or d.max_input_tokens >= input_tokens]


def by_order(deps: Iterable[D]) -> list[D]:
    """Keep only the deployments of the best (lowest) ``order``; ``None`` ranks after any order.

    Apply it last, to the deployments that are available right now: when every order-1
    deployment is cooling down or full, order 2 takes over, with no separate switch.

    Example::

        by_order(available)   # [primary] while it is healthy, then [secondary]
    """
    deps = list(deps)
    best: int | None = None
    for d in deps:
        o = d.order
        if o is not None and (best is None or o < best):
            best = o
    if best is None:
        return deps
    return [d for d in deps if d.order == best]


def by_headroom(
    deps: Iterable[D], states: Mapping[str, DeploymentState], now: float, tokens: int = 0
) -> list[D]:
    """Drop deployments that cannot take one more call now: rpm or tpm of the current window
    would be exceeded, or ``max_parallel_requests`` calls are already in flight.

    Counters of a window that is over count as zero (the store rolls them on its next write).
    As in :meth:`InMemoryStore.acquire`, a prompt larger than the whole tpm still gets through
    an empty window, otherwise it could never be served. This is a cheap pre-check on a possibly
    stale view; the store's ``acquire`` is the atomic check that reserves.

    Example::

        by_headroom(group, store.view(ids, now), now, tokens=1200)
    """
    out: list[D] = []
    for d in deps:
        s = states.get(d.id, _NO_STATE)
        mp = d.max_parallel_requests
        if mp is not None and s.in_flight >= mp:
            continue
        if now - s.window_start < WINDOW_S:
            if d.rpm is not None and s.rpm_used + 1 > d.rpm:
                continue
            if d.tpm is not None and s.tpm_used > 0 and s.tpm_used + tokens > d.tpm:
                continue
        elif d.rpm is not None and d.rpm < 1:
            continue
        out.append(d)
    return out


# --------------------------------------------------------------------------------------------
# Strategies


class Strategy(Protocol):
    """Picks one deployment among admitted ones. ``deps`` is never empty.

    Implementations hold configuration only; per-deployment facts come from ``states`` (the
    store's view), so one instance serves concurrent requests. ``rng`` makes picks reproducible
    in tests.

    Example::

        class Always:
            def pick(self, deps, states, *, rng, stream=False, input_tokens=0, now):
                return deps[0]
    """

    def pick(
        self,
        deps: Sequence[D],
        states: Mapping[str, DeploymentState],
        *,
        rng: random.Random,
        stream: bool = False,
        input_tokens: int = 0,
        now: float,
    ) -> D: ...


def _check(deps: Sequence[Any]) -> None:
    if not deps:
        raise ValueError("a strategy needs at least one deployment to pick from")


class SimpleShuffle:
    """Weighted random choice: LiteLLM's default ``simple-shuffle``, without its first-item quirk.

    Weights come from ``weight`` if *any* deployment has one (a deployment without it counts 1);
    else from ``rpm`` if any has one, else from ``tpm``; a deployment missing the rpm/tpm figure
    counts as the mean of the others (it has no known limit, so it gets an average share). No
    figures at all, or all zero: uniform. A ``weight`` of 0 takes a deployment out of rotation
    while others have weight.

    Example::

        SimpleShuffle().pick(deps, states, rng=random.Random(0), now=time.monotonic())
    """

    name: ClassVar[str] = "simple-shuffle"

    def pick(
        self,
        deps: Sequence[D],
        states: Mapping[str, DeploymentState],
        *,
        rng: random.Random,
        stream: bool = False,
        input_tokens: int = 0,
        now: float,
    ) -> D:
        n = len(deps)
        if n == 1:
            return deps[0]
        _check(deps)
        weights = _shuffle_weights(deps)
        if weights is None:
            return deps[rng.randrange(n)]
        total = 0.0
        for w in weights:
            total += w
        if total <= 0.0:
            return deps[rng.randrange(n)]
        r = rng.random() * total
        last = 0
        for i, w in enumerate(weights):
            if w > 0.0:
                r -= w
                last = i
                if r < 0.0:
                    return deps[i]
        return deps[last]  # float rounding left r at ~0: the last deployment with weight


def _shuffle_weights(deps: Sequence[DeploymentLike]) -> list[float] | None:
    for d in deps:
        if d.weight is not None:
            return [1.0 if x.weight is None else max(0.0, float(x.weight)) for x in deps]
    for d in deps:
        if d.rpm is not None:
            return _with_mean([x.rpm for x in deps])
    for d in deps:
        if d.tpm is not None:
            return _with_mean([x.tpm for x in deps])
    return None


def _with_mean(values: list[int | None]) -> list[float]:
    known = [max(0.0, float(v)) for v in values if v is not None]
    mean = sum(known) / len(known)
    return [mean if v is None else max(0.0, float(v)) for v in values]


class LeastBusy:
    """Fewest calls in flight (LiteLLM's ``least-busy``); ties broken at random.

    Example::

        LeastBusy().pick(deps, store.view(ids, now), rng=rng, now=now)
    """

    name: ClassVar[str] = "least-busy"

    def pick(
        self,
        deps: Sequence[D],
        states: Mapping[str, DeploymentState],
        *,
        rng: random.Random,
        stream: bool = False,
        input_tokens: int = 0,
        now: float,
    ) -> D:
        if len(deps) == 1:
            return deps[0]
        _check(deps)
        best = deps[0]
        best_v = states.get(best.id, _NO_STATE).in_flight
        ties = 1
        for d in deps[1:]:
            v = states.get(d.id, _NO_STATE).in_flight
            if v < best_v:
                best, best_v, ties = d, v, 1
            elif v == best_v:
                ties += 1
                if rng.randrange(ties) == 0:  # reservoir sampling: uniform among the ties
                    best = d
        return best


class LatencyBased:
    """Lowest moving-average latency (LiteLLM's ``latency-based-routing``).

    For streams the time to first token is compared when the deployment has one. A deployment
    with no sample, or a sample older than ``ttl`` seconds, is *explored* first: picked at random
    among such deployments that have no call in flight, so a new or recovered deployment gets
    measured (one probe at a time) instead of waiting forever behind a stale figure. Otherwise the
    pick is random among deployments within ``(1 + lowest_latency_buffer) * best``, which spreads
    load across near-equals.

    Example::

        LatencyBased(ttl=600, lowest_latency_buffer=0.2).pick(deps, states, rng=rng, now=now)
    """

    name: ClassVar[str] = "latency-based-routing"
    __slots__ = ("lowest_latency_buffer", "ttl")

    def __init__(self, ttl: float = 3600.0, lowest_latency_buffer: float = 0.0) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        if not lowest_latency_buffer >= 0:
            raise ValueError(f"lowest_latency_buffer must be >= 0, got {lowest_latency_buffer!r}")
        self.ttl = float(ttl)
        self.lowest_latency_buffer = float(lowest_latency_buffer)

    def __repr__(self) -> str:
        return f"LatencyBased(ttl={self.ttl}, lowest_latency_buffer={self.lowest_latency_buffer})"

    def pick(
        self,
        deps: Sequence[D],
        states: Mapping[str, DeploymentState],
        *,
        rng: random.Random,
        stream: bool = False,
        input_tokens: int = 0,
        now: float,
    ) -> D:
        if len(deps) == 1:
            return deps[0]
        _check(deps)
        lat: list[float | None] = []
        idle_unmeasured = 0
        unmeasured = 0
        best = float("inf")
        for d in deps:
            s = states.get(d.id, _NO_STATE)
            v = s.ttft_s if stream and s.ttft_s is not None else s.latency_s
            if v is None or now - s.latency_at > self.ttl:
                lat.append(None)
                unmeasured += 1
                if s.in_flight == 0:
                    idle_unmeasured += 1
            else:
                lat.append(v)
                if v < best:
                    best = v
        if idle_unmeasured or (unmeasured and best == float("inf")):
            # Explore: an idle unmeasured deployment; all unmeasured ones if none is measured.
            k = rng.randrange(idle_unmeasured or unmeasured)
            for i, d in enumerate(deps):
                if lat[i] is None and (
                    not idle_unmeasured or states.get(d.id, _NO_STATE).in_flight == 0
                ):
                    if k == 0:
                        return d
                    k -= 1
        limit = best * (1.0 + self.lowest_latency_buffer)
        chosen = deps[0]
        seen = 0
        for i, d in enumerate(deps):
            v = lat[i]
            if v is not None and v <= limit:
                seen += 1
                if seen == 1 or rng.randrange(seen) == 0:
                    chosen = d
        return chosen


UNKNOWN_PRICE = 1.0
"""USD per token for a deployment with no known price (LiteLLM costs unknown models at $1)."""


class CostBased:
    """Cheapest deployment (LiteLLM's ``cost-based-routing``); random among equal prices.

    Price of a deployment = input + output USD per token, each taken from the deployment
    (``input_cost_per_token`` / ``output_cost_per_token``), else from ``price_table`` by the
    deployment's ``model`` (also tried without its ``provider/`` prefix), else
    :data:`UNKNOWN_PRICE` — so an unpriced deployment is used only when nothing priced is left.

    Example::

        CostBased({"gpt-4o-mini": (1.5e-7, 6e-7)}).pick(deps, states, rng=rng, now=now)
    """

    name: ClassVar[str] = "cost-based-routing"
    __slots__ = ("price_table",)

    def __init__(self, price_table: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.price_table: Mapping[str, tuple[float, float]] = dict(price_table or {})

    def __repr__(self) -> str:
        return f"CostBased(price_table=<{len(self.price_table)} models>)"

    def price(self, dep: DeploymentLike) -> float:
        """Input + output USD per token of ``dep`` (what the pick compares)."""
        cin = dep.input_cost_per_token
        cout = dep.output_cost_per_token
        if cin is None or cout is None:
            row = self.price_table.get(dep.model)
            if row is None and "/" in dep.model:
                row = self.price_table.get(dep.model.split("/", 1)[1])
            if cin is None:
                cin = row[0] if row is not None else UNKNOWN_PRICE
            if cout is None:
                cout = row[1] if row is not None else UNKNOWN_PRICE
        return cin + cout

    def pick(
        self,
        deps: Sequence[D],
        states: Mapping[str, DeploymentState],
        *,
        rng: random.Random,
        stream: bool = False,
        input_tokens: int = 0,
        now: float,
    ) -> D:
        if len(deps) == 1:
            return deps[0]
        _check(deps)
        best = deps[0]
        best_v = self.price(best)
        ties = 1
        for d in deps[1:]:
            v = self.price(d)
            if v < best_v:
                best, best_v, ties = d, v, 1
            elif v == best_v:
                ties += 1
                if rng.randrange(ties) == 0:
                    best = d
        return best


class UsageBased:
    """Most rpm/tpm headroom in the current window (LiteLLM's ``usage-based-routing`` and ``-v2``).

    Utilisation is the larger of (rpm used + 1) / rpm and (tpm used + this prompt) / tpm — the
    fraction the deployment would be at after taking the call, so a big deployment is preferred
    over a small one that is equally idle. A deployment without a limit is measured against the
    mean limit of its peers; when no deployment has limits, the one with the fewest requests this
    window wins. Ties broken at random. (Admission by :func:`by_headroom` and the store's atomic
    ``acquire`` enforce the limits themselves; this only ranks.)

    Example::

        UsageBased().pick(deps, store.view(ids, now), rng=rng, input_tokens=800, now=now)
    """

    name: ClassVar[str] = "usage-based-routing"

    def pick(
        self,
        deps: Sequence[D],
        states: Mapping[str, DeploymentState],
        *,
        rng: random.Random,
        stream: bool = False,
        input_tokens: int = 0,
        now: float,
    ) -> D:
        if len(deps) == 1:
            return deps[0]
        _check(deps)
        rpm_sum = tpm_sum = 0.0
        rpm_n = tpm_n = 0
        for d in deps:
            if d.rpm is not None:
                rpm_sum += d.rpm
                rpm_n += 1
            if d.tpm is not None:
                tpm_sum += d.tpm
                tpm_n += 1
        rpm_mean = rpm_sum / rpm_n if rpm_n else None
        tpm_mean = tpm_sum / tpm_n if tpm_n else None
        best = deps[0]
        best_v = 0.0
        ties = 0
        for d in deps:
            s = states.get(d.id, _NO_STATE)
            fresh = now - s.window_start < WINDOW_S
            rpm_used = s.rpm_used if fresh else 0
            if rpm_mean is None and tpm_mean is None:
                v = float(rpm_used)
            else:
                v = 0.0
                rpm = d.rpm if d.rpm is not None else rpm_mean
                if rpm is not None:
                    v = (rpm_used + 1) / rpm if rpm > 0 else float("inf")
                tpm = d.tpm if d.tpm is not None else tpm_mean
                if tpm is not None:
                    tpm_used = s.tpm_used if fresh else 0
                    u = (tpm_used + input_tokens) / tpm if tpm > 0 else float("inf")
                    if u > v:
                        v = u
            if ties == 0 or v < best_v:
                best, best_v, ties = d, v, 1
            elif v == best_v:
                ties += 1
                if rng.randrange(ties) == 0:
                    best = d
        return best


_FACTORIES: dict[str, type[Any]] = {
    "simple-shuffle": SimpleShuffle,
    "least-busy": LeastBusy,
    "latency-based-routing": LatencyBased,
    "cost-based-routing": CostBased,
    "usage-based-routing": UsageBased,
    "usage-based-routing-v2": UsageBased,
}
STRATEGY_NAMES: tuple[str, ...] = tuple(_FACTORIES)
"""LiteLLM's ``routing_strategy`` names that :func:`make_strategy` accepts."""

_ARG_NAMES = frozenset({"ttl", "lowest_latency_buffer", "max_latency_list_size", "price_table"})


def make_strategy(name: str, args: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy for a LiteLLM ``routing_strategy`` name and ``routing_strategy_args``.

    Arguments: ``ttl`` and ``lowest_latency_buffer`` (latency), ``price_table`` (cost,
    ``{model: (input, output) USD per token}``). Arguments another strategy uses are ignored, as
    LiteLLM does, so switching strategies does not require editing the args; LiteLLM's
    ``max_latency_list_size`` is accepted and ignored (latency here is a moving average, not a
    list). Unknown names or arguments raise ``ValueError``.

    Example::

        make_strategy("latency-based-routing", {"ttl": 600, "lowest_latency_buffer": 0.1})
    """
    key = name.strip().lower()
    if key not in _FACTORIES:
        raise ValueError(
            f"unknown routing strategy {name!r}; use one of {', '.join(STRATEGY_NAMES)}"
        )
    args = dict(args or {})
    unknown = sorted(set(args) - _ARG_NAMES)
    if unknown:
        raise ValueError(
            f"unknown routing_strategy_args {unknown}; known: {', '.join(sorted(_ARG_NAMES))}"
        )
    if key == "latency-based-routing":
        return LatencyBased(
            ttl=_number(args, "ttl", 3600.0),
            lowest_latency_buffer=_number(args, "lowest_latency_buffer", 0.0),
        )
    if key == "cost-based-routing":
        table = args.get("price_table")
        if table is not None and not isinstance(table, Mapping):
            raise ValueError("price_table must map model -> (input, output) USD per token")
        return CostBased(_price_table(table) if table is not None else None)
    strategy: Strategy = _FACTORIES[key]()
    return strategy


def _number(args: Mapping[str, Any], key: str, default: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"routing_strategy_args.{key} must be a number, got {value!r}")
    return float(value)


def _price_table(table: Mapping[Any, Any]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for model, row in table.items():
        if isinstance(row, Mapping):
            row = (row.get("input_cost_per_token"), row.get("output_cost_per_token"))
        try:
            cin, cout = row
            out[str(model)] = (float(cin), float(cout))
        except (TypeError, ValueError):
            raise ValueError(
                f"price_table[{model!r}] must be (input, output) USD per token, got {row!r}"
            ) from None
    return out
