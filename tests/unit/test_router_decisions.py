"""Routing decisions of the compiled router graph, as properties over generated model groups,
failure scripts and fallback graphs, against a MockGateway upstream.

Each example builds a config (1-4 groups of 1-4 deployments with random ``order``, ``weight``,
tags and capabilities, and a random, possibly cyclic, fallback graph), scripts every deployment on
the mock (one outcome per call, the last one repeating), sends a request through
:class:`RouterChatModel` and checks ``response_metadata["routing"]`` (or the error's ``routing``)
against the documented rules and against what the mock actually received.

The policies keep those rules exact: cooldowns outlast every request, a health failure (5xx,
timeout) needs 50 in a row to cool a deployment, so within a request only a 401/403/404, or a 429
in a group of two or more, takes a deployment out at once; backoff is about a millisecond and
the deadline is far away unless the test is about the deadline.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, example, given, note, settings
from hypothesis import strategies as hs
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable

from gatewaykit import (
    CooldownPolicy,
    GatewayConfig,
    GatewayError,
    RetryPolicy,
    RouterChatModel,
    RouterEngine,
)
from gatewaykit.routing.transport import LeanTransport
from gatewaykit.testing import Behavior, MockGateway

# --------------------------------------------------------------------------------------------
# What the mock answers, and the error kind the router must record for it

OUTCOMES: dict[str, tuple[Behavior, str | None]] = {
    "ok": (Behavior(), None),
    "server": (Behavior(status=500), "upstream"),
    "unavailable": (Behavior(status=503), "upstream"),
    "rate_limit": (Behavior(error="rate_limit"), "rate_limited"),
    "bad_request": (Behavior(error="bad_request"), "invalid_request"),
    "auth": (Behavior(error="auth"), "authentication"),
    "not_found": (Behavior(status=404), "not_found"),
    "access_denied": (Behavior(error="model_not_allowed"), "access_denied"),
    "context_window": (Behavior(error="context_window"), "context_window"),
    "content_policy": (Behavior(error="content_policy"), "content_policy"),
    "guardrail": (Behavior(error="guardrail_blocked"), "guardrail"),
}
RETRYABLE_OUTCOMES = ("server", "unavailable", "rate_limit")
CONDEMNING_OUTCOMES = ("auth", "not_found", "access_denied")
"""401/403/404: the deployment itself is wrong; the router hops to another one of the group."""
DETERMINISTIC_OUTCOMES = (
    "bad_request",
    "auth",
    "not_found",
    "access_denied",
    "context_window",
    "content_policy",
    "guardrail",
)

RETRYABLE = frozenset({"upstream", "rate_limited", "timeout", "connection"})
"""Kinds retried in the same group, up to ``num_retries`` times."""
PER_DEPLOYMENT = frozenset({"authentication", "not_found", "access_denied"})
"""Kinds that condemn one deployment (cooled at once); the group's other deployments may serve."""
LEAVE_GROUP = frozenset({"invalid_request", "context_window", "content_policy", "guardrail"})
"""Deterministic kinds: the group is left at once (the same call would fail the same way)."""
NO_FALLBACK = frozenset({"guardrail"})
"""Kinds no other group can fix: the request ends."""
FallbackTable = dict[str, tuple[str, ...]]
CHAIN_KIND = {"context_window": "context_window", "content_policy": "content_policy"}

TAG_SETS = ((), ("eu",), ("us",), ("default",), ("eu", "default"), ("eu", "us"))
LIMITS = (6, 50, 500, 5000)
"""``max_input_tokens`` values, far from every prompt size below (14, 104 and 1004 tokens)."""
PROMPT_CHARS = (40, 400, 4000)

FAR = 30.0
"""Deadline (seconds) of requests that must never run into it."""
COOLED_FOR = 600.0
STICKY = CooldownPolicy(cooldown_time=60.0, min_requests=50)
"""Cooldowns outlast a test; only 401/403/404 (and 429 in a group of 2+) cool within a request."""

LOOKUP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up in the dictionary.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
        },
    },
}


