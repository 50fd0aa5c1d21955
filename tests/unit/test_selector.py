"""TaskSelector: each rule picking and not picking, the task models, detection, budgets, proxy info."""

from __future__ import annotations

import asyncio
import atexit
import copy
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from langgraph.graph import START, MessagesState, StateGraph
from pydantic import BaseModel

from gatewaykit import BudgetExceeded, BudgetManager, ConfigError, GatewayConfig, RetryPolicy
from gatewaykit.selector import (
    ProxyModelInfo,
    TaskChatModel,
    TaskSelectionError,
    TaskSelector,
    task_budgets,
)
from gatewaykit.testing import Behavior, MockGateway

FIXTURES = Path(__file__).parent.parent / "fixtures" / "configs"
FAST = RetryPolicy(num_retries=0, initial_backoff=0.01, max_backoff=0.02)
DAY = 86_400.0


@pytest.fixture(scope="module")
def gw() -> Iterator[MockGateway]:
    with MockGateway() as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _fresh(gw: MockGateway) -> None:
    gw.reset()


def dep(gw: MockGateway, group: str, **info: Any) -> dict[str, Any]:
    """One deployment of ``group``; its upstream model is ``<group>-up``."""
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"openai/{group}-up",
            "api_base": gw.base_url,
            "api_key": "sk-deployment",
        },
        "model_info": {"id": f"{group}-up", **info},
    }


def config(gw: MockGateway, **tasks: dict[str, Any]) -> dict[str, Any]:
    """smart: tools + json_schema, 1k context; vision; big: 200k context; cheap: 1k context."""
    base_tasks: dict[str, Any] = {
        "code_review": {
            "model": "smart",
            "fallback_model": "vision",
            "cheaper_model": "cheap",
            "long_context_model": "big",
            "temperature": 0.1,
            "max_tokens": 200,
            "tags": ["code"],
            "keywords": ["review", "diff", "pull request"],
            "description": "Review code changes and point out bugs",
        },
        "summarize": {
            "model": "cheap",
            "long_context_model": "big",
            "keywords": ["summarize", "tl;dr"],
            "description": "Condense long documents into short summaries",
        },
        "describe_image": {"model": "smart", "fallback_model": "vision", "requires": ["vision"]},
    }
    base_tasks.update(tasks)
    return {
        "model_list": [
            dep(
                gw,
                "smart",
                max_input_tokens=1000,
                input_cost_per_token=1e-5,
                output_cost_per_token=3e-5,
                supports_function_calling=True,
                supports_vision=False,
                supports_response_schema=True,
            ),
            dep(
                gw,
                "vision",
                supports_vision=True,
                supports_function_calling=True,
                input_cost_per_token=2e-5,
                output_cost_per_token=4e-5,
            ),
            dep(
                gw,
                "big",
                max_input_tokens=200_000,
                input_cost_per_token=2e-5,
                output_cost_per_token=6e-5,
            ),
            dep(
                gw,
                "cheap",
                max_input_tokens=1000,
                input_cost_per_token=1e-7,
                output_cost_per_token=2e-7,
                supports_function_calling=False,
            ),
        ],
        "tasks": base_tasks,
    }


def selector(gw: MockGateway, cfg: dict[str, Any] | None = None, **kw: Any) -> TaskSelector:
    kw.setdefault("router", False)
    if kw["router"]:
        kw.setdefault("model_kwargs", {"retry": FAST, "seed": 1})
    else:
        kw.setdefault("model_kwargs", {"max_retries": 0})
    return TaskSelector.from_config(cfg or config(gw), **kw)


def applied(sel_meta: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in sel_meta["rules"] if r["applied"]]


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


