"""GatewayConfig: the fixture configs, every validation rule, lazy env references, secrets."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as hs

from gatewaykit.config import (
    ROUTING_STRATEGIES,
    AliasTarget,
    ConfigError,
    Deployment,
    EnvRef,
    GatewayConfig,
    load_config,
    resolve_value,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
VALID_FIXTURES = sorted(
    p for p in FIXTURES.glob("*.yaml") if p.name != "invalid-router-section.yaml"
)


def load(text: str, **kw: Any) -> GatewayConfig:
    return GatewayConfig.from_yaml_string(textwrap.dedent(text), **kw)


def problems_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value


# --------------------------------------------------------------------------- fixture configs


def check_aliases_openrouter(cfg: GatewayConfig) -> None:
    assert list(cfg.groups) == ["qwen-235b", "gpt-4", "gpt-3.5-turbo"]
    for group in cfg.groups.values():
        (d,) = group
        assert d.provider == "openrouter"
        assert d.upstream_model == "qwen/qwen3-235b-a22b-2507"
        assert d.litellm_params["api_key"] == EnvRef("OPENROUTER_API_KEY")
        assert d.api_base() == "https://openrouter.ai/api/v1"
    assert len({d.id for d in cfg.deployments}) == 3  # generated ids differ per group
    assert cfg.router.model_group_alias == {}
    assert isinstance(cfg.general_settings["master_key"], EnvRef)
    assert cfg.litellm_settings["callbacks"] == ["otel"]


def check_basic(cfg: GatewayConfig) -> None:
    assert list(cfg.groups) == ["gpt-4o", "claude-sonnet", "gemini-flash", "llama-local"]
    assert cfg.router.num_retries == 3  # from litellm_settings.num_retries
    assert cfg.router.timeout == 120  # from litellm_settings.request_timeout
    assert cfg.router.routing_strategy == "simple-shuffle"
    gpt, claude, gemini, llama = cfg.deployments
    assert (gpt.provider, gpt.upstream_model) == ("openai", "gpt-4o")
    assert (claude.provider, gemini.provider) == ("anthropic", "gemini")
    assert (llama.provider, llama.upstream_model) == ("ollama", "llama3.1:70b")
    assert llama.api_base() == "http://localhost:11434"
    assert llama.api_key() is None
    assert cfg.litellm_settings["drop_params"] is True
    assert cfg.router.fallbacks == {}
    assert cfg.fallback_chain("gpt-4o") == ()


def check_guardrails_agent(cfg: GatewayConfig) -> None:
    (claude,) = cfg.group("claude-sonnet")
    (agent,) = cfg.group("my-agent")
    assert agent.is_agent is True
    assert claude.is_agent is False
    assert (agent.provider, agent.upstream_model) == ("langgraph", "agent")
    assert agent.api_base() == "http://langgraph-server:2024"
    assert claude.guardrails == ("my-content-filter",)
    assert [g.name for g in cfg.guardrails] == ["my-content-filter"]
    (g,) = cfg.guardrails
    assert g.mode == "pre_and_post_call"
    assert g.params["guardrail"] == "custom"
    assert g.params["guardrail_class"] == "MyContentGuardrail"
    assert cfg.general_settings["enable_prometheus"] is True


def check_multi_region(cfg: GatewayConfig) -> None:
    sonnet = cfg.group("claude-sonnet")
    assert [d.order for d in sonnet] == [1, 2, 3]
    assert [d.id for d in sonnet] == [
        "claude-sonnet-direct",
        "claude-sonnet-bedrock-east",
        "claude-sonnet-bedrock-eu",
    ]
    assert [d.rpm for d in sonnet] == [1000, 1000, 800]
    assert [d.tpm for d in sonnet] == [200000, 200000, 160000]
    assert sonnet[0].provider is None and sonnet[0].upstream_model == "claude-sonnet-4-6"
    assert (sonnet[1].provider, sonnet[1].upstream_model) == (
        "bedrock",
        "anthropic.claude-sonnet-4-6-v1",
    )
    assert sonnet[1].litellm_params["aws_secret_access_key"] == EnvRef("AWS_SECRET_ACCESS_KEY")
    rs = cfg.router
    assert rs.fallbacks == {"claude-sonnet": ("claude-sonnet-fallback",)}
    assert rs.context_window_fallbacks == {
        "claude-sonnet": ("claude-sonnet-long",),
        "claude-sonnet-fallback": ("claude-sonnet-long",),
    }
    assert rs.default_fallbacks == ("claude-sonnet-fallback",)
    assert rs.model_group_alias == {"gpt-4": AliasTarget("claude-sonnet")}
    assert cfg.resolve_group("gpt-4") == "claude-sonnet"
    assert isinstance(rs.redis_host, EnvRef) and rs.redis_host.var == "REDIS_HOST"
    assert rs.redis_port == 6379
    assert isinstance(rs.redis_password, EnvRef)
    assert (rs.num_retries, rs.timeout, rs.allowed_fails, rs.cooldown_time) == (1, 20, 3, 60)
    assert rs.enable_pre_call_checks is True
    assert rs.extra["enable_weighted_failover"] is True  # unknown router key, kept
    assert cfg.group("claude-sonnet-long")[0].max_output_tokens == 1048576
    assert cfg.public_models() == [
        "claude-sonnet",
        "claude-sonnet-fallback",
        "claude-sonnet-long",
        "gpt-4",
    ]


def check_production(cfg: GatewayConfig) -> None:
    # The tutorial `model_name` / `fallback_models` form, normalised.
    rs = cfg.router
    assert rs.fallbacks == {"premium-chat": ("basic-chat",), "basic-chat": ("premium-chat",)}
    assert rs.context_window_fallbacks == {"basic-chat": ("premium-chat",)}
    assert rs.routing_strategy == "latency-based-routing"
    assert (rs.num_retries, rs.timeout, rs.retry_after) == (3, 120, 5)
    assert [len(cfg.group(g)) for g in cfg.groups] == [2, 2, 1, 1]
    assert [d.rpm for d in cfg.group("premium-chat")] == [200, 150]
    assert cfg.group("basic-chat")[0].access_groups == ("basic", "premium")
    assert [g.name for g in cfg.guardrails] == ["pii-masking"]
    assert cfg.guardrails[0].mode == "during_call"
    assert isinstance(cfg.environment_variables["LANGFUSE_SECRET_KEY"], EnvRef)
    assert cfg.general_settings["max_budget"] == 10000
    # a premium <-> basic cycle is allowed; the router stops loops at run time
    assert cfg.fallback_chain("premium-chat") == ("basic-chat",)
    assert cfg.fallback_chain("basic-chat", "context_window") == ("premium-chat",)
    assert cfg.fallback_chain("premium-chat", "context_window") == ("basic-chat",)


FIXTURE_CHECKS: dict[str, Callable[[GatewayConfig], None]] = {
    "aliases-openrouter.yaml": check_aliases_openrouter,
    "basic.yaml": check_basic,
    "guardrails-agent.yaml": check_guardrails_agent,
    "multi-region.yaml": check_multi_region,
    "production.yaml": check_production,
}


@pytest.mark.parametrize("path", VALID_FIXTURES, ids=lambda p: p.name)
def test_fixture_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "REDIS_HOST", "LITELLM_MASTER_KEY"):
        monkeypatch.delenv(var, raising=False)  # references stay lazy: no env needed to load
    cfg = GatewayConfig.from_yaml(path)
    assert cfg.source == str(path)
    assert cfg.deployments
    FIXTURE_CHECKS[path.name](cfg)
    assert load_config(path).groups.keys() == cfg.groups.keys()


def test_every_fixture_has_checks() -> None:
    assert {p.name for p in VALID_FIXTURES} == set(FIXTURE_CHECKS)


def test_invalid_router_section_is_rejected_with_the_valid_form() -> None:
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_yaml(FIXTURES / "invalid-router-section.yaml")
    err = info.value
    assert err.paths == ["router", "model_list[1].litellm_params.model"]
    router_msg = err.problems[0].message
    for key in ("strategy", "fallback_models", "max_retries", "model"):
        assert key in router_msg
    assert "router_settings:" in router_msg
    assert "routing_strategy: simple-shuffle" in router_msg
    assert "'round_robin'" in router_msg and "'random'" in router_msg
    assert "num_retries: 2" in router_msg
    assert "- gpt-5: [claude-opus, gemini-pro]" in router_msg
    assert "- gemini-pro: [claude-opus]" in router_msg
    prefix_msg = err.problems[1].message
    assert "'claude/'" in prefix_msg
    assert "anthropic/claude-3-opus-20240229" in prefix_msg
    assert str(err).startswith("invalid gateway config")
    assert "OPENAI_KEY_1" not in str(err) and "ANTHROPIC_KEY_1" not in str(err)


# --------------------------------------------------------------------------- malformed configs

TWO_GROUPS = """\
model_list:
  - model_name: a
    litellm_params: {model: openai/a}
  - model_name: b
    litellm_params: {model: openai/b}