def fast_retry(num_retries: int) -> RetryPolicy:
    return RetryPolicy(
        num_retries=num_retries,
        initial_backoff=0.001,
        max_backoff=0.002,
        jitter=0.0,
        retry_after_cap=0.0,
    )


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Dep:
    """One generated deployment; its id is also the model name the mock is scripted under."""

    id: str
    group: str
    script: tuple[str, ...]
    order: int | None = None
    weight: float | None = None
    tags: tuple[str, ...] = ()
    tools: bool | None = None
    max_input_tokens: int | None = None
    latency_ms: float = 0.0
    cooled: bool = False

    def entry(self, base_url: str) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.id, "api_base": base_url, "api_key": "sk-test"}
        if self.order is not None:
            params["order"] = self.order
        if self.weight is not None:
            params["weight"] = self.weight
        if self.tags:
            params["tags"] = list(self.tags)
        info: dict[str, Any] = {"id": self.id}
        if self.tools is not None:
            info["supports_function_calling"] = self.tools
        if self.max_input_tokens is not None:
            info["max_input_tokens"] = self.max_input_tokens
        return {"model_name": self.group, "litellm_params": params, "model_info": info}

    def behaviors(self) -> list[Behavior]:
        return [
            dataclasses.replace(OUTCOMES[name][0], latency_ms=self.latency_ms)
            for name in self.script
        ]

    def kind_of_call(self, k: int) -> str | None:
        """The error kind of this deployment's k-th call (0-based); None for an answer."""
        return OUTCOMES[self.script[min(k, len(self.script) - 1)]][1]


@dataclass(frozen=True)
class Scenario:
    deps: tuple[Dep, ...]
    num_retries: int = 2
    max_attempts: int = 20
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    content_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_fallbacks: tuple[str, ...] = ()
    tag_filtering: bool = False
    request_tags: tuple[str, ...] = ()
    tools: bool = False
    prompt_chars: int = 12
    start: str = "g0"

    @property
    def groups(self) -> dict[str, list[Dep]]:
        out: dict[str, list[Dep]] = {}
        for d in self.deps:
            out.setdefault(d.group, []).append(d)
        return out

    @property
    def by_id(self) -> dict[str, Dep]:
        return {d.id: d for d in self.deps}

    @property
    def prompt_tokens(self) -> int:
        """The documented estimate: 4 characters a token, plus 4 tokens for the one message."""
        return self.prompt_chars // 4 + 4

    def config(self, base_url: str) -> dict[str, Any]:
        def table(t: Mapping[str, tuple[str, ...]]) -> list[dict[str, list[str]]]:
            return [{group: list(targets)} for group, targets in t.items()]

        return {
            "model_list": [d.entry(base_url) for d in self.deps],
            "router_settings": {
                "enable_tag_filtering": self.tag_filtering,
                "fallbacks": table(self.fallbacks),
                "context_window_fallbacks": table(self.context_fallbacks),
                "content_policy_fallbacks": table(self.content_fallbacks),
                "default_fallbacks": list(self.default_fallbacks),
            },
        }

    def summary(self) -> str:
        """A compact description for failure reports."""
        lines = [
            f"start={self.start} num_retries={self.num_retries} max_attempts={self.max_attempts} "
            f"tag_filtering={self.tag_filtering} request_tags={list(self.request_tags)} "
            f"tools={self.tools} prompt_tokens~{self.prompt_tokens}"
        ]
        for d in self.deps:
            extras = {
                k: v
                for k, v in (
                    ("order", d.order),
                    ("weight", d.weight),
                    ("tags", list(d.tags) or None),
                    ("supports_function_calling", d.tools),
                    ("max_input_tokens", d.max_input_tokens),
                    ("latency_ms", d.latency_ms or None),
                    ("cooled", d.cooled or None),
                )
                if v is not None
            }
            lines.append(f"  {d.group}/{d.id}: {list(d.script)} {extras}")
        for name, t in (
            ("fallbacks", self.fallbacks),
            ("context_window_fallbacks", self.context_fallbacks),
            ("content_policy_fallbacks", self.content_fallbacks),
        ):
            if t:
                lines.append(f"  {name}: {dict(t)}")
        if self.default_fallbacks:
            lines.append(f"  default_fallbacks: {list(self.default_fallbacks)}")
        return "\n".join(lines)

    def chain(self, group: str, kind: str) -> tuple[str, ...]:
        """LiteLLM's lookup: the kind's own table, then ``fallbacks``, each by group then ``*``;
        else ``default_fallbacks``; never the group itself."""
        tables: list[Mapping[str, tuple[str, ...]]] = []
        if kind == "context_window":
            tables.append(self.context_fallbacks)
        elif kind == "content_policy":
            tables.append(self.content_fallbacks)
        tables.append(self.fallbacks)
        for t in tables:
            for key in (group, "*"):
                if key in t:
                    return tuple(x for x in t[key] if x != group)
        return tuple(x for x in self.default_fallbacks if x != group)


