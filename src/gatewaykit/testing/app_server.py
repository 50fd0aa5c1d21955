"""Any ASGI app on a free local port, in a background thread: for testing what `create_app`
serves (OpenAI-compatible routes, A2A, /metrics) with real HTTP clients."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

__all__ = ["AppServer"]


class AppServer:
    """Serve ``app`` with uvicorn on 127.0.0.1 until the ``with`` block ends.

    Example::

        from gatewaykit import create_app
        from gatewaykit.testing import AppServer

        with AppServer(create_app({"agent": my_agent})) as server:
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="x").models.list()
    """

    def __init__(self, app: Any, *, port: int | None = None, start_timeout: float = 20.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, name="app-server", daemon=True)

    def start(self) -> AppServer:
        """Start serving; returns once the port accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the app did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait for it (up to 10 s)."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
