"""Every valid fixture config drives a RouterChatModel over a MockGateway.

Each deployment's ``api_base`` is pointed at the mock (the providers' own endpoints are never
called) and every ``os.environ/VAR`` the config references is set, so the configs run exactly as
written otherwise: their strategies, retries, cooldowns, aliases and fallbacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatewaykit import GatewayConfig, RouterChatModel
from gatewaykit.config import Deployment
from gatewaykit.testing import Behavior, MockGateway

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
VALID_FIXTURES = sorted(
    p for p in FIXTURES.glob("*.yaml") if p.name != "invalid-router-section.yaml"
)
ENV_REF = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")


def routes() -> list[tuple[str, str]]:
    """(fixture file, model name) for every group and every alias of every valid fixture whose
    deployments are models (agent groups are served by a LangGraph server, tested below)."""
    out: list[tuple[str, str]] = []
    for path in VALID_FIXTURES:
        cfg = GatewayConfig.from_yaml(path)  # os.environ/ references stay lazy: no env needed
        for name in [*cfg.groups, *cfg.router.model_group_alias]:
            if not any(d.is_agent for d in cfg.group(cfg.resolve_group(name))):
                out.append((path.name, name))
    return out


def test_agent_groups_are_served_by_the_remote_agent_adapter() -> None:
    from gatewaykit.agents import RemoteAgentChatModel

    agents = [
        (path, d)
        for path in VALID_FIXTURES
        for d in GatewayConfig.from_yaml(path).deployments
        if d.provider == "langgraph"
    ]
    assert agents, "a fixture registers a LangGraph agent as a model"
    for path, d in agents:
        router = RouterChatModel.from_config(path, model=d.model_name)
        model = router.engine.model_for(d)
        assert isinstance(model, RemoteAgentChatModel)
        assert model.url == d.api_base() and model.assistant_id == d.upstream_model


def fallback_cases() -> list[tuple[str, str, str]]:
    """(fixture, group, error) for groups whose first fallback for that error is another group
    the mock can tell apart (no upstream model shared with the failing group)."""
    out: list[tuple[str, str, str]] = []
    for path in VALID_FIXTURES:
        cfg = GatewayConfig.from_yaml(path)
        for group, deps in cfg.groups.items():
            for error, kind in (("server", "general"), ("context_window", "context_window")):
                chain = cfg.fallback_chain(group, kind)  # type: ignore[arg-type]
                if not chain:
                    continue
                target = cfg.group(chain[0])
                if not {d.upstream_model for d in deps} & {d.upstream_model for d in target}:
                    out.append((path.name, group, error))
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[MockGateway]:
    with MockGateway() as gateway:
        yield gateway


@pytest.fixture
def gw(server: MockGateway) -> MockGateway:
    server.reset()
    return server


def on_mock(name: str, gw: MockGateway, monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    """The fixture with every deployment's api_base on the mock and its env vars set."""
    path = FIXTURES / name
    text = path.read_text()
    for var in sorted(set(ENV_REF.findall(text))):
        monkeypatch.setenv(var, f"test-{var.lower().replace('_', '-')}")
    # The configs switch Langfuse on: export to a closed local port, never to the internet.
    monkeypatch.setenv("LANGFUSE_BASE_URL", "http://127.0.0.1:9")
    data: dict[str, Any] = yaml.safe_load(text)
    for entry in data["model_list"]:
        params = entry["litellm_params"]
        params.pop("base_url", None)
        params["api_base"] = gw.base_url
    return GatewayConfig.from_dict(data, source=str(path))


def expected_key(dep: Deployment) -> str:
    return dep.api_key() or "no-key"


def test_every_valid_fixture_is_covered() -> None:
    names = {name for name, _ in routes()}
    assert names == {p.name for p in VALID_FIXTURES}
    assert len(VALID_FIXTURES) >= 5
    assert fallback_cases(), "some fixture must configure a fallback the mock can observe"


@pytest.mark.parametrize(("fixture", "model"), routes(), ids=lambda v: str(v))
def test_each_group_answers_from_one_of_its_deployments(
    fixture: str, model: str, gw: MockGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = on_mock(fixture, gw, monkeypatch)
    group = cfg.resolve_group(model)
    deps = {d.id: d for d in cfg.group(group)}
    router = RouterChatModel.from_config(cfg, model=model, seed=0)

    msg = router.invoke(f"hello {model}")

    assert f"hello {model}" in str(msg.content)
    routing = msg.response_metadata["routing"]
    assert routing["model"] == model and routing["group"] == group
    assert routing["deployment"] in deps
    assert routing["fallbacks"] == []
    assert [(a["deployment"], a["ok"]) for a in routing["attempts"]] == [
        (routing["deployment"], True)
    ]
    served = deps[routing["deployment"]]
    (request,) = gw.requests
    assert request.model == served.upstream_model
    assert request.headers["authorization"] == f"Bearer {expected_key(served)}"


def first_route_per_fixture() -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for name, model in routes():
        seen.setdefault(name, model)
    return list(seen.items())


@pytest.mark.parametrize(("fixture", "model"), first_route_per_fixture(), ids=lambda v: str(v))
async def test_each_fixture_answers_async_too(
    fixture: str, model: str, gw: MockGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = on_mock(fixture, gw, monkeypatch)
    router = RouterChatModel.from_config(cfg, model=model, seed=1)
    msg = await router.ainvoke("hello")
    assert msg.response_metadata["routing"]["deployment"] in {
        d.id for d in cfg.group(cfg.resolve_group(model))
    }


@pytest.mark.parametrize(("fixture", "group", "error"), fallback_cases(), ids=lambda v: str(v))
def test_configured_fallbacks_serve_when_a_group_fails(
    fixture: str, group: str, error: str, gw: MockGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = on_mock(fixture, gw, monkeypatch)
    failing = cfg.group(group)
    behavior = Behavior(status=500) if error == "server" else Behavior(error="context_window")
    for dep in failing:
        gw.script(dep.upstream_model, behavior)
    kind = "general" if error == "server" else "context_window"
    target = cfg.resolve_group(cfg.fallback_chain(group, kind)[0])  # type: ignore[arg-type]
    router = RouterChatModel.from_config(cfg, model=group, seed=0)

    msg = router.invoke("hello")

    routing = msg.response_metadata["routing"]
    assert routing["fallbacks"] == [target] and routing["group"] == target
    assert routing["deployment"] in {d.id for d in cfg.group(target)}
    *failed, served = routing["attempts"]
    assert failed and all(a["group"] == group and not a["ok"] for a in failed)
    assert {a["kind"] for a in failed} == {"upstream" if error == "server" else "context_window"}
    assert served["ok"] and served["group"] == target
    # A context-window error is never retried inside the group; a 500 is, per num_retries.
    if error == "context_window":
        assert len(failed) == 1
    else:
        assert len(failed) <= router.engine.retry.num_retries + 1