IMAGE = HumanMessage(
    content=[
        {"type": "text", "text": "what is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
)


@tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


# --------------------------------------------------------------------------- capabilities


def test_capability_rule_moves_to_an_alternative_that_has_it(gw: MockGateway) -> None:
    sel = selector(gw)
    choice = sel.select("describe_image", "look")
    assert choice.model == "vision"
    assert choice.reason == (
        "smart lacks supports_vision: false (config); using fallback_model vision"
    )
    msg = sel.for_task("describe_image").invoke([IMAGE])
    assert gw.count("vision-up") == 1 and gw.count("smart-up") == 0
    assert msg.response_metadata["task"]["model"] == "vision"
    assert applied(msg.response_metadata["task"]) == ["capability"]


def test_capability_rule_keeps_a_model_that_has_it(gw: MockGateway) -> None:
    cfg = config(gw, review_tools={"model": "smart", "requires": ["tools", "json_schema"]})
    choice = selector(gw, cfg).select("review_tools", "hi")
    assert choice.model == "smart"
    rule = next(r for r in choice.rules if r.rule == "capability")
    assert not rule.applied and rule.detail == "smart has json_schema, tools"


def test_an_undeclared_capability_is_assumed_unless_strict(gw: MockGateway) -> None:
    cfg = config(
        gw, think={"model": "smart", "fallback_model": "vision", "requires": ["reasoning"]}
    )
    choice = selector(gw, cfg).select("think", "hi")
    assert choice.model == "smart"
    assert "reasoning not declared: assumed" in choice.rules[0].detail
    with pytest.raises(ConfigError) as err:
        selector(gw, cfg, strict_capabilities=True)
    assert err.value.path == "tasks.think.requires"
    assert "supports_reasoning: unknown" in str(err.value)


def test_bound_tools_are_a_need_too(gw: MockGateway) -> None:
    # summarize runs on cheap, which declares no function calling; its alternative big is unknown.
    sel = selector(gw)
    assert sel.select("summarize", "hi").model == "cheap"
    msg = sel.for_task("summarize").bind_tools([word_count]).invoke("count: a b c")
    meta = msg.response_metadata["task"]
    assert meta["model"] == "big" and meta["needs"] == ["tools"]
    assert "cheap lacks supports_function_calling: false (config)" in meta["reason"]
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "word_count"
    assert gw.count("big-up") == 1 and gw.count("cheap-up") == 0


def test_last_resort_is_any_group_that_declares_the_capability(gw: MockGateway) -> None:
    cfg = config(gw, caption={"model": "cheap", "requires": ["vision"]})
    cfg["model_list"][3]["model_info"]["supports_vision"] = False
    choice = selector(gw, cfg).select("caption", "hi")
    assert choice.model == "vision"
    assert choice.reason.endswith("using vision, which declares vision")


def test_no_model_with_the_capability_is_a_config_error_naming_the_task(gw: MockGateway) -> None:
    cfg = config(gw, caption={"model": "smart", "fallback_model": "vision", "requires": ["vision"]})
    cfg["model_list"][1]["model_info"]["supports_vision"] = False  # no group declares vision now
    with pytest.raises(ConfigError) as err:
        selector(gw, cfg)
    paths = err.value.paths
    assert "tasks.caption.requires" in paths and "tasks.describe_image.requires" in paths
    assert "smart lacks supports_vision: false (config)" in str(err.value)


def test_a_request_need_nobody_meets_fails_before_sending(gw: MockGateway) -> None:
    cfg = config(gw, tiny={"model": "cheap"})
    cfg["model_list"][2]["model_info"]["supports_function_calling"] = False
    cfg["model_list"][1]["model_info"]["supports_function_calling"] = False
    cfg["model_list"][0]["model_info"]["supports_function_calling"] = False
    with pytest.raises(TaskSelectionError) as err:
        selector(gw, cfg).for_task("tiny").bind_tools([word_count]).invoke("count: a b")
    assert err.value.rule == "capability" and err.value.task == "tiny"
    assert "cheap" in err.value.checked and "needs tools" in str(err.value)
    assert gw.count() == 0


# --------------------------------------------------------------------------- input length


def test_long_input_moves_to_the_long_context_model(gw: MockGateway) -> None:
    sel = selector(gw)
    long_text = "word " * 1000  # ~1254 tokens > smart's 1000
    msg = sel.for_task("code_review").invoke(long_text)
    meta = msg.response_metadata["task"]
    assert meta["model"] == "big" and applied(meta) == ["context"]
    assert meta["reason"] == (
        "~1254 input tokens > max_input_tokens 1000 of smart; using long_context_model big"
    )
    assert gw.count("big-up") == 1


def test_short_input_stays(gw: MockGateway) -> None:
    choice = selector(gw).select("code_review", "short")
    assert choice.model == "smart"
    assert choice.rules[0].detail == "~5 input tokens <= max_input_tokens 1000 of smart"


def test_a_configured_threshold_moves_earlier(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["tasks"]["code_review"]["long_context_threshold"] = 100
    sel = selector(gw, cfg)
    assert sel.select("code_review", "word " * 50).model == "smart"
    choice = sel.select("code_review", "word " * 200)
    assert choice.model == "big"
    assert "> long_context_threshold 100" in choice.reason


def test_without_a_long_context_model_the_rule_only_notes_it(gw: MockGateway) -> None:
    cfg = config(gw, notes={"model": "smart"})
    choice = selector(gw, cfg).select("notes", "word " * 1000)
    assert choice.model == "smart"
    assert choice.rules[0].detail.endswith("no long_context_model configured")


# --------------------------------------------------------------------------- cost ceiling


def test_cost_ceiling_moves_to_the_cheaper_model(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["tasks"]["code_review"]["max_cost_per_call"] = 0.005  # smart: ~0.006 for 200 out tokens
    msg = selector(gw, cfg).for_task("code_review").invoke("check")
    meta = msg.response_metadata["task"]
    assert meta["model"] == "cheap" and applied(meta) == ["cost"]
    assert meta["reason"].startswith("estimated $0.00605 on smart > max_cost_per_call $0.005")
    assert gw.count("cheap-up") == 1


def test_cost_under_the_ceiling_stays(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["tasks"]["code_review"]["max_cost_per_call"] = 0.01
    choice = selector(gw, cfg).select("code_review", "check")
    assert choice.model == "smart"
    rule = next(r for r in choice.rules if r.rule == "cost")
    assert not rule.applied and "<= max_cost_per_call $0.01" in rule.detail


def test_cost_ceiling_without_a_fitting_model_is_an_error(gw: MockGateway) -> None:
    cfg = config(gw, pricey={"model": "big", "max_cost_per_call": 0.001})
    with pytest.raises(TaskSelectionError) as err:
        selector(gw, cfg).for_task("pricey").invoke("check")
    assert err.value.rule == "cost" and "set cheaper_model" in str(err.value)
    assert gw.count() == 0
    cfg["tasks"]["pricey"]["cheaper_model"] = "smart"
    with pytest.raises(TaskSelectionError) as err:
        selector(gw, cfg).select("pricey", "check")
    assert set(err.value.checked) == {"big", "smart"}


def test_cost_ceiling_is_not_checked_without_prices(gw: MockGateway) -> None:
    cfg = config(gw)
    for d in cfg["model_list"]:
        d["model_info"].pop("input_cost_per_token", None)
        d["model_info"].pop("output_cost_per_token", None)
    cfg["tasks"]["code_review"]["max_cost_per_call"] = 1e-9
    choice = selector(gw, cfg).select("code_review", "check")
    assert choice.model == "smart" and choice.estimated_cost is None
    assert "prices of smart unknown" in choice.rules[-1].detail


# --------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("router", [False, True], ids=["direct", "router"])
def test_budget_downgrade_then_hard_stop_then_reset_next_day(gw: MockGateway, router: bool) -> None:
    cfg = config(gw)
    cfg["tasks"]["code_review"]["budget"] = 1.0
    clock = FakeClock()
    budgets = BudgetManager(task_budgets(cfg), clock=clock)
    sel = selector(gw, cfg, budgets=budgets, router=router)
    review = sel.for_task("code_review")
    gw.script("smart-up", Behavior(cost=0.45))
    gw.script("cheap-up", Behavior(cost=0.05))

    first = review.invoke("one").response_metadata["task"]
    assert first["model"] == "smart" and first["budget_used"] == 0.0
    second = review.invoke("two").response_metadata["task"]
    assert second["model"] == "smart" and second["budget_used"] == pytest.approx(0.45)
    third = review.invoke("three").response_metadata["task"]  # 90 % spent
    assert third["model"] == "cheap" and applied(third) == ["budget"]
    assert third["reason"] == "task budget 90% used (>= 80%); using cheaper_model cheap"
    review.invoke("four")  # $1.00 spent now
    with pytest.raises(BudgetExceeded) as err:
        review.invoke("five")
    assert err.value.scope == "tag" and "task:code_review" in str(err.value)
    assert gw.count("smart-up") == 2 and gw.count("cheap-up") == 2

    clock.now += DAY  # a new UTC day: a new window
    fresh = review.invoke("six").response_metadata["task"]
    assert fresh["model"] == "smart" and fresh["budget_used"] == 0.0


def test_budget_below_the_threshold_stays_and_a_custom_window_applies(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["tasks"]["code_review"].update(budget=1.0, budget_window="1h", downgrade_at=0.5)
    clock = FakeClock(3600.0 * 1000)
    budgets = BudgetManager(task_budgets(cfg), clock=clock)
    assert str(budgets.budgets[0].window) == "1h"
    sel = selector(gw, cfg, budgets=budgets)
    gw.script("smart-up", Behavior(cost=0.4))
    review = sel.for_task("code_review")
    review.invoke("one")
    choice = sel.select("code_review", "two")
    assert choice.model == "smart" and choice.rules[-1].detail == "task budget 40% used (< 50%)"
    review.invoke("two")
    assert sel.select("code_review", "three").model == "cheap"
    clock.now += 3600
    assert sel.select("code_review", "four").model == "smart"


def test_budget_without_a_cheaper_model_only_notes_it(gw: MockGateway) -> None:
    cfg = config(gw, solo={"model": "smart", "budget": 0.1})
    sel = selector(gw, cfg)
    gw.script("smart-up", Behavior(cost=0.09))
    sel.for_task("solo").invoke("one")
    choice = sel.select("solo", "two")
    assert choice.model == "smart"
    assert choice.rules[-1].detail == "task budget 90% used (>= 80%); no cheaper_model configured"


def test_task_budgets_default_to_one_utc_day(gw: MockGateway) -> None:
    cfg = config(gw, solo={"model": "smart", "budget": 2})
    (budget,) = task_budgets(cfg)
    assert (budget.limit, str(budget.window), budget.scope, budget.key) == (
        2,
        "1d",
        "tag",
        "task:solo",
    )


def test_bad_task_options_are_reported_together(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["tasks"]["code_review"].update(budget_window="fortnight", downgrade_at=3)
    cfg["tasks"]["summarize"]["long_context_threshold"] = -5
    with pytest.raises(ConfigError) as err:
        selector(gw, cfg, default_task="nope")
    assert sorted(err.value.paths) == [
        "default_task",
        "tasks.code_review.budget_window",
        "tasks.code_review.downgrade_at",
        "tasks.summarize.long_context_threshold",
    ]


# --------------------------------------------------------------------------- for_task


def test_for_task_sends_the_task_params_and_tags_through_the_proxy(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["gateway"] = {"base_url": gw.base_url, "api_key": "sk-virtual", "default_tags": ["app"]}
    sel = selector(gw, cfg, router=None)
    assert sel.mode == "proxy"
    review = sel.for_task("code_review")
    assert (review.temperature, review.max_tokens, review.gateway_tags) == (0.1, 200, ["code"])
    msg = review.invoke("Review this")
    req = gw.requests_for("smart")[-1]
    assert req.body is not None
    assert (req.body["temperature"], req.body["max_completion_tokens"]) == (0.1, 200)
    assert req.headers["x-litellm-tags"] == "app,code,task:code_review"
    assert req.headers["authorization"] == "Bearer sk-virtual"
    meta = msg.response_metadata["task"]
    assert meta["task"] == "code_review" and meta["model"] == "smart"
    assert meta["detected_by"] == "fixed" and meta["mode"] == "proxy"
    assert msg.response_metadata["gateway"]["model_group"] == "smart"


def test_call_options_win_over_the_task(gw: MockGateway) -> None:
    sel = selector(gw)
    review = sel.for_task("code_review", temperature=0.7)
    review.invoke("hi", max_tokens=5)
    body = gw.requests_for("smart-up")[-1].body
    assert body is not None and (body["temperature"], body["max_completion_tokens"]) == (0.7, 5)


def test_model_fields_key_and_streaming(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["gateway"] = {"base_url": gw.base_url, "api_key": "sk-team"}
    sel = selector(gw, cfg, router=None, proxy_info=False)
    sel.for_task("code_review").invoke("one")
    own = sel.for_task("code_review", api_key="sk-other", streaming=True, stop=["zz"])
    msg = own.invoke("two")
    reqs = gw.requests_for("smart")
    assert [r.headers["authorization"] for r in reqs] == ["Bearer sk-team", "Bearer sk-other"]
    assert reqs[1].body is not None and reqs[1].body["stream"] is True
    assert reqs[1].body["stop"] == ["zz"]
    assert msg.response_metadata["task"]["model"] == "smart"
    assert "sk-other" not in repr(own)


def test_unknown_task_is_a_typed_error(gw: MockGateway) -> None:
    sel = selector(gw)
    with pytest.raises(TaskSelectionError, match="unknown task 'nope'; tasks: code_review"):
        sel.for_task("nope")
    err = TaskSelectionError("x", task="t", rule="cost", checked={"a": "b"})
    again = pickle.loads(pickle.dumps(err))
    assert (again.task, again.rule, again.checked, str(again)) == ("t", "cost", {"a": "b"}, "x")


def test_for_task_streams_with_the_metadata_on_the_last_chunk(gw: MockGateway) -> None:
    chunks = list(selector(gw).for_task("describe_image").stream("hello there"))
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert isinstance(full, AIMessageChunk) and full.content == "Echo: hello there"
    assert full.response_metadata["task"]["model"] == "vision"


async def test_for_task_async(gw: MockGateway) -> None:
    review = selector(gw).for_task("code_review")
    msg = await review.ainvoke("async hello")
    assert msg.response_metadata["task"]["model"] == "smart"
    parts = [c async for c in review.astream("word " * 1000)]
    assert parts[-1].response_metadata["task"]["model"] == "big"


def test_fallback_model_serves_when_the_chosen_one_fails(gw: MockGateway) -> None:
    gw.script("smart-up", Behavior(status=500))
    review = selector(gw).for_task("code_review")
    msg = review.invoke("hi")
    meta = msg.response_metadata["task"]
    assert meta["model"] == "vision" and meta["fallback_from"] == "smart"
    assert meta["reason"] == "smart failed (upstream); using fallback_model vision"
    chunks = list(review.stream("hi"))
    assert chunks[-1].response_metadata["task"]["fallback_from"] == "smart"
    assert gw.count("smart-up") == 2 and gw.count("vision-up") == 2


def test_a_deterministic_error_does_not_fall_back(gw: MockGateway) -> None:
    gw.script("smart-up", Behavior(error="bad_request"))
    with pytest.raises(Exception, match="400"):
        selector(gw).for_task("code_review").invoke("hi")
    assert gw.count("vision-up") == 0


def test_router_mode_keeps_both_routing_and_task_metadata(gw: MockGateway) -> None:
    sel = selector(gw, router=True)
    assert sel.mode == "router"
    msg = sel.for_task("code_review").invoke("hi")
    assert msg.response_metadata["routing"]["deployment"] == "smart-up"
    assert msg.response_metadata["task"]["mode"] == "router"
    long = sel.for_task("code_review").invoke("word " * 1000)
    assert long.response_metadata["routing"]["deployment"] == "big-up"


def test_pinning_a_model_skips_the_rules(gw: MockGateway) -> None:
    msg = selector(gw).for_task("describe_image").invoke("hi", model="big")
    meta = msg.response_metadata["task"]
    assert meta["model"] == "big" and applied(meta) == ["pinned"]
    assert gw.count("big-up") == 1


class Verdict(BaseModel):
    ok: bool
    comment: str


def test_structured_output_works_on_a_task_model(gw: MockGateway) -> None:
    review = selector(gw).for_task("code_review")
    out = review.with_structured_output(Verdict).invoke("is this fine?")
    assert isinstance(out, Verdict)
    body = gw.requests_for("smart-up")[-1].body
    assert body is not None and body["response_format"]["type"] == "json_schema"
    raw = selector(gw).for_task("summarize").with_structured_output(Verdict, include_raw=True)
    result = raw.invoke("is this fine?")  # cheap lacks tools: function calling moves to big
    assert isinstance(result["parsed"], Verdict)
    assert result["raw"].response_metadata["task"]["model"] == "big"


# --------------------------------------------------------------------------- as_runnable


def test_as_runnable_takes_the_task_from_the_run_config(gw: MockGateway) -> None:
    auto = selector(gw).as_runnable()
    msg = auto.invoke("hello", config={"configurable": {"task": "describe_image"}})
    meta = msg.response_metadata["task"]
    assert meta["task"] == "describe_image" and meta["detected_by"] == "configurable"
    msg = auto.invoke("hello", task="summarize")
    assert msg.response_metadata["task"]["detected_by"] == "call"
    out = auto.batch(
        ["a", "b"],
        config=[
            {"configurable": {"task": "code_review"}},
            {"configurable": {"task": "summarize"}},
        ],
    )
    assert [m.response_metadata["task"]["model"] for m in out] == ["smart", "cheap"]


def test_as_runnable_detects_the_task_with_keywords(gw: MockGateway) -> None:
    auto = selector(gw).as_runnable()
    msg = auto.invoke("Please review this diff for bugs")
    meta = msg.response_metadata["task"]
    assert meta["task"] == "code_review" and meta["detected_by"] == "keywords"
    assert meta["detection"].startswith(
        "keywords: code_review scored 9 ('review', 'diff', name:review, description:bug)"
    )
    tldr = auto.invoke("tl;dr of the thread, thanks")
    assert tldr.response_metadata["task"]["task"] == "summarize"
    other = auto.invoke("good morning")
    assert other.response_metadata["task"]["task"] == "code_review"  # the first task
    assert "default task 'code_review'" in other.response_metadata["task"]["detection"]


def test_detection_uses_description_and_name_words(gw: MockGateway) -> None:
    sel = selector(gw, default_task="summarize")
    found = sel.detect("condense these documents")
    assert found.task == "summarize" and found.scores["summarize"] == 2
    assert sel.detect("Describe the image").task == "describe_image"
    assert sel.detect("nothing relevant").task == "summarize"


def test_as_runnable_in_a_langgraph_node(gw: MockGateway) -> None:
    auto = selector(gw).as_runnable()

    def call(state: MessagesState) -> dict[str, Any]:
        return {"messages": [auto.invoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node("llm", call).add_edge(START, "llm").compile()
    out = graph.invoke(
        {"messages": [HumanMessage("hi")]}, config={"configurable": {"task": "summarize"}}
    )
    assert out["messages"][-1].response_metadata["task"]["model"] == "cheap"


async def test_as_runnable_async_detection(gw: MockGateway) -> None:
    msg = await selector(gw).as_runnable().ainvoke("summarize this please")
    assert msg.response_metadata["task"]["task"] == "summarize"


# --------------------------------------------------------------------------- LLM classifier


def test_llm_classifier_uses_the_cheapest_model_and_caches(gw: MockGateway) -> None:
    sel = selector(gw, classifier="llm")
    assert sel.cheapest_model() == "cheap"
    gw.script("cheap-up", [Behavior(content="describe_image"), Behavior()])
    auto = sel.as_runnable()
    msg = auto.invoke("what do you make of it?")
    meta = msg.response_metadata["task"]
    assert meta["task"] == "describe_image" and meta["detected_by"] == "llm"
    assert meta["detection"] == "llm classifier answered 'describe_image'"
    classify = gw.requests_for("cheap-up")[0].body
    assert classify is not None and classify["temperature"] == 0
    assert "- describe_image:" in classify["messages"][0]["content"]
    again = auto.invoke("what do you make of it?").response_metadata["task"]
    assert again["task"] == "describe_image" and again["detection_cached"] is True
    assert sel.classifier_calls == 1 and gw.count("cheap-up") == 1
    sel.detect("another question")
    assert sel.classifier_calls == 2


def test_llm_classifier_answers_that_are_not_tasks(gw: MockGateway) -> None:
    sel = selector(gw, classifier="llm", classifier_model="smart")
    gw.script("smart-up", Behavior(content="I think: summarize."))
    assert sel.detect("x").task == "summarize"
    gw.script("smart-up", Behavior(content="none"))
    none = sel.detect("y")
    assert none.task == "code_review" and "answered 'none'" in none.reason
    gw.script("smart-up", Behavior(content="poetry"))
    odd = sel.detect("please review the diff")
    assert odd.task == "code_review" and odd.method == "keywords"
    assert odd.reason.startswith("llm classifier answered 'poetry'; keywords:")
    gw.script("smart-up", Behavior(status=500))
    failed = sel.detect("tl;dr")
    assert failed.task == "summarize" and "llm classifier failed" in failed.reason


async def test_llm_classifier_async(gw: MockGateway) -> None:
    sel = selector(gw, classifier="llm")
    gw.script("cheap-up", Behavior(content="summarize"))
    first, second = await asyncio.gather(sel.adetect("abc"), sel.adetect("abc"))
    assert first.task == second.task == "summarize"
    assert (await sel.adetect("abc")).cached


def test_llm_classifier_needs_a_priced_model_or_a_name(gw: MockGateway) -> None:
    cfg = config(gw)
    for d in cfg["model_list"]:
        d["model_info"].pop("input_cost_per_token", None)
        d["model_info"].pop("output_cost_per_token", None)
    with pytest.raises(ConfigError, match="set classifier_model"):
        selector(gw, cfg, classifier="llm")
    with pytest.raises(ConfigError, match="unknown model alias 'zzz'"):
        selector(gw, classifier="llm", classifier_model="zzz")


# --------------------------------------------------------------------------- proxy info


def group_info(**groups: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name, fields in groups.items():
        row: dict[str, Any] = {
            "model_group": name,
            "providers": ["openai"],
            "max_input_tokens": None,
            "input_cost_per_token": None,
            "output_cost_per_token": None,
            "mode": "chat",
            "supports_function_calling": False,
            "supports_vision": False,
            "supports_reasoning": False,
            "supported_openai_params": ["temperature", "tools", "response_format"],
        }
        row.update(fields)
        rows.append(row)
    return {"data": rows}


class InfoServer:
    """An httpx transport that answers /model_group/info and counts the requests."""

    def __init__(self, body: dict[str, Any], status: int = 200) -> None:
        self.body, self.status = body, status
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(self.status, json=self.body)


def test_proxy_info_fills_what_the_config_leaves_unsaid(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["gateway"] = {"base_url": "http://proxy.test/v1", "api_key": "sk-virtual"}
    server = InfoServer(
        group_info(
            smart={"max_input_tokens": 50_000, "supports_vision": True, "supports_reasoning": True},
            big={"supports_function_calling": True},
        )
    )
    info = ProxyModelInfo(
        "http://proxy.test/v1", api_key="sk-v", transport=httpx.MockTransport(server)
    )
    sel = selector(gw, cfg, router=None, proxy_info=info)
    info.groups()
    smart = sel.capabilities("smart")
    # config says 1000 tokens and no vision: the config wins; reasoning comes from the proxy
    assert (smart.max_input_tokens, smart.vision, smart.reasoning) == (1000, False, True)
    assert smart.sources["reasoning"] == "proxy" and smart.sources["vision"] == "config"
    big = sel.capabilities("big")
    assert big.tools is True and big.json_schema is True and big.sources["tools"] == "proxy"
    assert server.seen[0].url == "http://proxy.test/model_group/info"
    assert server.seen[0].headers["authorization"] == "Bearer sk-v"


def test_proxy_info_drives_a_rule(gw: MockGateway) -> None:
    cfg = config(gw, notes={"model": "vision", "long_context_model": "big"})
    cfg["gateway"] = {"base_url": gw.base_url, "api_key": "sk-virtual"}
    server = InfoServer(group_info(vision={"max_input_tokens": 100}))
    info = ProxyModelInfo(gw.base_url, transport=httpx.MockTransport(server))
    sel = selector(gw, cfg, router=None, proxy_info=info)
    msg = sel.for_task("notes").invoke("word " * 200)
    meta = msg.response_metadata["task"]
    assert meta["model"] == "big" and "max_input_tokens 100 of vision" in meta["reason"]
    assert gw.count("big") == 1


def test_proxy_info_is_cached_for_its_ttl_and_survives_failures() -> None:
    clock = FakeClock(0.0)
    server = InfoServer(group_info(a={"max_input_tokens": 10}))
    info = ProxyModelInfo(
        "http://proxy.test",
        ttl_s=60,
        retry_after_failure_s=5,
        transport=httpx.MockTransport(server),
        clock=clock,
    )
    assert info.groups()["a"]["max_input_tokens"] == 10
    clock.now = 59
    info.groups()
    assert info.fetches == 1
    clock.now = 61
    server.status = 500
    assert info.groups()["a"]["max_input_tokens"] == 10  # the last good answer stays
    assert info.last_error == "HTTP 500 from http://proxy.test/model_group/info"
    clock.now = 64
    info.groups()
    assert info.fetches == 2  # no retry before retry_after_failure_s
    clock.now = 67
    server.status = 200
    info.groups()
    assert info.fetches == 3 and info.last_error is None


def test_proxy_info_auto_mode_tolerates_a_proxy_without_the_endpoint(gw: MockGateway) -> None:
    cfg = config(gw)
    cfg["gateway"] = {"base_url": gw.base_url, "api_key": "sk-virtual"}
    sel = selector(gw, cfg, router=None)
    assert sel.proxy_info is not None
    sel.for_task("code_review").invoke("one")
    sel.for_task("code_review").invoke("two")
    paths = [r.path for r in gw.requests]
    if sel.proxy_info.last_error is None:  # the mock serves /model_group/info
        assert paths.count("/model_group/info") == 1
    else:
        assert sel.proxy_info.last_error.startswith("HTTP 404")
        assert paths.count("/model_group/info") == 1  # not retried on every call
    assert gw.count("smart") == 2


def test_proxy_credentials_are_read_at_first_use(
    gw: MockGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GWK_SELECTOR_TEST_KEY", raising=False)
    cfg = config(gw)
    cfg["gateway"] = {"base_url": gw.base_url, "api_key": "os.environ/GWK_SELECTOR_TEST_KEY"}
    sel = selector(gw, cfg, router=None)  # loads: nothing is resolved yet
    assert sel.select("code_review", "hi").model == "smart"
    assert sel.proxy_info is not None and sel.proxy_info.last_error is not None
    assert "GWK_SELECTOR_TEST_KEY is not set" in sel.proxy_info.last_error
    with pytest.raises(ConfigError, match="GWK_SELECTOR_TEST_KEY"):
        sel.for_task("code_review").invoke("hi")
    monkeypatch.setenv("GWK_SELECTOR_TEST_KEY", "sk-late")
    sel.proxy_info.invalidate()
    sel.for_task("code_review").invoke("hi")
    assert gw.requests_for("smart")[-1].headers["authorization"] == "Bearer sk-late"


def test_proxy_info_flag_needs_a_gateway_section(gw: MockGateway) -> None:
    with pytest.raises(ConfigError, match="proxy_info=True needs"):
        selector(gw, proxy_info=True)
    assert selector(gw).proxy_info is None  # direct mode: nothing to ask


# --------------------------------------------------------------------------- configs


def _valid_fixtures() -> list[Path]:
    return [p for p in sorted(FIXTURES.glob("*.yaml")) if not p.name.startswith("invalid")]


@pytest.mark.parametrize("path", _valid_fixtures(), ids=lambda p: p.name)
def test_every_fixture_config_drives_a_selector(path: Path) -> None:
    """Fixtures with a tasks section load as they are; the others get one task per group."""
    raw = yaml.safe_load(path.read_text())
    if not raw.get("tasks"):
        groups = list(dict.fromkeys(d["model_name"] for d in raw["model_list"]))
        raw = copy.deepcopy(raw)
        raw["tasks"] = {
            f"task_{i}": {"model": g, "keywords": [g], "budget": 1} for i, g in enumerate(groups)
        }
    cfg = GatewayConfig.from_dict(raw, source=str(path))
    sel = TaskSelector.from_config(cfg)
    for name, spec in cfg.tasks.items():
        choice = sel.select(name, "hello")
        assert choice.task == name and choice.model
        assert sel.select(None, f"{' '.join(spec.keywords)} hello").task
    assert sel.as_runnable().model_name == "task-selector"


def test_a_config_without_tasks_is_rejected(gw: MockGateway) -> None:
    cfg = config(gw)
    del cfg["tasks"]
    with pytest.raises(ConfigError, match="no tasks"):
        TaskSelector.from_config(cfg)


def test_yaml_text_with_tasks_loads(gw: MockGateway) -> None:
    text = yaml.safe_dump(config(gw), sort_keys=False)
    sel = TaskSelector.from_config(text, router=False)
    assert list(sel.tasks) == ["code_review", "summarize", "describe_image"]
    assert repr(sel).startswith("TaskSelector(mode='direct'")


# --------------------------------------------------------------------------- standard suites


def _standard_selector(gw: MockGateway) -> TaskSelector:
    def d(group: str) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {"model": f"openai/{group}", "api_base": gw.base_url, "api_key": "k"},
            "model_info": {"supports_response_schema": True, "supports_function_calling": True},
        }

    cfg = {
        "model_list": [d("gpt-4o-mini"), d("gpt-4o")],
        "tasks": {"chat": {"model": "gpt-4o-mini", "fallback_model": "gpt-4o"}},
    }
    return TaskSelector.from_config(cfg, router=False, model_kwargs={"max_retries": 0})


_SHARED: dict[str, MockGateway] = {}


def _shared_gateway() -> MockGateway:
    """One gateway for the standard suites (their fixtures build models outside ours)."""
    if "gw" not in _SHARED:
        gateway = MockGateway(record=False).start()
        atexit.register(gateway.stop)
        _SHARED["gw"] = gateway
    return _SHARED["gw"]


class TestTaskChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[TaskChatModel]:
        return TaskChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"selector": _standard_selector(_shared_gateway()), "task": "chat"}


class TestTaskChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[TaskChatModel]:
        return TaskChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"selector": _standard_selector(_shared_gateway()), "task": "chat"}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "gpt-4o"

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}

    def test_answers_say_which_task_served(self, model: TaskChatModel) -> None:
        msg = model.invoke("hello")
        assert isinstance(msg, AIMessage)
        assert msg.response_metadata["task"]["task"] == "chat"
