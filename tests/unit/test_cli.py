"""The ``gatewaykit`` command: check, route, bench and demo, run as users run them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatewaykit.cli import main
from gatewaykit.cli.check import check_file, fallback_cycles
from gatewaykit.cli.route import explain_route
from gatewaykit.config import GatewayConfig
from gatewaykit.routing.store import InMemoryStore
from gatewaykit.testing import MockGateway

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
VALID = ["aliases-openrouter", "basic", "guardrails-agent", "multi-region", "production"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def write(tmp_path: Path, data: dict[str, Any], name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def group(name: str, id_: str, base: str = "http://127.0.0.1:9/v1", **info: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": f"openai/{id_}", "api_base": base, "api_key": "k"},
        "model_info": {"id": id_, **info},
    }


# ----------------------------------------------------------------------------- check


@pytest.mark.parametrize("name", VALID)
def test_check_valid_fixture_exits_0(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / f"{name}.yaml"
    cfg = GatewayConfig.from_yaml(path)
    code, out = run(capsys, "check", str(path))
    assert code == 0, out
    assert "check ok: 0 error(s)" in out
    for g in cfg.groups:
        assert f"  {g}: " in out
    for d in cfg.deployments:
        assert d.id in out


def test_check_invalid_fixture_names_the_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "check", str(FIXTURES / "invalid-router-section.yaml"))
    assert code == 1
    assert "INVALID: the config does not load" in out
    assert "ERROR router: not a LiteLLM config section" in out
    assert "ERROR model_list[1].litellm_params.model: 'claude/' is not a LiteLLM provider" in out
    assert "check FAILED: 2 error(s)" in out


def test_check_never_prints_secret_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "check", str(FIXTURES / "basic.yaml"))
    assert code == 0
    assert "sk-master-key-1234" not in out
    assert "WARNING general_settings.master_key: a secret is written in the file" in out
    code, out = run(capsys, "check", "--json", str(FIXTURES / "invalid-router-section.yaml"))
    assert "OPENAI_KEY_1" not in out and "ANTHROPIC_KEY_1" not in out


def test_check_finds_the_production_fallback_cycle(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIXTURES / "production.yaml")
    code, out = run(capsys, "check", path)
    assert code == 0  # a warning: the router never loops
    assert (
        "WARNING litellm_settings.fallbacks: fallback cycle (general): "
        "premium-chat -> basic-chat -> premium-chat" in out
    )
    code, _ = run(capsys, "check", "--strict", path)
    assert code == 1


def test_check_three_group_cycle_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        {
            "model_list": [group("a", "a-1"), group("b", "b-1"), group("c", "c-1")],
            "router_settings": {"fallbacks": [{"a": ["b"]}, {"b": ["c"]}, {"c": ["a"]}]},
        },
    )
    assert fallback_cycles(GatewayConfig.from_yaml(path)) == [["a", "b", "c", "a"]]
    code, out = run(capsys, "check", "--json", "--strict", path)
    data = json.loads(out)
    assert code == 1 and data["exit_code"] == 1
    cycles = [f for f in data["findings"] if f["code"] == "fallback_cycle"]
    assert len(cycles) == 1  # reported once, not again for the kinds inheriting it
    assert cycles[0]["path"] == "router_settings.fallbacks"
    assert "a -> b -> c -> a" in cycles[0]["message"]
    assert data["fallbacks"]["general"] == {"a": ["b"], "b": ["c"], "c": ["a"]}
    assert data["groups"] == {"a": ["a-1"], "b": ["b-1"], "c": ["c-1"]}


def test_check_unknown_fallback_group_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        {
            "model_list": [group("a", "a-1")],
            "router_settings": {"fallbacks": [{"a": ["nope"]}]},
        },
    )
    code, out = run(capsys, "check", path)
    assert code == 1
    assert "ERROR router_settings.fallbacks[0].a[0]: unknown fallback target 'nope'" in out
    report = check_file(path)
    assert [f.code for f in report.errors] == ["unknown_fallback"]


def test_check_missing_env_var_names_var_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GWK_CLI_TEST_KEY", raising=False)
    data = {
        "model_list": [
            {
                "model_name": "a",
                "litellm_params": {
                    "model": "openai/a",
                    "api_base": "http://127.0.0.1:9/v1",
                    "api_key": "os.environ/GWK_CLI_TEST_KEY",
                },
            },
            {
                "model_name": "b",
                "litellm_params": {
                    "model": "openai/b",
                    "api_base": "http://127.0.0.1:9/v1",
                    "api_key": "os.environ/GWK_CLI_TEST_KEY",
                },
            },
        ]
    }
    path = write(tmp_path, data)
    code, out = run(capsys, "check", path)
    assert code == 0
    assert (
        "WARNING model_list[0].litellm_params.api_key: environment variable GWK_CLI_TEST_KEY "
        "is not set (os.environ/GWK_CLI_TEST_KEY); also used at model_list[1].litellm_params.api_key"
        in out
    )
    code, _ = run(capsys, "check", "--strict", path)
    assert code == 1
    monkeypatch.setenv("GWK_CLI_TEST_KEY", "sk-set-in-env-123456")
    code, out = run(capsys, "check", "--strict", path)
    assert code == 0, out
    assert "GWK_CLI_TEST_KEY" not in out
    assert "sk-set-in-env-123456" not in out


def test_check_agent_without_api_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        {"model_list": [{"model_name": "agent", "litellm_params": {"model": "langgraph/agent"}}]},
    )
    code, out = run(capsys, "check", path)
    assert code == 1
    assert "ERROR model_list[0].litellm_params.api_base: agent deployment" in out


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "check", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert "nope.yaml" in out


# ----------------------------------------------------------------------------- route


def route_config(base: str = "http://127.0.0.1:9/v1") -> dict[str, Any]:
    small = {"max_input_tokens": 1000}
    return {
        "model_list": [
            {**group("smart", "smart-a", base, **small)},
            {**group("smart", "smart-b", base, **small)},
            group("big", "big-1", base, max_input_tokens=1_000_000),
            group("cheap", "cheap-1", base, supports_vision=False),
        ],
        "router_settings": {
            "fallbacks": [{"smart": ["cheap"]}],
            "context_window_fallbacks": [{"smart": ["big"]}],
        },
        "tasks": {
            "code_review": {"model": "smart", "long_context_model": "big", "keywords": ["review"]},
            "summarize": {"model": "cheap", "keywords": ["summarize", "tl;dr"]},
        },
    }


def order(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["model_list"][0]["litellm_params"]["order"] = 1
    cfg["model_list"][1]["litellm_params"]["order"] = 2
    return cfg


def test_route_explain_names_task_rule_and_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, order(route_config()))
    code, out = run(capsys, "route", "Please review this diff", "--config", path, "--explain")
    assert code == 0, out
    assert "task: code_review (keywords: code_review scored" in out
    assert "model: smart - default model for task 'code_review'" in out
    assert "-> smart-a (openai/smart-a): the only one at order 1" in out
    assert "ok smart-b (openai/smart-b): healthy, but order 1 is tried first" in out
    assert "on context_window errors: falls back to big" in out
    assert "would serve: smart / smart-a" in out


def test_route_long_prompt_explains_context_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, route_config())
    prompt = "x" * 6000  # ~1500 tokens, over smart's 1000
    code, out = run(capsys, "route", prompt, "--config", path, "--model", "smart", "--explain")
    assert code == 0, out
    assert "~1504 input tokens exceed max_input_tokens 1000" in out
    assert "no deployment can take it (context_window)" in out
    assert "would serve: big / big-1" in out
    code, out = run(capsys, "route", "Review: " + prompt, "--config", path, "--task", "code_review")
    assert code == 0
    assert out.startswith("big / big-1")
    assert "using long_context_model big" in out


def test_route_reads_cooldowns_from_the_store() -> None:
    cfg = GatewayConfig.from_dict(order(route_config()))
    store = InMemoryStore()
    store.cool_down("smart-a", time.monotonic() + 60, "upstream 500")
    plan = explain_route(cfg, "hello", model="smart", store=store)
    assert plan.deployment == "smart-b"
    verdicts = {v.id: v for v in plan.groups[0].deployments}
    assert not verdicts["smart-a"].admitted
    assert "cooling down for" in verdicts["smart-a"].reason
    assert "(upstream 500)" in verdicts["smart-a"].reason
    assert "picked smart-b" in plan.why


def test_route_capability_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, route_config())
    code, out = run(
        capsys,
        "route",
        "tl;dr please",
        "--config",
        path,
        "--model",
        "cheap",
        "--needs",
        "vision",
        "--json",
    )
    data = json.loads(out)
    assert code == 1
    assert data["deployment"] is None
    assert data["groups"][0]["deployments"][0]["reason"] == "lacks a needed capability (vision)"
    code, out = run(capsys, "route", "tl;dr please", "--config", path, "--needs", "vision")
    assert code == 1
    assert "no model can serve it: task 'summarize' needs vision" in out


def test_route_needs_a_model_or_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"model_list": [group("a", "a-1")]})
    code, out = run(capsys, "route", "hi", "--config", path)
    assert code == 2
    assert "name a model with --model" in out and "known: a" in out
    code, out = run(capsys, "route", "hi", "--config", path, "--model", "nope")
    assert code == 2
    assert "unknown model group 'nope'; known groups: a" in out


def test_route_send_calls_the_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with MockGateway() as gw:
        path = write(tmp_path, order(route_config(gw.base_url)))
        code, out = run(
            capsys, "route", "hello there", "--config", path, "--model", "smart", "--send"
        )
        assert code == 0, out
        assert "sent: served by smart-a (smart-a:ok)" in out
        assert "answer: " in out
        assert gw.count("smart-a") == 1 and gw.count("smart-b") == 0


# ----------------------------------------------------------------------------- bench


def test_bench_rejects_zero_calls(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--n", "0"])
    assert exc.value.code == 2
    assert "must be a positive integer, got 0" in capsys.readouterr().err


def test_bench_prints_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        capsys, "bench", "--n", "4", "--warmup", "1", "--mock", "thread", "--no-litellm"
    )
    assert code == 0
    assert re.search(r"^ChatOpenAI\s+4\s+[\d.]+\s+[\d.]+\s+\+0\.000\s+1\.00x$", out, re.M), out
    assert re.search(r"^RouterChatModel / ChatOpenAI: \d+\.\d\dx \(median, same run\)$", out, re.M)
    assert re.search(r"^GatewayChatModel / ChatOpenAI: \d+\.\d\dx", out, re.M)


# ----------------------------------------------------------------------------- demo

DEMO_PROOFS = [
    "gateway: http://127.0.0.1:",
    "1. Task selection",
    "short diff: code_review -> smart, served by smart-primary",
    "long diff: code_review -> big, served by big-1",
    "why: ~1058 input tokens > max_input_tokens 1000 of smart; using long_context_model big",
    "detected: 'tl;dr of this thread please' -> summarize",
    "2. A chain",
    "prompt | GatewayChatModel: 'Echo: What does a gateway do for an LLM app?'",
    "tags sent to the gateway: demo,step:chain",
    "attempt 1: rejected (schema_violation)",
    "validated: CodeReview(score=2, issues=['eval() on file contents runs arbitrary code'], "
    "recommendation='request_changes')",
    "tool call: calculator({'expression': '6*7'}) -> 42",
    "tool call: current_time({}) -> 12:00 UTC",
    "answer: 6 times 7 is 42, and the time is 12:00 UTC.",
    "smart-primary answers 500: served by smart-secondary",
    "attempts: smart-primary:upstream -> smart-secondary:ok",
    "the whole smart group is down: served by cheap-1",
    "fallback groups taken: ['cheap']",
    "prompt | AgentChatModel -> AIMessage: 6 times 7 is 42, and the time is 12:00 UTC.",
    "agent math-agent: 3 model calls, tool calls: calculator, current_time",
    "cost by model",
    "cost by tag",
    "step:failover",
    "summary",
    "demo finished: 7 ok, 0 skipped, 0 failed",
]


def test_demo_subprocess_tells_the_story() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gatewaykit.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for proof in DEMO_PROOFS:
        assert proof in proc.stdout, f"missing {proof!r} in:\n{proc.stdout}"
    served = re.search(
        r"^\s*served by smart, cost \$(\d+\.\d{6}) \(reported by the gateway\)$", proc.stdout, re.M
    )
    assert served and float(served.group(1)) > 0
    # The per-model table: one row per serving deployment, with gateway-reported costs.
    for dep in ("smart-primary", "big-1", "smart-secondary", "cheap-1", "agent-llm"):
        assert re.search(rf"│ {dep}\s+│\s+\d+ │ 0\.\d{{6}} │", proc.stdout), dep
    # Per tag: an agent's own run is not counted on top of its three inner model calls.
    assert re.search(r"│ step:agent-as-model\s+│\s+3 │", proc.stdout), proc.stdout
    assert re.search(r"│ task:code_review\s+│\s+2 │", proc.stdout), proc.stdout
    assert elapsed < 30


def test_demo_on_a_real_gateway_skips_scripted_steps(capsys: pytest.CaptureFixture[str]) -> None:
    with MockGateway() as gw:  # standing in for a real gateway: nothing is scripted
        code, out = run(capsys, "demo", "--base-url", gw.base_url, "--model", "smart")
    assert code == 0, out
    assert "skipped: needs a config with a tasks: section (--config)" in out
    assert "skipped: injecting an outage needs the embedded MockGateway" in out
    assert "demo finished: 5 ok, 2 skipped, 0 failed" in out


def test_demo_base_url_without_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "demo", "--base-url", "http://127.0.0.1:9/v1")
    assert code == 2
    assert "--base-url needs --model" in out