def dep(id_: str, group: str, *script: str, **kw: Any) -> Dep:
    return Dep(id=id_, group=group, script=script or ("ok",), **kw)


def fallback_tables(names: Sequence[str], *, wildcard: bool) -> hs.SearchStrategy[FallbackTable]:
    """Random, possibly cyclic, fallback entries over ``names`` (never a group to itself)."""
    entries = [
        hs.none() | hs.lists(hs.sampled_from([x for x in names if x != g]), min_size=1, unique=True)
        for g in names
        if len(names) > 1
    ]
    star: hs.SearchStrategy[list[str] | None] = hs.none()
    if wildcard:  # a "*" entry one time in three
        star = hs.one_of(
            hs.none(), hs.none(), hs.lists(hs.sampled_from(names), min_size=1, unique=True)
        )

    def table(drawn: tuple[list[str] | None, ...], everyone: list[str] | None) -> FallbackTable:
        out = {g: tuple(t) for g, t in zip(names, drawn, strict=False) if t is not None}
        if everyone is not None:
            out["*"] = tuple(everyone)
        return out

    return hs.builds(table, hs.tuples(*entries), star)


def scenarios(
    *,
    outcomes: Sequence[str] = tuple(OUTCOMES),
    filters: bool = True,
    limits: bool = False,
    latencies: Sequence[float] = (0.0,),
    cooled: bool = True,
    max_groups: int = 4,
    max_retries: int = 3,
    max_attempts: tuple[int, int] = (1, 12),
) -> hs.SearchStrategy[Scenario]:
    """Scenarios of 1 to ``max_groups`` groups of 1-4 deployments each (ids ``g<i>d<j>``).

    Strategies are built here once, not at every draw: building them dominates otherwise.
    """
    no: hs.SearchStrategy[Any] = hs.just(None)
    deployment = hs.tuples(
        hs.lists(hs.sampled_from(outcomes), min_size=1, max_size=3).map(tuple),
        hs.sampled_from([None, 1, 2, 3]),
        hs.sampled_from([None, 0.5, 1.0, 3.0]),
        hs.sampled_from(TAG_SETS) if filters else hs.just(()),
        hs.sampled_from([None, True, False]) if filters else no,
        hs.sampled_from([None, *LIMITS]) if limits else no,
        hs.sampled_from(latencies),
        hs.sampled_from([False, False, False, True]) if cooled else hs.just(False),
    )
    # With limits, a group either has none or sets them on its deployments: prompts then meet
    # limited groups at any depth of the fallback graph.
    group = hs.tuples(
        hs.booleans() if limits else hs.just(False), hs.lists(deployment, min_size=1, max_size=4)
    )
    by_size = {
        n: hs.tuples(
            hs.tuples(*[group] * n),
            fallback_tables(names, wildcard=True),
            fallback_tables(names, wildcard=False),
            fallback_tables(names, wildcard=False),
            hs.lists(hs.sampled_from(names), max_size=2, unique=True).map(tuple),
        )
        for n in range(1, max_groups + 1)
        for names in [[f"g{i}" for i in range(n)]]
    }
    request = hs.tuples(
        hs.integers(0, max_retries),
        hs.integers(*max_attempts),
        hs.booleans() if filters else hs.just(False),
        hs.sampled_from([(), ("eu",), ("us",), ("eu", "us")]) if filters else hs.just(()),
        hs.booleans() if filters else hs.just(False),
        hs.sampled_from(PROMPT_CHARS) if limits else hs.just(12),
    )

    def scenario(
        graph: tuple[
            tuple[tuple[bool, list[tuple[Any, ...]]], ...],
            FallbackTable,
            FallbackTable,
            FallbackTable,
            tuple[str, ...],
        ],
        req: tuple[int, int, bool, tuple[str, ...], bool, int],
    ) -> Scenario:
        groups, general, context, content, defaults = graph
        deps = tuple(
            Dep(f"g{i}d{j}", f"g{i}", *fields)
            if limited
            else dataclasses.replace(Dep(f"g{i}d{j}", f"g{i}", *fields), max_input_tokens=None)
            for i, (limited, members) in enumerate(groups)
            for j, fields in enumerate(members)
        )
        retries, budget, tag_filtering, tags, tools, chars = req
        return Scenario(
            deps=deps,
            num_retries=retries,
            max_attempts=budget,
            fallbacks=general,
            context_fallbacks=context,
            content_fallbacks=content,
            default_fallbacks=defaults,
            tag_filtering=tag_filtering,
            request_tags=tags,
            tools=tools,
            prompt_chars=chars,
        )

    sizes = hs.integers(1, max_groups).flatmap(lambda n: by_size[n])
    return hs.builds(scenario, sizes, request)


