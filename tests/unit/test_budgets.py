"""Budgets: windows, limits, soft alerts, the overspend bound, config and the router's use."""

from __future__ import annotations

import calendar
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gatewaykit import (
    Budget,
    BudgetAlert,
    BudgetExceeded,
    BudgetManager,
    ConfigError,
    GatewayConfig,
    NoDeploymentAvailable,
    RouterChatModel,
    SpendContext,
    Window,
    call_cost,
)
from gatewaykit.testing import Behavior, MockGateway


class Clock:
    """A fake wall clock, in Unix seconds."""

    def __init__(self, at: float) -> None:
        self.now = at

    def __call__(self) -> float:
        return self.now


NOV_25_NOON = float(calendar.timegm((2026, 11, 25, 12, 0, 0)))


# ---------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("text", "seconds", "months"),
    [
        ("30s", 30, 0),
        ("15m", 900, 0),
        ("1h", 3600, 0),
        ("1d", 86400, 0),
        ("7d", 604800, 0),
        ("1w", 604800, 0),
        ("day", 86400, 0),
        ("month", 0, 1),
        ("1mo", 0, 1),
        ("3mo", 0, 3),
        ("year", 0, 12),
        (3600, 3600, 0),
    ],
)
def test_window_spellings(text: Any, seconds: int, months: int) -> None:
    w = Window.parse(text)
    assert (w.seconds, w.months) == (seconds, months)


@pytest.mark.parametrize("bad", ["1 fortnight", "0d", "-1d", "d", "", 0, -5, [1]])
def test_window_rejects_nonsense(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"window|duration"):
        Window.parse(bad)