"""


def one(params: str = "", info: str = "", entry: str = "") -> str:
    """A one-deployment config with extra litellm_params / model_info / entry keys."""
    lines = ["model_list:", "  - model_name: a", "    litellm_params:", "      model: openai/a"]
    lines += [f"      {p}" for p in params.splitlines() if p]
    if info:
        lines += ["    model_info:"] + [f"      {i}" for i in info.splitlines() if i]
    lines += [f"    {e}" for e in entry.splitlines() if e]
    return "\n".join(lines) + "\n"


MALFORMED: list[tuple[str, str, str, str]] = [
    # (id, yaml, exact path, message substring)
    ("rpm-negative", one("rpm: -5"), "model_list[0].litellm_params.rpm",
     "must be a positive integer, got -5"),
    ("rpm-not-a-number", one("rpm: abc"), "model_list[0].litellm_params.rpm",
     "must be a positive integer, got 'abc'"),
    ("tpm-zero", one("tpm: 0"), "model_list[0].litellm_params.tpm", "positive integer"),
    ("rpm-fraction", one("rpm: 1.5"), "model_list[0].litellm_params.rpm", "got 1.5"),
    ("max-parallel-bool", one("max_parallel_requests: true"),
     "model_list[0].litellm_params.max_parallel_requests", "positive integer"),
    ("weight-zero", one("weight: 0"), "model_list[0].litellm_params.weight",
     "must be a positive number"),
    ("weight-word", one("weight: heavy"), "model_list[0].litellm_params.weight", "'heavy'"),
    ("order-zero", one("order: 0"), "model_list[0].litellm_params.order", "integer >= 1"),
    ("order-in-model-info", one(info="order: -1"), "model_list[0].model_info.order",
     "integer >= 1"),
    ("timeout-negative", one("timeout: -1"), "model_list[0].litellm_params.timeout",
     "positive number"),
    ("stream-timeout-word", one("stream_timeout: soon"),
     "model_list[0].litellm_params.stream_timeout", "positive number"),
    ("cooldown-negative", one("cooldown_time: -5"), "model_list[0].litellm_params.cooldown_time",
     "number >= 0"),
    ("tags-string", one("tags: fast"), "model_list[0].litellm_params.tags",
     "must be a list of strings"),
    ("tags-item-not-string", one("tags: [fast, 3]"), "model_list[0].litellm_params.tags[1]",
     "must be a string"),
    ("bool-as-string", one(info="supports_vision: 'true'"), "model_list[0].model_info.supports_vision",
     "remove the quotes"),
    ("bool-as-word", one(info="supports_function_calling: maybe"),
     "model_list[0].model_info.supports_function_calling", "must be true or false"),
    ("max-input-tokens", one(info="max_input_tokens: -10"),
     "model_list[0].model_info.max_input_tokens", "positive integer"),
    ("cost-negative", one("input_cost_per_token: -0.1"),
     "model_list[0].litellm_params.input_cost_per_token", "number >= 0"),
    ("model-name-missing", "model_list:\n  - litellm_params: {model: openai/a}\n",
     "model_list[0].model_name", "missing"),
    ("model-name-empty", "model_list:\n  - model_name: ''\n    litellm_params: {model: openai/a}\n",
     "model_list[0].model_name", "must not be empty"),
    ("model-name-number", "model_list:\n  - model_name: 3.5\n    litellm_params: {model: openai/a}\n",
     "model_list[0].model_name", "quote it"),
    ("litellm-params-missing", "model_list:\n  - model_name: a\n",
     "model_list[0].litellm_params", "needs litellm_params"),
    ("litellm-params-list", "model_list:\n  - model_name: a\n    litellm_params: [openai/a]\n",
     "model_list[0].litellm_params", "must be a mapping"),
    ("model-missing", "model_list:\n  - model_name: a\n    litellm_params: {api_key: x}\n",
     "model_list[0].litellm_params.model", "missing"),
    ("entry-not-mapping", "model_list:\n  - gpt-4o\n", "model_list[0]", "must be a mapping"),
    ("model-list-not-list", "model_list: {model_name: a}\n", "model_list", "must be a list"),
    ("model-info-not-mapping", one(entry="model_info: [1]"), "model_list[0].model_info",
     "must be a mapping"),
    ("misplaced-rpm", one(entry="rpm: 10"), "model_list[0].rpm", "belongs under litellm_params"),
    ("duplicate-id", TWO_GROUPS.replace("{model: openai/a}", "{model: openai/a}\n    model_info: {id: x}")
     .replace("{model: openai/b}", "{model: openai/b}\n    model_info: {id: x}"),
     "model_list[1].model_info.id", "duplicate deployment id 'x'"),
    ("claude-prefix", one().replace("openai/a", "claude/claude-3-opus"),
     "model_list[0].litellm_params.model", "anthropic/claude-3-opus"),
    ("google-prefix", one().replace("openai/a", "google/gemini-pro"),
     "model_list[0].litellm_params.model", "gemini/gemini-pro or vertex_ai/gemini-pro"),
    ("aws-prefix", one().replace("openai/a", "aws/anthropic.claude-v2"),
     "model_list[0].litellm_params.model", "bedrock/anthropic.claude-v2"),
    ("api-base-no-scheme", one("api_base: localhost:11434"), "model_list[0].litellm_params.api_base",
     "http://"),
    ("env-ref-without-name", one("api_key: os.environ/"), "model_list[0].litellm_params.api_key",
     "needs one variable name"),
    ("shell-style-env", one("api_key: ${OPENAI_API_KEY}"), "model_list[0].litellm_params.api_key",
     "os.environ/OPENAI_API_KEY"),
    ("shell-style-env-bare", one("api_key: $ANTHROPIC_API_KEY"),
     "model_list[0].litellm_params.api_key", "write os.environ/ANTHROPIC_API_KEY"),
    ("typed-env-missing", one("rpm: os.environ/GWK_TEST_UNSET_RPM"),
     "model_list[0].litellm_params.rpm", "GWK_TEST_UNSET_RPM is not set"),
    ("routing-strategy", TWO_GROUPS + "router_settings: {routing_strategy: round_robin}\n",
     "router_settings.routing_strategy", ", ".join(ROUTING_STRATEGIES)),
    ("fallback-unknown-target", TWO_GROUPS + "router_settings:\n  fallbacks:\n    - a: [b, nope]\n",
     "router_settings.fallbacks[0].a[1]", "unknown fallback target 'nope'"),
    ("fallback-self", TWO_GROUPS + "router_settings:\n  fallbacks:\n    - a: [a, b]\n",
     "router_settings.fallbacks[0].a[0]", "lists itself"),
    ("fallback-two-keys", TWO_GROUPS + "router_settings:\n  fallbacks:\n    - {a: [b], b: [a]}\n",
     "router_settings.fallbacks[0]", "exactly one key"),
    ("fallbacks-not-list", TWO_GROUPS + "router_settings:\n  fallbacks: {a: [b]}\n",
     "router_settings.fallbacks", "must be a list"),
    ("fallback-targets-not-list", TWO_GROUPS + "router_settings:\n  fallbacks:\n    - a: b\n",
     "router_settings.fallbacks[0].a", "must be a list of strings"),
    ("fallback-unknown-group", TWO_GROUPS + "router_settings:\n  fallbacks:\n    - zzz: [a]\n",
     "router_settings.fallbacks[0]", "unknown model group 'zzz'"),
    ("tutorial-form-unknown-target",
     TWO_GROUPS + "litellm_settings:\n  fallbacks:\n    - model_name: a\n      fallback_models: [b, c]\n",
     "litellm_settings.fallbacks[0].fallback_models[1]", "unknown fallback target 'c'"),
    ("tutorial-form-no-targets",
     TWO_GROUPS + "litellm_settings:\n  fallbacks:\n    - model_name: a\n",
     "litellm_settings.fallbacks[0].fallback_models", "missing"),
    ("duplicate-fallback-entry",
     TWO_GROUPS + "router_settings:\n  fallbacks:\n    - a: [b]\n    - a: [b]\n",
     "router_settings.fallbacks[1]", "second fallback entry for 'a'"),
    ("cw-fallback-unknown",
     TWO_GROUPS + "router_settings:\n  context_window_fallbacks:\n    - a: [big]\n",
     "router_settings.context_window_fallbacks[0].a[0]", "known groups: a, b"),
    ("default-fallback-unknown", TWO_GROUPS + "router_settings:\n  default_fallbacks: [zzz]\n",
     "router_settings.default_fallbacks[0]", "unknown fallback target 'zzz'"),
    ("alias-unknown-group", TWO_GROUPS + "router_settings:\n  model_group_alias: {gpt-4: zzz}\n",
     "router_settings.model_group_alias.gpt-4", "unknown model group 'zzz'"),
    ("alias-mapping-without-model",
     TWO_GROUPS + "router_settings:\n  model_group_alias: {gpt-4: {hidden: true}}\n",
     "router_settings.model_group_alias.gpt-4.model", "missing"),
    ("alias-hides-group", TWO_GROUPS + "router_settings:\n  model_group_alias: {b: a}\n",
     "router_settings.model_group_alias.b", "also a model_name"),
    ("num-retries-negative", TWO_GROUPS + "router_settings: {num_retries: -1}\n",
     "router_settings.num_retries", "integer >= 0"),
    ("request-timeout-word", TWO_GROUPS + "litellm_settings: {request_timeout: forever}\n",
     "litellm_settings.request_timeout", "positive number"),
    ("pre-call-checks-string", TWO_GROUPS + "router_settings: {enable_pre_call_checks: 'true'}\n",
     "router_settings.enable_pre_call_checks", "must be true or false"),
    ("retry-policy-negative",
     TWO_GROUPS + "router_settings:\n  retry_policy: {RateLimitErrorRetries: -1}\n",
     "router_settings.retry_policy.RateLimitErrorRetries", "integer >= 0"),
    ("max-fallbacks-zero", TWO_GROUPS + "router_settings: {max_fallbacks: 0}\n",
     "router_settings.max_fallbacks", "positive integer"),
    ("router-settings-list", TWO_GROUPS + "router_settings: [a]\n", "router_settings",
     "must be a mapping"),
    ("environment-variables-list", TWO_GROUPS + "environment_variables: [A=1]\n",
     "environment_variables", "must be a mapping"),
    ("router-section", TWO_GROUPS + "router: {strategy: random}\n", "router",
     "routing_strategy: simple-shuffle   # not 'random'"),
    ("task-unknown-model", TWO_GROUPS + "tasks:\n  summarize: {model: zzz}\n",
     "tasks.summarize.model", "unknown model group or alias 'zzz'"),
    ("task-unknown-capability", TWO_GROUPS + "tasks:\n  summarize: {model: a, requires: [telepathy]}\n",
     "tasks.summarize.requires[0]", "tools, vision, json_schema, reasoning"),
    ("task-missing-model", TWO_GROUPS + "tasks:\n  summarize: {max_tokens: 10}\n",
     "tasks.summarize.model", "missing"),
    ("task-max-tokens", TWO_GROUPS + "tasks:\n  summarize: {model: a, max_tokens: 0}\n",
     "tasks.summarize.max_tokens", "positive integer"),
    ("gateway-base-url", TWO_GROUPS + "gateway: {base_url: localhost:4000}\n", "gateway.base_url",
     "must be a URL"),
    ("gateway-timeout", TWO_GROUPS + "gateway: {base_url: 'http://x', timeout: 0}\n",
     "gateway.timeout", "positive number"),
    ("guardrail-bad-entry", TWO_GROUPS + "guardrails: [pii]\n", "guardrails[0]",
     "guardrail_name"),
    ("guardrail-duplicate",
     TWO_GROUPS + "guardrails:\n  - {guardrail_name: g, litellm_params: {guardrail: presidio}}\n"
     "  - {guardrail_name: g, litellm_params: {guardrail: aporia}}\n",
     "guardrails[1]", "duplicate guardrail name 'g'"),
    ("include-without-file", TWO_GROUPS + "include: [more.yaml]\n", "include",
     "GatewayConfig.from_yaml"),
    ("duplicate-yaml-key", TWO_GROUPS + "litellm_settings: {a: 1}\nlitellm_settings: {b: 2}\n", "",
     "duplicate key 'litellm_settings'"),
    ("not-a-mapping", "- model_name: a\n", "", "must be a mapping of sections"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "path", "fragment"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_config(
    text: str, path: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GWK_TEST_UNSET_RPM", raising=False)
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_yaml_string(text, source="bad.yaml")
    err = info.value
    assert err.paths == [path], str(err)
    assert fragment in err.problems[0].message
    assert err.source == "bad.yaml"
    assert isinstance(err, ValueError)


def test_malformed_table_is_broad() -> None:
    assert len(MALFORMED) >= 25
    assert len({c[0] for c in MALFORMED}) == len(MALFORMED)


def test_all_problems_are_reported_at_once() -> None:
    text = one("rpm: -5\nweight: heavy", info="order: 0") + (
        "router_settings:\n  routing_strategy: fastest\n  fallbacks:\n    - a: [nowhere]\n"
    )
    err = problems_of(text)
    assert err.paths == [
        "model_list[0].litellm_params.rpm",
        "model_list[0].litellm_params.weight",
        "model_list[0].model_info.order",
        "router_settings.routing_strategy",
        "router_settings.fallbacks[0].a[0]",
    ]
    assert "model_list[0].litellm_params.rpm: must be a positive integer, got -5" in str(err)


def test_three_problems_three_config_problems() -> None:
    text = """\
    model_list:
      - model_name: a
        litellm_params: {model: openai/a, rpm: -5}
      - model_name: b
        litellm_params: {model: claude/claude-3-opus}
    router_settings:
      routing_strategy: round_robin
    """
    err = problems_of(text)
    assert len(err.problems) == 3
    assert err.paths == [
        "model_list[0].litellm_params.rpm",
        "model_list[1].litellm_params.model",
        "router_settings.routing_strategy",
    ]


def test_yaml_syntax_error_names_the_line() -> None:
    text = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a\n"
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_yaml_string(text)
    assert "YAML syntax error" in str(info.value)
    assert "line 4" in str(info.value)


def test_yaml_indentation_error_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: x\n     rpm: 3\n"
    )
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_yaml(path)
    assert "line 5" in str(info.value)
    assert info.value.source == str(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        GatewayConfig.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        GatewayConfig.from_yaml(tmp_path)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="empty"):
        GatewayConfig.from_yaml(path)


# --------------------------------------------------------------------------- accepted forms


def test_numeric_strings_and_integral_floats_are_accepted() -> None:
    cfg = load(one("rpm: '60'\ntpm: 1_000\nweight: '2.5'\norder: 2.0\ntimeout: '30'"))
    d = cfg.deployments[0]
    assert (d.rpm, d.tpm, d.weight, d.order, d.timeout) == (60, 1000, 2.5, 2, 30.0)
    assert type(d.rpm) is int and type(d.weight) is float


def test_dollar_values_that_are_not_env_syntax_load() -> None:
    d = load(one("api_key: $ecret-pass\nnote: costs $5")).deployments[0]
    assert d.api_key() == "$ecret-pass"


def test_deployment_fields_from_both_places() -> None:
    cfg = load(
        one(
            "max_tokens: 4096\ninput_cost_per_token: 0.000001\ncooldown_time: 0\n"
            "max_parallel_requests: 8\nstream_timeout: 5\nrequest_timeout: 60\ntags: [eu, fast]",
            info="id: dep-a\nmax_input_tokens: 128000\noutput_cost_per_token: 0.000002\n"
            "supports_function_calling: true\nsupports_vision: false\nsupports_reasoning: true\n"
            "access_groups: [beta]\nguardrails: [pii]\nbase_model: gpt-4o",
        )
    )
    d = cfg.deployment("dep-a")
    assert d.max_output_tokens == 4096 and d.max_input_tokens == 128000
    assert (d.input_cost_per_token, d.output_cost_per_token) == (0.000001, 0.000002)
    assert d.cooldown_time == 0  # 0 disables the cooldown, as in LiteLLM
    assert (d.max_parallel_requests, d.stream_timeout, d.timeout) == (8, 5, 60)
    assert d.tags == ("eu", "fast") and d.access_groups == ("beta",) and d.guardrails == ("pii",)
    assert (d.supports_function_calling, d.supports_vision) == (True, False)
    assert d.supports_response_schema is None and d.supports_reasoning is True
    assert d.model_info["base_model"] == "gpt-4o"  # unknown keys kept


def test_order_from_litellm_params_wins_over_model_info() -> None:
    d = load(one("order: 2", info="order: 5")).deployments[0]
    assert d.order == 2


def test_custom_llm_provider() -> None:
    d = load(
        "model_list:\n  - model_name: a\n    litellm_params:\n"
        "      model: meta/llama-3\n      custom_llm_provider: hosted_vllm\n"
        "      api_base: http://vllm:8000/v1\n"
    ).deployments[0]
    assert (d.provider, d.upstream_model) == ("hosted_vllm", "meta/llama-3")


def test_unknown_provider_prefix_is_not_rejected() -> None:
    d = load(one().replace("openai/a", "someprovider/x")).deployments[0]
    assert (d.provider, d.upstream_model) == ("someprovider", "x")


def test_unknown_keys_are_kept_everywhere() -> None:
    cfg = load(
        one("my_param: 1", info="team: search", entry="notes: hello")
        + "router_settings:\n  provider_budget_config: {openai: {budget_limit: 10}}\n"
        + "litellm_settings: {success_callback: [langfuse]}\n"
        + "mcp_servers: {fs: {url: 'http://fs'}}\n"
        + "gateway: {base_url: 'http://proxy:4000', retries: 3}\n"
        + "tasks:\n  summarize: {model: a, style: terse}\n"
    )
    d = cfg.deployments[0]
    assert d.litellm_params["my_param"] == 1
    assert d.model_info["team"] == "search"
    assert d.extra == {"notes": "hello"}
    assert cfg.router.extra["provider_budget_config"] == {"openai": {"budget_limit": 10}}
    assert cfg.unknown == {"mcp_servers": {"fs": {"url": "http://fs"}}}
    assert cfg.gateway is not None and cfg.gateway.extra == {"retries": 3}
    assert cfg.tasks["summarize"].extra == {"style": "terse"}


def test_fallback_forms_merge_router_settings_wins() -> None:
    text = """\
    model_list:
      - {model_name: a, litellm_params: {model: openai/a}}
      - {model_name: b, litellm_params: {model: openai/b}}
      - {model_name: c, litellm_params: {model: openai/c}, model_info: {id: c-1}}
    litellm_settings:
      fallbacks:
        - model_name: a
          fallback_models: [b]
        - c: [a]
      content_policy_fallbacks:
        - a: [c]
    router_settings:
      fallbacks:
        - a: [c, b]
      context_window_fallbacks:
        - a: [c-1]
    """
    cfg = load(text)
    assert cfg.router.fallbacks == {"a": ("c", "b"), "c": ("a",)}
    assert cfg.fallback_chain("a") == ("c", "b")
    assert cfg.fallback_chain("a", "context_window") == ("c-1",)  # a deployment id target
    assert cfg.fallback_chain("a", "content_policy") == ("c",)
    assert cfg.fallback_chain("b", "context_window") == ()  # nothing for b anywhere
    assert cfg.group("c-1") == cfg.group("c")  # a deployment id pins that deployment
    assert cfg.resolve_group("c-1") == "c-1"


def test_fallback_chain_defaults_and_wildcard() -> None:
    base = TWO_GROUPS + "  - {model_name: c, litellm_params: {model: openai/c}}\n"
    cfg = load(base + "router_settings:\n  default_fallbacks: [a, c]\n  fallbacks:\n    - b: [c]\n")
    assert cfg.fallback_chain("a") == ("c",)  # default list minus the group itself
    assert cfg.fallback_chain("c") == ("a",)
    assert cfg.fallback_chain("b") == ("c",)
    assert cfg.fallback_chain("a", "context_window") == ("c",)  # falls through to general
    cfg = load(base + "router_settings:\n  fallbacks:\n    - '*': [c]\n")
    assert cfg.fallback_chain("a") == ("c",)
    assert cfg.fallback_chain("c") == ()
    with pytest.raises(ValueError, match="unknown fallback kind"):
        cfg.fallback_chain("a", "weird")  # type: ignore[arg-type]


def test_default_fallbacks_from_litellm_settings() -> None:
    cfg = load(TWO_GROUPS + "litellm_settings: {default_fallbacks: [b]}\n")
    assert cfg.router.default_fallbacks == ("b",)
    assert cfg.fallback_chain("a") == ("b",)


def test_fallback_cycles_are_allowed() -> None:
    cfg = load(TWO_GROUPS + "router_settings:\n  fallbacks:\n    - a: [b]\n    - b: [a]\n")
    assert cfg.fallback_chain("a") == ("b",) and cfg.fallback_chain("b") == ("a",)


def test_aliases_hidden_and_fallbacks_through_aliases() -> None:
    text = TWO_GROUPS + textwrap.dedent("""\
    router_settings:
      model_group_alias:
        gpt-4: a
        internal: {model: b, hidden: true}
      fallbacks:
        - gpt-4: [internal]
    """)
    cfg = load(text)
    assert cfg.router.model_group_alias["internal"] == AliasTarget("b", hidden=True)
    assert cfg.public_models() == ["a", "b", "gpt-4"]
    assert cfg.resolve_group("internal") == "b"
    assert [d.model_name for d in cfg.group("gpt-4")] == ["a"]
    assert cfg.router.fallbacks == {"a": ("internal",)}  # keyed by the group the alias names
    assert cfg.fallback_chain("gpt-4") == ("internal",)


def test_resolve_group_unknown_lists_known_groups() -> None:
    cfg = load(TWO_GROUPS + "router_settings:\n  model_group_alias: {gpt-4: a}\n")
    with pytest.raises(ConfigError) as info:
        cfg.resolve_group("gpt-5")
    assert "unknown model group 'gpt-5'" in str(info.value)
    assert "known groups: a, b" in str(info.value) and "aliases: gpt-4" in str(info.value)
    with pytest.raises(ConfigError, match="unknown deployment id"):
        cfg.deployment("nope")


def test_guardrails_both_sections_and_legacy_form() -> None:
    cfg = load(
        TWO_GROUPS
        + "guardrails:\n  - guardrail_name: pii\n    litellm_params: {guardrail: presidio, "
        "mode: [pre_call, post_call]}\n"
        + "litellm_settings:\n  guardrails:\n    - prompt_injection: {callbacks: [lakera], "
        "default_on: true}\n"
    )
    assert [(g.name, g.mode) for g in cfg.guardrails] == [
        ("pii", "pre_call,post_call"),
        ("prompt_injection", None),
    ]
    assert cfg.guardrails[1].params["default_on"] is True


def test_tasks_and_gateway_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GWK_TEST_PROXY_URL", "http://proxy:4000")
    cfg = load(
        TWO_GROUPS
        + textwrap.dedent("""\
        router_settings:
          model_group_alias: {smart: a}
        tasks:
          summarize:
            model: smart
            cheaper_model: b
            temperature: 0
            max_tokens: 400
            requires: [json_schema]
            keywords: [summary, tl;dr]
            max_cost_per_call: 0.01
          classify: b
        gateway:
          base_url: os.environ/GWK_TEST_PROXY_URL
          api_key: os.environ/GWK_TEST_VIRTUAL_KEY
          timeout: 30
          ttft_timeout: 5
          default_tags: [team-search]
          default_metadata: {app: search}
          user: svc-search
          map_run_tags: true
        environment_variables:
          GWK_TEST_VIRTUAL_KEY: sk-from-env-section
        """)
    )
    s = cfg.tasks["summarize"]
    assert (s.model, s.cheaper_model, s.temperature, s.max_tokens) == ("smart", "b", 0, 400)
    assert s.requires == ("json_schema",) and s.keywords == ("summary", "tl;dr")
    assert s.max_cost_per_call == 0.01 and s.fallback_model is None
    assert cfg.tasks["classify"].model == "b"
    gw = cfg.gateway
    assert gw is not None
    assert gw.resolved_base_url() == "http://proxy:4000"
    assert gw.resolved_api_key(extra=cfg.environment_variables) == "sk-from-env-section"
    assert (gw.timeout, gw.ttft_timeout, gw.idle_timeout) == (30, 5, None)
    assert gw.default_tags == ("team-search",) and gw.default_metadata == {"app": "search"}
    assert (gw.user, gw.map_run_tags, gw.map_run_metadata) == ("svc-search", True, False)


def test_config_without_gateway_or_model_list() -> None:
    cfg = GatewayConfig.from_dict({"general_settings": {"master_key": "x"}})
    assert cfg.gateway is None and cfg.deployments == () and cfg.public_models() == []


def test_generated_ids_are_stable_and_unique() -> None:
    text = TWO_GROUPS + "  - model_name: a\n    litellm_params: {model: openai/a}\n"
    first, second = load(text), load(text)
    ids = [d.id for d in first.deployments]
    assert ids == [d.id for d in second.deployments]
    assert len(set(ids)) == 3
    assert ids[2] == f"{ids[0]}-2"  # an identical entry listed twice keeps both
    assert all(len(i.split("-")[0]) == 16 for i in ids)


def test_include_merges_files(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "more.yaml").write_text(
        "model_list:\n  - model_name: b\n    litellm_params: {model: openai/b}\n"
        "include: [extra.yaml]\n"
    )
    (tmp_path / "models" / "extra.yaml").write_text(
        "model_list:\n  - model_name: c\n    litellm_params: {model: openai/c}\n"
    )
    main = tmp_path / "config.yaml"
    main.write_text(
        "include: [models/more.yaml]\nmodel_list:\n  - model_name: a\n"
        "    litellm_params: {model: openai/a}\n"
        "router_settings:\n  fallbacks:\n    - a: [b, c]\n"
    )
    cfg = GatewayConfig.from_yaml(main)
    assert list(cfg.groups) == ["a", "b", "c"]
    assert cfg.fallback_chain("a") == ("b", "c")
    main.write_text("include: [missing.yaml]\nmodel_list: []\n")
    with pytest.raises(ConfigError, match="config file not found"):
        GatewayConfig.from_yaml(main)


def test_load_config_inputs(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(TWO_GROUPS)
    cfg = load_config(path)
    assert load_config(cfg) is cfg
    assert list(load_config(str(path)).groups) == ["a", "b"]
    assert list(load_config(TWO_GROUPS).groups) == ["a", "b"]  # YAML text
    assert list(load_config(yaml.safe_load(TWO_GROUPS)).groups) == ["a", "b"]
    with pytest.raises(TypeError):
        load_config(42)  # type: ignore[arg-type]


def test_from_dict_does_not_modify_its_input() -> None:
    data = yaml.safe_load(one("api_key: os.environ/GWK_TEST_KEY\nrpm: '10'"))
    before = copy.deepcopy(data)
    cfg = GatewayConfig.from_dict(data)
    assert data == before
    assert cfg.deployments[0].litellm_params["api_key"] == EnvRef("GWK_TEST_KEY")
    with pytest.raises(TypeError):
        cfg.deployments[0].litellm_params["rpm"] = 1  # type: ignore[index]


def test_deployment_limits_are_plain_attributes() -> None:
    for name in ("rpm", "tpm", "weight", "order", "max_input_tokens", "cooldown_time"):
        assert not isinstance(getattr(Deployment, name, None), property)
    d = load(one("rpm: 5")).deployments[0]
    with pytest.raises(AttributeError):
        d.rpm = 6  # type: ignore[misc]


# --------------------------------------------------------------------------- lazy env


def test_env_references_are_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GWK_TEST_UNSET_KEY", raising=False)
    cfg = load(one("api_key: os.environ/GWK_TEST_UNSET_KEY"), source="lazy.yaml")
    d = cfg.deployments[0]
    with pytest.raises(ConfigError) as info:
        d.api_key()
    err = info.value
    assert err.paths == ["model_list[0].litellm_params.api_key"]
    assert err.problems[0].message == (
        "environment variable GWK_TEST_UNSET_KEY is not set (referenced as "
        "os.environ/GWK_TEST_UNSET_KEY); export it or write the value in the config"
    )
    assert err.source == "lazy.yaml"
    with pytest.raises(ConfigError, match="GWK_TEST_UNSET_KEY"):
        d.param("api_key")
    with pytest.raises(ConfigError, match="GWK_TEST_UNSET_KEY"):
        cfg.resolve(d.litellm_params)

    monkeypatch.setenv("GWK_TEST_UNSET_KEY", "from-env")
    assert d.api_key() == "from-env"
    assert d.param("api_key") == "from-env"


def test_environment_variables_section_satisfies_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GWK_TEST_KEY", raising=False)
    monkeypatch.delenv("GWK_TEST_OUTER", raising=False)
    cfg = load(
        one("api_key: os.environ/GWK_TEST_KEY\napi_base: os.environ/GWK_TEST_BASE")
        + "environment_variables:\n  GWK_TEST_KEY: from-section\n"
        "  GWK_TEST_BASE: os.environ/GWK_TEST_OUTER\n"
    )
    d = cfg.deployments[0]
    assert d.api_key() == "from-section"
    with pytest.raises(ConfigError) as info:
        d.api_base()
    assert "GWK_TEST_OUTER, which is not set either" in str(info.value)
    monkeypatch.setenv("GWK_TEST_OUTER", "http://outer:4000")
    assert d.api_base() == "http://outer:4000"
    monkeypatch.setenv("GWK_TEST_KEY", "env-wins")
    assert d.api_key() == "env-wins"  # os.environ first, then environment_variables


def test_typed_env_reference_resolves_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GWK_TEST_RPM", "120")
    d = load(one("rpm: os.environ/GWK_TEST_RPM")).deployments[0]
    assert d.rpm == 120
    monkeypatch.setenv("GWK_TEST_RPM", "lots")
    with pytest.raises(ConfigError) as info:
        load(one("rpm: os.environ/GWK_TEST_RPM"))
    assert info.value.problems[0].message == (
        "must be a positive integer, got the value of os.environ/GWK_TEST_RPM (not shown)"
    )


def test_resolve_value_recurses_and_reports_every_missing_var() -> None:
    value = {"a": EnvRef("A", "x.a"), "b": [EnvRef("B", "x.b[0]"), 3], "c": "plain"}
    assert resolve_value(value, env={"A": "1", "B": "2"}) == {"a": "1", "b": ["2", 3], "c": "plain"}
    with pytest.raises(ConfigError) as info:
        resolve_value(value, env={})
    assert info.value.paths == ["x.a", "x.b[0]"]
    assert resolve_value(5) == 5
    assert EnvRef("A").resolve(env={}, extra={"A": 7}) == "7"


def test_empty_env_var_counts_as_missing() -> None:
    with pytest.raises(ConfigError, match="GWK_X is empty"):
        EnvRef("GWK_X", "p").resolve(env={"GWK_X": ""})


# --------------------------------------------------------------------------- secrets

SECRETS = {
    "api_key": "sk-live-SUPERSECRET0123456789",
    "aws": "AWSSECRETVALUE987654321",
    "virtual": "sk-virtual-GATEWAYSECRET42",
    "redis": "REDISPASSWORD555555",
    "master": "sk-master-MASTERSECRET777",
    "guard": "GUARDRAILKEY888888",
    "env": "ENVSECTIONSECRET999",
}


def secret_config() -> GatewayConfig:
    s = SECRETS
    return GatewayConfig.from_dict(
        {
            "model_list": [
                {
                    "model_name": "a",
                    "litellm_params": {
                        "model": "bedrock/anthropic.claude",
                        "api_key": s["api_key"],
                        "aws_secret_access_key": s["aws"],
                        "rpm": 10,
                    },
                }
            ],
            "router_settings": {
                "redis_password": s["redis"],
                "redis_url": f"redis://:{s['redis']}@cache:6379",
            },
            "general_settings": {"master_key": s["master"]},
            "guardrails": [
                {"guardrail_name": "g", "litellm_params": {"guardrail": "x", "api_key": s["guard"]}}
            ],
            "environment_variables": {"SOME_TOKEN": s["env"]},
            "gateway": {
                "base_url": f"http://user:{s['virtual']}@proxy:4000",
                "api_key": s["virtual"],
            },
            "tasks": {"t": {"model": "a"}},
        }
    )


def assert_no_secret(text: str) -> None:
    for value in SECRETS.values():
        assert value not in text, text


def test_secrets_never_in_repr_or_str() -> None:
    cfg = secret_config()
    d = cfg.deployments[0]
    assert d.api_key() == SECRETS["api_key"]  # still usable
    objects: list[Any] = [
        cfg,
        d,
        cfg.router,
        cfg.gateway,
        *cfg.guardrails,
        *cfg.tasks.values(),
        EnvRef("OPENAI_API_KEY", "p"),
    ]
    for obj in objects:
        assert_no_secret(repr(obj))
        assert_no_secret(str(obj))
    assert repr(d) == f"Deployment(id={d.id!r}, model_name='a', model='bedrock/anthropic.claude')"
    assert repr(EnvRef("OPENAI_API_KEY", "p")) == "EnvRef('OPENAI_API_KEY')"
    assert "api_key=<set>" in repr(cfg.gateway)


def test_secrets_never_in_error_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GWK_TEST_SECRET_RPM", SECRETS["api_key"])
    text = textwrap.dedent(f"""\
    model_list:
      - model_name: a
        litellm_params:
          model: openai/a
          api_key: {SECRETS["api_key"]}
          aws_secret_access_key: {SECRETS["aws"]}
          rpm: os.environ/GWK_TEST_SECRET_RPM
          tpm: -1
    router_settings:
      redis_password: 123456789012345
      routing_strategy: {SECRETS["master"]}
    gateway:
      api_key: 98765432109876
      base_url: {SECRETS["virtual"]}
    """)
    with pytest.raises(ConfigError) as info:
        GatewayConfig.from_yaml_string(text)
    message = str(info.value)
    assert_no_secret(message)
    assert "123456789012345" not in message and "98765432109876" not in message
    assert "model_list[0].litellm_params.rpm" in info.value.paths
    assert "router_settings.redis_password" in info.value.paths


# --------------------------------------------------------------------------- property


names = hs.sampled_from(["alpha", "beta", "gamma", "delta-1", "eu/west"])
entries = hs.fixed_dictionaries(
    {
        "model_name": names,
        "model": hs.sampled_from(["openai/gpt-4o", "anthropic/claude", "gpt-5", "openrouter/q/w"]),
        "rpm": hs.none() | hs.integers(1, 10**6),
        "rpm_as_text": hs.booleans(),
        "weight": hs.none() | hs.floats(0.001, 1000, allow_nan=False, allow_infinity=False),
        "order": hs.none() | hs.integers(1, 10),
    }
)


@settings(max_examples=60, deadline=None)
@given(hs.lists(entries, min_size=1, max_size=12))
def test_generated_model_lists_round_trip(items: list[dict[str, Any]]) -> None:
    model_list = []
    for it in items:
        params: dict[str, Any] = {"model": it["model"]}
        if it["rpm"] is not None:
            params["rpm"] = str(it["rpm"]) if it["rpm_as_text"] else it["rpm"]
        if it["weight"] is not None:
            params["weight"] = it["weight"]
        if it["order"] is not None:
            params["order"] = it["order"]
        model_list.append({"model_name": it["model_name"], "litellm_params": params})
    cfg = GatewayConfig.from_yaml_string(yaml.safe_dump({"model_list": model_list}))

    assert len(cfg.deployments) == len(items)
    for i, (d, it) in enumerate(zip(cfg.deployments, items, strict=True)):
        assert d.index == i
        assert (d.model_name, d.model) == (it["model_name"], it["model"])
        assert (d.rpm, d.weight, d.order) == (it["rpm"], it["weight"], it["order"])
        assert cfg.deployment(d.id) is d
    assert list(cfg.groups) == list(dict.fromkeys(it["model_name"] for it in items))
    for name, group in cfg.groups.items():
        assert [d.index for d in group] == [
            i for i, it in enumerate(items) if it["model_name"] == name
        ]
        assert cfg.group(name) == group
    assert len({d.id for d in cfg.deployments}) == len(items)


def test_retry_and_allowed_fails_policies_name_a_typo() -> None:
    err = problems_of(
        """\
        model_list:
          - {model_name: a, litellm_params: {model: openai/a}}
        router_settings:
          retry_policy: {TimeoutErrorRetries: 2, RateLimitErrorRetrys: 3}
          allowed_fails_policy: {TimeoutErrorAllowedFails: 1, InternalServerErrorAllowedFail: 2}
        """
    )
    assert err.paths == [
        "router_settings.retry_policy.RateLimitErrorRetrys",
        "router_settings.allowed_fails_policy.InternalServerErrorAllowedFail",
    ]
    assert "use one of" in str(err) and "InternalServerErrorAllowedFails" in str(err)
    cfg = load(
        """\
        model_list:
          - {model_name: a, litellm_params: {model: openai/a}}
        router_settings:
          allowed_fails_policy: {TimeoutErrorAllowedFails: 1, upstream: 4}
        """
    )
    assert dict(cfg.router.allowed_fails_policy) == {"TimeoutErrorAllowedFails": 1, "upstream": 4}