# --------------------------------------------------------------------------------------------
# Running a scenario


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def transport(gw: MockGateway) -> Iterator[LeanTransport]:
    """One HTTP pool for every example (a new one per engine would dominate the runtime),
    warmed by one call: the first call of a process pays one-off imports and client setup that
    no deadline can bound (the deadline property is about steady state)."""
    lean = LeanTransport()
    warm = Scenario(deps=(Dep("warm-up", "g0", ("ok",)),))
    assert send(build(warm, gw, lean), warm).message is not None
    yield lean
    lean.close()


@dataclass
class Run:
    routing: dict[str, Any]
    message: AIMessage | None
    error: GatewayError | None
    elapsed: float

    @property
    def attempts(self) -> list[dict[str, Any]]:
        attempts: list[dict[str, Any]] = self.routing["attempts"]
        return attempts

    @property
    def entered(self) -> list[str]:
        """Every group the request entered, in order."""
        return [self.routing["model"], *self.routing["fallbacks"]]

    def describe(self) -> str:
        steps = [
            f"{a['group']}/{a['deployment']}:{'ok' if a['ok'] else a['kind']}"
            for a in self.attempts
        ]
        return f"entered {self.entered}, attempts {steps}"


def build(
    sc: Scenario,
    gw: MockGateway,
    transport: LeanTransport,
    *,
    deadline_s: float = FAR,
    cooldown: CooldownPolicy = STICKY,
) -> RouterChatModel:
    gw.reset()
    for d in sc.deps:
        gw.script(d.id, d.behaviors())
    cfg = GatewayConfig.from_dict(sc.config(gw.base_url))
    engine = RouterEngine(
        cfg,
        transport=transport,
        retry=fast_retry(sc.num_retries),
        cooldown=cooldown,
        max_attempts=sc.max_attempts,
        seed=0,
    )
    now = time.monotonic()
    for d in sc.deps:
        if d.cooled:
            engine.store.cool_down(d.id, now + COOLED_FOR, "cooled before the request")
    return RouterChatModel(
        config=cfg,
        model=sc.start,
        engine=engine,
        gateway_tags=list(sc.request_tags),
        deadline_s=deadline_s,
    )