def test_day_windows_reset_at_utc_midnight_and_months_on_the_first() -> None:
    assert Window.parse("1d").resets_at(NOV_25_NOON) == calendar.timegm((2026, 11, 26, 0, 0, 0))
    assert Window.parse("1mo").resets_at(NOV_25_NOON) == calendar.timegm((2026, 12, 1, 0, 0, 0))
    dec = float(calendar.timegm((2026, 12, 31, 23, 0, 0)))
    assert Window.parse("1mo").resets_at(dec) == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert Window.parse("total").resets_at(NOV_25_NOON) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": -1}, "limit must be >= 0"),
        ({"limit": "ten"}, "number of USD"),
        ({"limit": 1, "scope": "planet", "key": "x"}, "unknown scope"),
        ({"limit": 1, "scope": "team"}, "needs a key"),
        ({"limit": 1, "key": "x"}, "global budget has no key"),
        ({"limit": 1, "soft_limit": 2}, "soft_limit must be between"),
        ({"limit": 1, "window": "soon"}, "unknown window"),
    ],
)
def test_budget_validation_says_what_to_fix(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Budget(**kwargs)


# ---------------------------------------------------------------------- the manager


def test_hard_limit_raises_before_the_call_with_the_fields_to_branch_on() -> None:
    clock = Clock(NOV_25_NOON)
    m = BudgetManager([Budget(1.0, "1d", scope="team", key="search")], clock=clock)
    ctx = SpendContext(team="search")
    for _ in range(4):
        m.settle(m.reserve(ctx, 0.1), 0.25)
    with pytest.raises(BudgetExceeded) as info:
        m.reserve(ctx, 0.1)
    err = info.value
    assert err.scope == "team" and err.max_budget == 1.0
    assert err.current_cost == pytest.approx(1.0)
    assert "team 'search' budget $1 per 1d" in str(err) and "resets in 12h00m" in str(err)
    # other teams are not affected
    m.settle(m.reserve(SpendContext(team="ads"), 0.1), 5.0)


def test_several_windows_at_once_and_the_next_day() -> None:
    clock = Clock(NOV_25_NOON)
    team = {"scope": "team", "key": "search"}
    m = BudgetManager([Budget(10, "1d", **team), Budget(25, "1mo", **team)], clock=clock)  # type: ignore[arg-type]
    ctx = SpendContext(team="search")
    for day in range(3):
        clock.now = NOV_25_NOON + day * 86400 - 86400 * 20  # early November
        m.settle(m.reserve(ctx, 0), 10)
        with pytest.raises(BudgetExceeded, match="per 1d"):
            m.reserve(ctx, 0)  # the daily one stops day 1 and day 2
    clock.now = NOV_25_NOON - 86400 * 10
    with pytest.raises(BudgetExceeded, match="per 1mo"):
        m.reserve(ctx, 0)  # a fresh day, but the month is spent (30 >= 25)
    clock.now = float(calendar.timegm((2026, 12, 1, 0, 0, 1)))
    m.settle(m.reserve(ctx, 0), 1.0)  # a new month


def test_each_user_gets_their_own_budget_with_a_star_key() -> None:
    m = BudgetManager([Budget(1, "1d", scope="user", key="*")], clock=Clock(NOV_25_NOON))
    m.settle(m.reserve(SpendContext(user="ann"), 0), 1.0)
    with pytest.raises(BudgetExceeded):
        m.reserve(SpendContext(user="ann"), 0)
    m.settle(m.reserve(SpendContext(user="bob"), 0), 0.5)
    assert {s.key: s.spent for s in m.status(SpendContext(user="bob"))} == {"bob": 0.5}


def test_soft_limit_alerts_once_per_window() -> None:
    alerts: list[BudgetAlert] = []
    clock = Clock(NOV_25_NOON)
    m = BudgetManager(
        [Budget(10, "1d", scope="tag", key="batch", soft_limit=5)],
        clock=clock,
        on_soft_limit=alerts.append,
    )
    ctx = SpendContext(tags=("batch", "other"))
    for _ in range(4):
        m.settle(m.reserve(ctx, 0), 2.0)
    assert len(alerts) == 1 and alerts[0].spent == pytest.approx(6.0) and alerts[0].key == "batch"
    clock.now += 86400
    for _ in range(3):
        m.settle(m.reserve(ctx, 0), 2.0)
    assert len(alerts) == 2


def test_a_failing_soft_limit_callback_does_not_fail_the_call() -> None:
    def boom(alert: BudgetAlert) -> None:
        raise RuntimeError("pager down")

    m = BudgetManager([Budget(1, soft_limit=0.1)], on_soft_limit=boom)
    m.settle(m.reserve(SpendContext(), 0), 0.5)  # logged, not raised
    assert m.status()[0].spent == pytest.approx(0.5)


def test_overspend_is_bounded_by_the_calls_in_flight() -> None:
    # 64 threads race for a $10 budget; each call reserves $0.5 and really costs $1.
    limit, estimate, actual, workers = 10.0, 0.5, 1.0, 64
    m = BudgetManager([Budget(limit)])
    barrier = threading.Barrier(workers)
    admitted: list[int] = []
    in_flight_peak = [0]
    in_flight = [0]
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            try:
                res = m.reserve(SpendContext(), estimate)
            except BudgetExceeded:
                return
            with lock:
                in_flight[0] += 1
                in_flight_peak[0] = max(in_flight_peak[0], in_flight[0])
                admitted.append(i)
            m.settle(res, actual)
            with lock:
                in_flight[0] -= 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent = m.status()[0].spent
    assert spent >= limit  # the budget was really used up
    # every admitted call passed a check of spent + reserved + estimate <= limit
    assert spent <= limit + in_flight_peak[0] * (actual - estimate) + 1e-9
    assert len(admitted) <= limit / estimate


def test_call_cost_prefers_the_gateway_figure() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 200}
    assert call_cost(0.5, usage, 1e-6, 2e-6) == 0.5
    assert call_cost(None, usage, 3e-6, 15e-6) == pytest.approx(0.006)
    assert call_cost(None, None, 3e-6, 15e-6) == 0.0


# ---------------------------------------------------------------------- config


def test_budgets_from_every_spelling_in_config() -> None:
    cfg = GatewayConfig.from_dict(
        {
            "model_list": [
                {
                    "model_name": "chat",
                    "litellm_params": {
                        "model": "openai/a",
                        "max_budget": 5,
                        "budget_duration": "1d",
                    },
                    "model_info": {"id": "chat-a"},
                }
            ],
            "router_settings": {
                "provider_budget_config": {"openai": {"budget_limit": 100, "time_period": "1mo"}}
            },
            "budgets": [
                {"limit": 10, "window": "1d", "scope": "team", "key": "search", "soft_limit": 8},
                {"max_budget": 1, "budget_duration": "30d", "scope": "user", "key": "*"},
            ],
        }
    )
    got = {(b.scope, b.key, b.limit, str(b.window), b.soft_limit) for b in cfg.budgets}
    assert got == {
        ("team", "search", 10, "1d", 8),
        ("user", "*", 1, "30d", None),
        ("deployment", "chat-a", 5, "1d", None),
        ("provider", "openai", 100, "1mo", None),
    }


