"""A real LiteLLM proxy (the pinned package), started once per session in front of MockGateway.

MockGateway stands for the LLM providers (no keys, no internet here). The proxy runs with its
master key only: virtual keys and budgets need its database client, which downloads an engine at
first use and cannot run offline; those paths are tested against MockGateway's emulation of the
documented shapes instead (tests/unit/test_chat_model.py).
"""

from __future__ import annotations

import contextlib
import os
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

from gatewaykit.testing import MockGateway

MASTER_KEY = "sk-proxy-master-key-for-tests"


@dataclass
class Proxy:
    url: str
    base_url: str
    master_key: str
    upstream: MockGateway
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _litellm_bin() -> str:
    exe = Path(sys.executable).with_name("litellm")
    if exe.exists():
        return str(exe)
    found = shutil.which("litellm")
    if not found:
        pytest.fail("the pinned litellm[proxy] is not installed: run `make sync`")
    return found


def proxy_config(upstream: str) -> dict[str, object]:
    def dep(name: str, model: str, dep_id: str, **extra: object) -> dict[str, object]:
        return {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{model}",
                "api_base": upstream,
                "api_key": "sk-upstream-provider-key",
                "input_cost_per_token": 0.000001,
                "output_cost_per_token": 0.000002,
                **extra,
            },
            "model_info": {"id": dep_id},
        }

    return {
        "model_list": [
            dep("chat", "up-ok", "dep-ok"),
            dep("flaky", "up-fail", "dep-fail"),
            dep("limited", "up-429", "dep-429"),
            dep("long", "up-context", "dep-context"),
            dep("unsafe", "up-policy", "dep-policy"),
            dep("tagged", "up-team-a", "dep-team-a", tags=["team-a"]),
            dep("tagged", "up-default", "dep-default", tags=["default"]),
        ],
        "router_settings": {
            "num_retries": 0,
            "fallbacks": [{"flaky": ["chat"]}],
            "enable_tag_filtering": True,
        },
        "litellm_settings": {"telemetry": False, "drop_params": True},
        "general_settings": {"master_key": MASTER_KEY},
    }


@contextlib.contextmanager
def run_litellm_proxy(config: dict[str, Any], tmp: Path) -> Iterator[str]:
    """The pinned LiteLLM proxy on ``config`` (written to ``tmp/proxy.yaml``), until the block
    ends; yields its root URL. Its log is ``tmp/proxy.log``, quoted when it fails to start."""
    path = tmp / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    port = _free_port()
    log = tmp / "proxy.log"
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_litellm_bin(), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"litellm proxy exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"litellm proxy did not start in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    from gatewaykit.testing import Behavior

    tmp = tmp_path_factory.mktemp("litellm-proxy")
    upstream = MockGateway()
    upstream.start()
    upstream.script("up-fail", Behavior(status=500, error="server"))
    upstream.script("up-429", Behavior(status=429, error="rate_limit", retry_after=9))
    upstream.script("up-context", Behavior(status=400, error="context_window"))
    upstream.script("up-policy", Behavior(status=400, error="content_policy"))
    try:
        with run_litellm_proxy(proxy_config(upstream.base_url), tmp) as url:
            yield Proxy(url, f"{url}/v1", MASTER_KEY, upstream, tmp / "proxy.log")
    finally:
        upstream.stop()
