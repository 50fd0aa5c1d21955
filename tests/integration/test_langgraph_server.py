"""graphs/router.py served by ``langgraph dev`` (langgraph-cli[inmem]) in front of MockGateway.

One server per session, started from a temporary directory whose ``langgraph.json`` points at the
repository's graph, so the server's ``.langgraph_api/`` state stays out of the working tree. Each
test routes to its own model group (a failing deployment tried first, then a healthy one), so the
router's cooldowns, which live in the server process, do not leak from one test into another.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gatewaykit.testing import Behavior, MockGateway

pytestmark = pytest.mark.langgraph_server

REPO = Path(__file__).resolve().parents[2]
GRAPH_FILE = REPO / "graphs" / "router.py"
STARTUP_TIMEOUT_S = 90.0
# Model group -> (upstream model of the failing deployment, of the healthy one).
GROUPS = {"chat": ("up-fail-chat", "up-ok-chat"), "streamed": ("up-fail-stream", "up-ok-stream")}


@dataclass
class Server:
    url: str
    upstream: MockGateway
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _langgraph_bin() -> str:
    exe = Path(sys.executable).with_name("langgraph")
    if exe.exists():
        return str(exe)
    found = shutil.which("langgraph")
    if not found:
        pytest.fail("langgraph-cli[inmem] is not installed: run `make sync`")
    return found


@contextlib.contextmanager
def langgraph_dev(
    tmp: Path, upstream: MockGateway, env: dict[str, str], drop: tuple[str, ...] = ()
) -> Iterator[Server]:
    """``langgraph dev`` on ``tmp/langgraph.json`` until the block ends, once it answers /ok.
    ``env`` is added to this process's environment (``drop`` names are removed)."""
    port = _free_port()
    log = tmp / "langgraph-dev.log"
    full_env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
        **env,
    }
    for name in drop:
        full_env.pop(name, None)
    cmd = [
        _langgraph_bin(),
        "dev",
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    server = Server(f"http://127.0.0.1:{port}", upstream, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(f"{server.url}/ok", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"langgraph dev did not answer /ok in {STARTUP_TIMEOUT_S:.0f} s:\n"
                    f"{server.log_tail()}"
                )
            time.sleep(0.25)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def router_config(upstream: str) -> dict[str, Any]:
    def dep(group: str, model: str, order: int) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{model}",
                "api_base": upstream,
                "api_key": "sk-x",
                "order": order,  # the failing deployment (order 1) is always tried first
            },
            "model_info": {"id": f"dep-{model}"},
        }

    return {
        "model_list": [
            dep(group, model, order)
            for group, models in GROUPS.items()
            for order, model in enumerate(models, start=1)
        ],
        # One failure cools a deployment down, so the retry goes to the group's other one.
        "router_settings": {"num_retries": 1, "allowed_fails": 0, "cooldown_time": 60},
    }


@pytest.fixture(scope="session")
def langgraph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("langgraph-server")
    upstream = MockGateway()
    upstream.start()
    for failing, _ in GROUPS.values():
        upstream.script(failing, Behavior(status=500))
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(router_config(upstream.base_url)))
    (tmp / "langgraph.json").write_text(
        json.dumps({"dependencies": [str(REPO)], "graphs": {"router": f"{GRAPH_FILE}:graph"}})
    )
    env = {"GATEWAYKIT_CONFIG": str(config)}
    try:
        with langgraph_dev(tmp, upstream, env, drop=("GATEWAYKIT_MODEL",)) as server:
            yield server
    finally:
        upstream.stop()


@pytest.fixture
def client(langgraph_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=langgraph_server.url, timeout=60, trust_env=False) as c:
        yield c


def _ai(messages: list[dict[str, Any]]) -> dict[str, Any]:
    assert messages[-1]["type"] == "ai", messages
    return messages[-1]


def _assert_failover(routing: dict[str, Any], group: str) -> None:
    failing, healthy = GROUPS[group]
    assert routing["group"] == group
    assert routing["deployment"] == f"dep-{healthy}"
    attempts = routing["attempts"]
    assert [a["deployment"] for a in attempts] == [f"dep-{failing}", f"dep-{healthy}"]
    assert attempts[0]["ok"] is False and attempts[0]["status"] == 500
    assert attempts[1]["ok"] is True


def _sse(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a server-sent event stream."""
    event, data = "", []
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield event, json.loads("\n".join(data))
            event, data = "", []


def test_runs_wait_answers_after_failover(langgraph_server: Server, client: httpx.Client) -> None:
    body = {"assistant_id": "router", "input": {"messages": [{"role": "user", "content": "ping"}]}}
    response = client.post("/runs/wait", json=body)
    assert response.status_code == 200, response.text
    state = response.json()
    assert set(state) == {"messages"}, state  # model/tags are input-only
    reply = _ai(state["messages"])
    assert reply["content"] == "Echo: ping"
    _assert_failover(reply["response_metadata"]["routing"], "chat")  # the config's first group
    assert langgraph_server.upstream.count("up-fail-chat") == 1
    assert langgraph_server.upstream.count("up-ok-chat") == 1


def test_streamed_run_yields_each_token_once(
    langgraph_server: Server, client: httpx.Client
) -> None:
    prompt = "stream these words please"
    body = {
        "assistant_id": "router",
        "input": {"messages": [{"role": "user", "content": prompt}], "model": "streamed"},
        "stream_mode": ["messages-tuple", "values"],
    }
    tokens: list[str] = []
    ids: set[str] = set()
    final: dict[str, Any] | None = None
    with client.stream("POST", "/runs/stream", json=body) as response:
        assert response.status_code == 200, response.read()
        for event, data in _sse(response):
            assert event != "error", data
            if event == "messages":
                chunk, metadata = data
                assert metadata["langgraph_node"] == "route"
                if chunk["content"]:
                    tokens.append(chunk["content"])
                    ids.add(chunk["id"])
            elif event == "values":
                final = data
    assert final is not None
    reply = _ai(final["messages"])
    assert reply["content"] == f"Echo: {prompt}"
    assert len(tokens) > 1  # streamed token by token, not as one message
    assert "".join(tokens) == reply["content"]  # every token exactly once, none doubled
    assert ids == {reply["id"]}  # one streamed message: no second copy from an inner model
    _assert_failover(reply["response_metadata"]["routing"], "streamed")
    assert langgraph_server.upstream.count("up-fail-stream") == 1
    assert langgraph_server.upstream.count("up-ok-stream") == 1


def test_unknown_alias_fails_the_run_with_the_known_groups(client: httpx.Client) -> None:
    body = {
        "assistant_id": "router",
        "input": {"messages": [{"role": "user", "content": "ping"}], "model": "no-such-group"},
    }
    response = client.post("/runs/wait", json=body)
    assert "no-such-group" in response.text and "chat" in response.text, response.text


def test_missing_config_fails_at_load_naming_the_env_var(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAYKIT_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(FileNotFoundError, match="GATEWAYKIT_CONFIG"):
        runpy.run_path(str(GRAPH_FILE))