BASE = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n"


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        (BASE + "budgets: {limit: 1}\n", "budgets", "must be a list"),
        (BASE + "budgets: [10]\n", "budgets[0]", "must be a mapping"),
        (BASE + "budgets: [{window: 1d}]\n", "budgets[0].limit", "missing"),
        (BASE + "budgets: [{limit: -3}]\n", "budgets[0].limit", "number >= 0"),
        (
            BASE + "budgets: [{limit: 3, window: fortnight}]\n",
            "budgets[0].window",
            "unknown window",
        ),
        (BASE + "budgets: [{limit: 3, scope: team}]\n", "budgets[0]", "needs a key"),
        (BASE + "budgets: [{limit: 3, scop: team}]\n", "budgets[0].scop", "unknown budget field"),
        (
            BASE.replace("openai/a}", "openai/a, max_budget: 5, budget_duration: often}"),
            "model_list[0].litellm_params.budget_duration",
            "unknown window",
        ),
        (
            BASE + "router_settings:\n  provider_budget_config: {openai: {time_period: 1d}}\n",
            "router_settings.provider_budget_config.openai.budget_limit",
            "missing",
        ),
    ],
)
def test_malformed_budgets_name_the_field(text: str, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_yaml_string(text)
    problems = {p.path: p.message for p in info.value.problems}
    assert path in problems, problems
    assert fragment in problems[path]


# ---------------------------------------------------------------------- in the router


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as gateway:
        yield gateway


def dep(gw: MockGateway, name: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": "chat",
        "litellm_params": {
            "model": f"openai/{name}",
            "api_base": gw.base_url,
            "api_key": "k",
            **params,
        },
        "model_info": {"id": name},
    }


def test_a_spent_deployment_leaves_rotation_and_the_other_serves(gw: MockGateway) -> None:
    gw.reset()
    gw.script("cheap-dep", Behavior(cost=0.4))
    cfg = {
        "model_list": [
            dep(gw, "cheap-dep", order=1, max_budget=1.0, budget_duration="1d"),
            dep(gw, "other-dep", order=2),
        ]
    }
    llm = RouterChatModel.from_config(cfg, model="chat")
    served = [llm.invoke("hi").response_metadata["routing"]["deployment"] for _ in range(5)]
    assert served == ["cheap-dep"] * 3 + ["other-dep"] * 2  # 0.4 x 3 = 1.2 >= 1.0
    assert gw.count("cheap-dep") == 3


def test_a_team_budget_stops_the_call_before_it_is_sent(gw: MockGateway) -> None:
    gw.reset()
    gw.script("team-dep", Behavior(cost=0.3))
    cfg = {
        "model_list": [dep(gw, "team-dep")],
        "budgets": [{"limit": 0.5, "window": "1d", "scope": "team", "key": "search"}],
    }
    llm = RouterChatModel.from_config(cfg, model="chat").bind(gateway_metadata={"team": "search"})
    llm.invoke("one")
    llm.invoke("two")
    with pytest.raises(BudgetExceeded) as info:
        llm.invoke("three")
    assert info.value.scope == "team"
    assert gw.count("team-dep") == 2  # the third call never left the process


def test_a_spent_provider_means_no_deployment(gw: MockGateway) -> None:
    gw.reset()
    gw.script("prov-dep", Behavior(cost=1.0))
    cfg = {
        "model_list": [dep(gw, "prov-dep")],
        "router_settings": {
            "provider_budget_config": {"openai": {"budget_limit": 1, "time_period": "1d"}}
        },
    }
    llm = RouterChatModel.from_config(cfg, model="chat")
    llm.invoke("spend it")
    with pytest.raises(NoDeploymentAvailable) as info:
        llm.invoke("again")
    assert "provider 'openai' budget" in info.value.reasons["prov-dep"]


def test_the_router_settles_the_gateway_cost(gw: MockGateway) -> None:
    gw.reset()
    gw.script("cost-dep", Behavior(cost=0.0123))
    budgets = BudgetManager([Budget(10, "1d", scope="tag", key="nightly")])
    cfg = {"model_list": [dep(gw, "cost-dep")]}
    llm = RouterChatModel.from_config(cfg, model="chat", budgets=budgets, gateway_tags=["nightly"])
    llm.invoke("hi")
    (status,) = budgets.status()
    assert status.spent == pytest.approx(0.0123)
    assert status.reserved == 0.0