def prompt(chars: int) -> list[BaseMessage]:
    return [HumanMessage(content=("lorem ipsum " * (chars // 12 + 1))[:chars])]


def send(router: RouterChatModel, sc: Scenario) -> Run:
    if currently_in_test_context():
        note(sc.summary())
    llm: Runnable[LanguageModelInput, Any] = (
        router.bind_tools([LOOKUP_TOOL]) if sc.tools else router
    )
    started = time.perf_counter()
    try:
        msg = llm.invoke(prompt(sc.prompt_chars))
    except GatewayError as err:
        elapsed = time.perf_counter() - started
        routing = getattr(err, "routing", None)
        assert isinstance(routing, dict), f"{type(err).__name__} carries no routing: {err}"
        return Run(routing, None, err, elapsed)
    elapsed = time.perf_counter() - started
    assert isinstance(msg, AIMessage)
    return Run(msg.response_metadata["routing"], msg, None, elapsed)


# --------------------------------------------------------------------------------------------
# The documented rules, as a reference to replay a run against


def by_tags(deps: Sequence[Dep], request_tags: Sequence[str]) -> list[Dep]:
    """LiteLLM's tag routing over the deployments still in play: those sharing a request tag,
    else the ``default``-tagged ones; an untagged request goes to ``default``-tagged ones when
    there are some, else anywhere."""
    if request_tags:
        matched = [d for d in deps if set(d.tags) & set(request_tags)]
        if matched:
            return matched
    defaults = [d for d in deps if "default" in d.tags]
    if request_tags or defaults:
        return defaults
    return list(deps)


def admissible(sc: Scenario, group: str, down: set[str]) -> tuple[list[Dep], bool]:
    """Deployments of ``group`` that may take the call now, and whether the prompt's size alone
    left none (which selects the context-window fallbacks)."""
    pool = [d for d in sc.groups[group] if d.id not in down]
    if sc.tag_filtering and pool:
        pool = by_tags(pool, sc.request_tags)
    if sc.tools:
        pool = [d for d in pool if d.tools is not False]
    fits = [d for d in pool if d.max_input_tokens is None or d.max_input_tokens >= sc.prompt_tokens]
    return fits, bool(pool) and not fits


def best_order(deps: Sequence[Dep]) -> list[Dep]:
    orders = [d.order for d in deps if d.order is not None]
    if not orders:
        return list(deps)
    return [d for d in deps if d.order == min(orders)]


def cools_at_once(kind: str, group_size: int) -> bool:
    return kind in PER_DEPLOYMENT or (kind == "rate_limited" and group_size > 1)


def ids(deps: Sequence[Dep]) -> list[str]:
    return [d.id for d in deps]


def replay(sc: Scenario, run: Run) -> None:
    """Walk the recorded attempts with the documented rules; fail at the first wrong decision.

    Per attempt: the deployment is admissible (not cooling down, matching the tags, having the
    capabilities, fitting the prompt), untried in this group if an untried one is admissible, and
    of the best ``order`` among those. After a failure: retry in the group (a condemned
    deployment hops to an untried admissible one for free; a transient error retries up to
    ``num_retries``, at once on another admissible deployment, else on the same one only when
    no fallback group remains), else move to the first group of the error kind's fallback chain
    not yet entered, else stop; always stop at ``max_attempts``.
    """
    attempts = run.attempts
    groups = sc.groups
    down = {d.id for d in sc.deps if d.cooled}
    group, visited, retries, n = sc.start, [sc.start], 0, 0
    tried: list[str] = []
    where = run.describe
    while True:
        pool, too_long = admissible(sc, group, down)
        if pool:
            assert n < len(attempts), (
                f"stopped in {group} although {ids(pool)} could take the call; {where()}"
            )
            a = attempts[n]
            n += 1
            assert a["group"] == group, f"attempt {n} in {a['group']}, expected {group}; {where()}"
            fresh = [d for d in pool if d.id not in tried] or pool
            allowed = ids(best_order(fresh))
            assert a["deployment"] in allowed, (
                f"attempt {n} went to {a['deployment']}, expected one of {allowed} "
                f"(cooled: {sorted(down)}, tried: {tried}); {where()}"
            )
            if a["ok"]:
                assert n == len(attempts), f"attempts after an answer; {where()}"
                assert run.routing["deployment"] == a["deployment"]
                assert run.routing["group"] == group
                assert run.entered == visited, f"expected groups {visited}; {where()}"
                return
            kind = a["kind"]
            if cools_at_once(kind, len(groups[group])):
                down.add(a["deployment"])
            if a["deployment"] not in tried:
                tried.append(a["deployment"])
            if n >= sc.max_attempts:
                break
            if kind in PER_DEPLOYMENT and any(
                d.id not in tried for d in admissible(sc, group, down)[0]
            ):
                continue
            if kind in RETRYABLE and retries < sc.num_retries:
                # Another deployment takes the retry at once; a retry that would have to wait
                # for the same deployment gives way to a fallback group, when one remains.
                others = [d for d in admissible(sc, group, down)[0] if d.id != a["deployment"]]
                chain = sc.chain(group, CHAIN_KIND.get(kind, "general"))
                if others or all(t in visited for t in chain):
                    retries += 1
                    continue
            move = kind
        else:
            move = "context_window" if too_long else "no_deployment"
        chain = () if move in NO_FALLBACK else sc.chain(group, CHAIN_KIND.get(move, "general"))
        target = next((t for t in chain if t not in visited), None)
        if target is None:
            break
        visited.append(target)
        group, tried, retries = target, [], 0
    assert n == len(attempts), f"attempts after the router should have stopped; {where()}"
    assert run.routing["deployment"] is None and run.error is not None
    assert run.entered == visited, f"expected groups {visited}; {where()}"


# --------------------------------------------------------------------------------------------
# Properties

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(sc=scenarios(outcomes=[o for o in OUTCOMES if o not in CONDEMNING_OUTCOMES]))
def test_every_decision_follows_the_routing_rules(
    sc: Scenario, gw: MockGateway, transport: LeanTransport
) -> None:
    """Admission (cooldowns, tags, capabilities), order, untried-first retries, retry budgets
    per group, fallback chains per error kind and the stop conditions, all at once."""
    run = send(build(sc, gw, transport), sc)
    replay(sc, run)


HOP_ONTO_A_TRIED_DEPLOYMENT = Scenario(
    deps=(
        dep("g0d0", "g0", "server", order=1),
        dep("g0d1", "g0", "auth", order=2),
        dep("g0d2", "g0", "ok", order=3, tools=False),
    ),
    num_retries=1,
    tools=True,
)
"""g0d0 fails (500) and takes the one retry, g0d1 answers 401: no deployment able to serve is left
untried (g0d2 cannot call tools), so the request must end; the router calls g0d0 a third time."""


@PROPERTY
@example(sc=HOP_ONTO_A_TRIED_DEPLOYMENT)
@given(sc=scenarios(outcomes=("ok", "server", "rate_limit", *CONDEMNING_OUTCOMES)))
def test_a_condemned_deployment_hops_only_to_one_that_can_serve(
    sc: Scenario, gw: MockGateway, transport: LeanTransport
) -> None:
    """The same rules with 401/403/404 in the scripts: such a failure moves to an untried
    deployment of the group that admission lets through, without spending a retry; when there is
    none, it is handled like any deterministic error."""
    run = send(build(sc, gw, transport), sc)
    replay(sc, run)


@PROPERTY
@given(sc=scenarios())
def test_routing_metadata_records_every_attempt(
    sc: Scenario, gw: MockGateway, transport: LeanTransport
) -> None:
    run = send(build(sc, gw, transport), sc)
    by_id = sc.by_id
    received = {d.id: gw.count(d.id) for d in sc.deps}
    recorded = Counter(a["deployment"] for a in run.attempts)
    assert received == {d.id: recorded[d.id] for d in sc.deps}, run.describe()
    calls: Counter[str] = Counter()
    for a in run.attempts:
        dep = by_id[a["deployment"]]
        assert a["group"] == dep.group
        expected = dep.kind_of_call(calls[dep.id])
        calls[dep.id] += 1
        assert a["ok"] is (expected is None), run.describe()
        if expected is not None:
            assert a["kind"] == expected, run.describe()
            assert isinstance(a["status"], int) and 400 <= a["status"] < 600
            assert a["error"]
        assert a["latency_ms"] >= 0
    total = sum(a["latency_ms"] for a in run.attempts)
    assert run.routing["latency_ms"] >= total - 0.001 * (len(run.attempts) + 1)
    if run.message is not None:
        assert run.attempts and run.attempts[-1]["ok"]
        assert run.routing["deployment"] == run.attempts[-1]["deployment"]
        assert run.routing["group"] == run.attempts[-1]["group"]
    else:
        assert run.error is not None and not any(a["ok"] for a in run.attempts)


@PROPERTY
@given(
    sc=scenarios(
        outcomes=RETRYABLE_OUTCOMES, filters=False, cooled=False, max_retries=6, max_attempts=(1, 6)
    )
)
def test_attempts_never_exceed_the_budget(
    sc: Scenario, gw: MockGateway, transport: LeanTransport
) -> None:
    run = send(build(sc, gw, transport), sc)
    assert run.error is not None
    assert 1 <= len(run.attempts) <= sc.max_attempts, run.describe()
    assert sum(gw.count(d.id) for d in sc.deps) == len(run.attempts)
    per_group = Counter(a["group"] for a in run.attempts)
    # No 401/403/404 here: a group gets its first attempt plus num_retries retries at most.
    assert max(per_group.values()) <= sc.num_retries + 1, run.describe()


@PROPERTY
@given(sc=scenarios(outcomes=("server", "rate_limit", "bad_request", "auth", "context_window")))
def test_no_group_is_entered_twice(sc: Scenario, gw: MockGateway, transport: LeanTransport) -> None:
    run = send(build(sc, gw, transport), sc)
    assert len(set(run.entered)) == len(run.entered), run.describe()
    assert len(run.entered) <= len(sc.groups)
    # Attempts come in one block per group, in the order the groups were entered.
    blocks: list[str] = []
    for a in run.attempts:
        if not blocks or blocks[-1] != a["group"]:
            blocks.append(a["group"])
    assert len(set(blocks)) == len(blocks), run.describe()
    assert [g for g in run.entered if g in blocks] == blocks, run.describe()


@PROPERTY
@given(sc=scenarios(outcomes=("ok", "server", *DETERMINISTIC_OUTCOMES)))
def test_deterministic_errors_are_never_retried(
    sc: Scenario, gw: MockGateway, transport: LeanTransport
) -> None:
    """A 400 (bad request, context window, content policy, guardrail) leaves the group at once;
    a 401/403/404 never calls the same deployment again (another one of the group may serve)."""
    run = send(build(sc, gw, transport), sc)
    for i, a in enumerate(run.attempts):
        later = run.attempts[i + 1 :]
        if a["ok"] or a["kind"] in RETRYABLE:
            continue
        assert all(b["deployment"] != a["deployment"] for b in later), run.describe()
        if a["kind"] in LEAVE_GROUP:
            assert all(b["group"] != a["group"] for b in later), run.describe()
        if a["kind"] in NO_FALLBACK:
            assert not later and run.routing["fallbacks"] == run.entered[1:], run.describe()
            assert run.error is not None and run.error.kind == "guardrail"


@PROPERTY
@given(sc=scenarios(outcomes=("ok", "server", "rate_limit", "auth", "not_found")))
def test_cooled_down_deployments_are_never_called(
    sc: Scenario, gw: MockGateway, transport: LeanTransport
) -> None:
    """Deployments cooling down before a request, or cooled by one (401/404 at once, 429 when the
    group has another deployment), receive nothing from it or from the next request."""
    router = build(sc, gw, transport)
    down = {d.id for d in sc.deps if d.cooled}
    groups = sc.groups
    for _ in range(2):
        run = send(router, sc)
        for a in run.attempts:
            assert a["deployment"] not in down, f"cooled: {sorted(down)}; {run.describe()}"
            if not a["ok"] and cools_at_once(a["kind"], len(groups[a["group"]])):
                down.add(a["deployment"])
    for d in sc.deps:
        if d.cooled:
            assert gw.count(d.id) == 0


@PROPERTY
@given(sc=scenarios(outcomes=("ok",), cooled=True, max_groups=1), rounds=hs.integers(1, 4))
def test_lower_order_serves_while_available(
    sc: Scenario, rounds: int, gw: MockGateway, transport: LeanTransport
) -> None:
    router = build(sc, gw, transport)
    for _ in range(rounds):
        run = send(router, sc)
        pool, _ = admissible(sc, sc.start, {d.id for d in sc.deps if d.cooled})
        if not pool:
            assert run.error is not None and not run.attempts
            continue
        assert [a["ok"] for a in run.attempts] == [True], run.describe()
        assert run.routing["deployment"] in ids(best_order(pool)), run.describe()


SLACK_S = 0.15
"""Overrun allowed past the deadline: the last attempt's timeout is cut to what is left, so only
the time to give up on it and raise remains."""


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sc=scenarios(
        outcomes=("ok", "server", "rate_limit", "bad_request"),
        filters=False,
        cooled=False,
        latencies=(0.0, 10.0, 40.0, 150.0),
        max_attempts=(20, 20),
    ),
    deadline_s=hs.sampled_from([0.05, 0.1, 0.2]),
)
def test_the_deadline_bounds_the_whole_request(
    sc: Scenario, deadline_s: float, gw: MockGateway, transport: LeanTransport
) -> None:
    run = send(build(sc, gw, transport, deadline_s=deadline_s), sc)
    assert run.elapsed <= deadline_s + SLACK_S, f"{run.elapsed:.3f}s; {run.describe()}"
    assert run.routing["latency_ms"] <= (deadline_s + SLACK_S) * 1000
    assert len(run.attempts) <= sc.max_attempts
    if run.message is None:
        assert run.error is not None


PROMPT_PAST_A_SECOND_HOP = Scenario(
    deps=(
        dep("g0d0", "g0", "context_window"),
        dep("g1d0", "g1", "context_window"),
        dep("g2d0", "g2", max_input_tokens=6),
    ),
    context_fallbacks={"g0": ("g1",), "g1": ("g2",)},
    prompt_chars=40,
)
"""~14 tokens; only g2 (reached through g1) has a limit, 6 tokens: g2d0 must not be called."""


@PROPERTY
@example(sc=PROMPT_PAST_A_SECOND_HOP)
@given(sc=scenarios(outcomes=("ok", "server", "context_window"), filters=False, limits=True))
def test_no_deployment_gets_a_prompt_beyond_its_context_window(
    sc: Scenario, gw: MockGateway, transport: LeanTransport
) -> None:
    """Every group the request reaches, by any fallback chain, respects ``max_input_tokens``."""
    run = send(build(sc, gw, transport), sc)
    by_id = sc.by_id
    for a in run.attempts:
        limit = by_id[a["deployment"]].max_input_tokens
        assert limit is None or limit >= sc.prompt_tokens, (
            f"~{sc.prompt_tokens} tokens sent to {a['deployment']} (max_input_tokens {limit}); "
            f"{run.describe()}"
        )
    replay(sc, run)


# --------------------------------------------------------------------------------------------
# Worked examples of the same rules


def test_cyclic_fallbacks_stop_after_each_group_once(
    gw: MockGateway, transport: LeanTransport
) -> None:
    sc = Scenario(
        deps=(dep("a1", "a", "server"), dep("b1", "b", "server")),
        num_retries=1,
        fallbacks={"a": ("b",), "b": ("a",)},
        start="a",
    )
    run = send(build(sc, gw, transport), sc)
    assert run.error is not None and run.error.kind == "upstream"
    assert run.entered == ["a", "b"]
    # a1's retry would wait on a1 itself while b remains: the request moves on at once. In b no
    # fallback is left (a was entered), so b1 gets its retry.
    assert [a["deployment"] for a in run.attempts] == ["a1", "b1", "b1"]
    assert gw.count("a1") == 1 and gw.count("b1") == 2


def test_wildcard_and_default_fallbacks_never_loop(
    gw: MockGateway, transport: LeanTransport
) -> None:
    sc = Scenario(
        deps=(dep("a1", "a", "server"), dep("b1", "b", "auth"), dep("c1", "c", "server")),
        num_retries=0,
        fallbacks={"*": ("a", "b", "c")},
        default_fallbacks=("a",),
        start="c",
    )
    run = send(build(sc, gw, transport), sc)
    assert run.entered == ["c", "a", "b"]
    assert [a["deployment"] for a in run.attempts] == ["c1", "a1", "b1"]


def test_order_two_takes_over_only_while_order_one_is_out(
    gw: MockGateway, transport: LeanTransport
) -> None:
    sc = Scenario(
        deps=(
            dep("p1", "g0", "auth", "ok", order=1),
            dep("s1", "g0", order=2),
            dep("s2", "g0", order=2),
        ),
        num_retries=0,
    )
    router = build(sc, gw, transport)
    first = send(router, sc)
    # p1's 401 cools it at once; the hop to an order-2 deployment does not spend a retry.
    assert first.attempts[0]["deployment"] == "p1"
    assert first.routing["deployment"] in ("s1", "s2")
    for _ in range(3):
        assert send(router, sc).routing["deployment"] in ("s1", "s2")
    assert gw.count("p1") == 1


def test_context_window_error_takes_the_context_window_chain(
    gw: MockGateway, transport: LeanTransport
) -> None:
    sc = Scenario(
        deps=(dep("a1", "a", "context_window"), dep("b1", "b"), dep("long1", "long")),
        fallbacks={"a": ("b",)},
        context_fallbacks={"a": ("long",)},
        start="a",
    )
    run = send(build(sc, gw, transport), sc)
    assert run.entered == ["a", "long"]
    assert [a["deployment"] for a in run.attempts] == ["a1", "long1"]
    assert gw.count("b1") == 0


def test_a_prompt_too_long_for_the_group_goes_to_the_context_window_chain(
    gw: MockGateway, transport: LeanTransport
) -> None:
    sc = Scenario(
        deps=(
            dep("small1", "a", max_input_tokens=50),
            dep("small2", "a", max_input_tokens=6),
            dep("other1", "b"),
            dep("long1", "long", max_input_tokens=5000),
        ),
        fallbacks={"a": ("b",)},
        context_fallbacks={"a": ("long",)},
        prompt_chars=400,
        start="a",
    )
    run = send(build(sc, gw, transport), sc)
    assert run.entered == ["a", "long"]
    assert [a["deployment"] for a in run.attempts] == ["long1"]
    assert gw.count("small1") == gw.count("small2") == gw.count("other1") == 0
