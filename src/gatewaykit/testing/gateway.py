"""MockGateway: an OpenAI-compatible upstream with scripted behaviour, on a real local port."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx

from gatewaykit.testing._app import CONTROL_TOKEN_HEADER, MockApp
from gatewaykit.testing._server import ServerThread, wait_for_port
from gatewaykit.testing._state import MockState, key_from_spec
from gatewaykit.testing.behavior import Behavior, RecordedRequest

__all__ = ["MockGateway"]

Mode = Literal["thread", "process"]


class _Control(Protocol):
    def script(self, model: str, behaviors: list[Behavior]) -> None: ...
    def reset(self) -> None: ...
    def add_key(self, spec: dict[str, Any]) -> None: ...
    def requests(self, model: str | None) -> list[RecordedRequest]: ...
    def count(self, model: str | None) -> int: ...
    def key_info(self, key: str) -> dict[str, Any] | None: ...


class _LocalControl:
    """Thread mode: the state is shared memory."""

    def __init__(self, state: MockState) -> None:
        self._state = state

    def script(self, model: str, behaviors: list[Behavior]) -> None:
        self._state.script(model, behaviors)

    def reset(self) -> None:
        self._state.reset()

    def add_key(self, spec: dict[str, Any]) -> None:
        self._state.add_key(key_from_spec(spec))

    def requests(self, model: str | None) -> list[RecordedRequest]:
        return self._state.requests(model)

    def count(self, model: str | None) -> int:
        return self._state.count(model)

    def key_info(self, key: str) -> dict[str, Any] | None:
        found = self._state.keys.get(key)
        return found.info() if found is not None else None


class _RemoteControl:
    """Process mode: the private ``/__mock__/...`` endpoint of the child."""

    def __init__(self, url: str, token: str) -> None:
        self._client = httpx.Client(
            base_url=url, headers={CONTROL_TOKEN_HEADER: token}, timeout=30.0, trust_env=False
        )

    def _call(self, action: str, payload: Any = None, **params: str) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        response = self._client.post(f"/__mock__/{action}", json=payload, params=query)
        if response.status_code != 200:
            raise ValueError(f"MockGateway control {action!r} failed: {response.text}")
        return response.json()["result"]

    def script(self, model: str, behaviors: list[Behavior]) -> None:
        self._call("script", {"model": model, "behaviors": [b.to_dict() for b in behaviors]})

    def reset(self) -> None:
        self._call("reset")

    def add_key(self, spec: dict[str, Any]) -> None:
        self._call("add_key", spec)

    def requests(self, model: str | None) -> list[RecordedRequest]:
        rows = self._call("requests", model=model) if model is not None else self._call("requests")
        return [RecordedRequest.from_dict(row) for row in rows]

    def count(self, model: str | None) -> int:
        result = self._call("count", model=model) if model is not None else self._call("count")
        return int(result)

    def key_info(self, key: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call("key_info", key=key)
        return result

    def close(self) -> None:
        self._client.close()


class MockGateway:
    """An OpenAI-compatible upstream (and LiteLLM-proxy look-alike) on ``127.0.0.1``.

    It answers ``POST /v1/chat/completions`` deterministically (echo, tool calls filled from the
    tool's schema, JSON for ``response_format``, SSE streams with a usage chunk), adds the
    ``x-litellm-*`` / ``x-ratelimit-*`` headers a LiteLLM proxy adds, and fails, stalls or cuts
    streams as scripted with :class:`Behavior`. It also emulates the proxy's virtual keys
    (allowed models, budget, rpm/tpm), whose real implementation needs a database::

        with MockGateway() as gw:
            gw.script("dep-a", Behavior(status=500))
            gw.script("dep-b", [Behavior(error="rate_limit", retry_after=1), Behavior()])
            llm = ChatOpenAI(model="dep-b", base_url=gw.base_url, api_key="sk-x")
            llm.invoke("hi")  # 429 with retry-after, then the SDK's retry succeeds
            assert gw.count("dep-b") == 2

    ``mode="thread"`` serves from a daemon thread of this process and shares state in memory;
    ``mode="process"`` runs the same ASGI app in a child process (benchmarks: the mock does not
    share the GIL with the client under test), and ``script``/``reset``/``add_key``/``requests``
    go over a private control endpoint. ``litellm_version="legacy"`` switches error statuses and
    shapes to the 2024-25 releases. Authorization is checked when ``require_auth`` is set, a
    ``master_key`` is given, or any key was added. ``record=False`` keeps no request log (counts
    still work).
    """

    def __init__(
        self,
        mode: Mode = "thread",
        *,
        litellm_version: str = "1.106.2",
        master_key: str | None = None,
        require_auth: bool = False,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
    ) -> None:
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be 'thread' or 'process', got {mode!r}")
        self.mode: Mode = mode
        self.litellm_version = litellm_version
        self.master_key = master_key
        self.require_auth = require_auth
        self.record = record
        self.host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._port: int | None = None
        self._thread: ServerThread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._control: _Control | None = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MockGateway:
        """Start serving and return once the port answers. Idempotent."""
        with self._lock:
            if self._control is not None:
                return self
            if self.mode == "thread":
                self._start_thread()
            else:
                self._start_process()
        return self

    def _start_thread(self) -> None:
        app = MockApp(
            litellm_version=self.litellm_version,
            master_key=self.master_key,
            require_auth=self.require_auth,
            record=self.record,
        )
        server = ServerThread(app, self.host, self._requested_port)
        server.start(self._startup_timeout)
        self._thread = server
        self._port = server.port
        self._control = _LocalControl(app.state)

    def _start_process(self) -> None:
        token = secrets.token_urlsafe(24)
        config = {
            "litellm_version": self.litellm_version,
            "master_key": self.master_key,
            "require_auth": self.require_auth,
            "record": self.record,
            "control_token": token,
            "host": self.host,
            "port": self._requested_port,
        }
        env = dict(os.environ)
        env["GATEWAYKIT_MOCK_CONFIG"] = json.dumps(config)
        src = str(Path(__file__).resolve().parents[2])  # so the child imports this very package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-m", "gatewaykit.testing._child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._process = process
        atexit.register(self._stop_process)
        line = _read_line(process, self._startup_timeout)
        if not line.strip().isdigit():
            self._stop_process()
            raise RuntimeError(
                f"MockGateway process failed to start (exit code {process.poll()}, output {line!r})"
            )
        self._port = int(line)
        wait_for_port(self.host, self._port, self._startup_timeout)
        self._control = _RemoteControl(self.url, token)

    def stop(self) -> None:
        """Stop serving; no thread or process is left behind. Idempotent."""
        with self._lock:
            control, self._control = self._control, None
            if isinstance(control, _RemoteControl):
                control.close()
            if self._thread is not None:
                self._thread.stop()
                self._thread = None
            self._stop_process()

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self._stop_process)
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()  # the child exits gracefully on EOF
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> MockGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MockGateway:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def running(self) -> bool:
        return self._control is not None

    @property
    def pid(self) -> int:
        """The serving process: this one in thread mode, the child in process mode."""
        if self._process is not None:
            return self._process.pid
        return os.getpid()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("MockGateway is not started; use `with MockGateway() as gw:`")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the proxy root: health, /key/info)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what an OpenAI client's ``base_url`` wants."""
        return f"{self.url}/v1"

    # -- scripting -------------------------------------------------------------------------
    def _ctl(self) -> _Control:
        if self._control is None:
            raise RuntimeError("MockGateway is not started; use `with MockGateway() as gw:`")
        return self._control

    def script(self, model: str, behavior: Behavior | Sequence[Behavior]) -> None:
        """Script calls whose ``model`` is ``model`` (``"*"``: every unscripted model; glob
        patterns like ``"dep-*"`` also match). A sequence plays one per call, the last repeats.
        Scripting a model again restarts its sequence."""
        behaviors = [behavior] if isinstance(behavior, Behavior) else list(behavior)
        if not behaviors or not all(isinstance(b, Behavior) for b in behaviors):
            raise TypeError("script() takes a Behavior or a non-empty sequence of Behavior")
        self._ctl().script(model, behaviors)

    def reset(self) -> None:
        """Forget scripts, keys and recorded requests."""
        self._ctl().reset()

    def add_key(
        self,
        key: str,
        *,
        models: Sequence[str] | None = None,
        max_budget: float | None = None,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        team_id: str | None = None,
        key_alias: str | None = None,
        spend: float = 0.0,
    ) -> None:
        """Emulate a LiteLLM virtual key (the proxy keeps these in its database).

        Once any key exists, calls need ``Authorization: Bearer <key>`` (or the master key).
        ``models`` limits the models (None or empty: all; ``"*"`` globs allowed); spend grows by
        each response's cost and calls fail with ``budget_exceeded`` once it reaches
        ``max_budget``; ``rpm_limit``/``tpm_limit`` are per 60-second sliding window and fail
        with the proxy limiter's 429.
        """
        self._ctl().add_key(
            {
                "key": key,
                "models": list(models) if models is not None else None,
                "max_budget": max_budget,
                "rpm_limit": rpm_limit,
                "tpm_limit": tpm_limit,
                "team_id": team_id,
                "key_alias": key_alias,
                "spend": spend,
            }
        )

    def key_info(self, key: str) -> dict[str, Any] | None:
        """Spend and limits of an emulated key (None if unknown)."""
        return self._ctl().key_info(key)

    # -- inspection ------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every recorded request, oldest first (a snapshot; health checks are not recorded)."""
        return self._ctl().requests(None)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return self._ctl().requests(model)

    def count(self, model: str | None = None) -> int:
        """Requests received for ``model`` (all requests if None); works with ``record=False``."""
        return self._ctl().count(model)

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"MockGateway(mode={self.mode!r}, {where})"


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's first stdout line, or "" if it did not come within ``timeout``."""
    result: list[bytes] = []

    def read() -> None:
        if process.stdout is not None:
            result.append(process.stdout.readline())

    reader = threading.Thread(target=read, name="MockGateway-startup", daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        process.kill()
        reader.join(5)
        return ""
    return result[0].decode(errors="replace") if result else ""
