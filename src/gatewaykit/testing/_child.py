"""Process-mode entry point: ``python -m gatewaykit.testing._child``.

Configuration arrives in the environment (never argv, which other users can read). The child
prints its port once it listens, and exits when its stdin closes, so it cannot outlive a parent
that died without calling ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from typing import Any

from gatewaykit.testing._app import MockApp
from gatewaykit.testing._server import bind, serve_forever

CONFIG_ENV = "GATEWAYKIT_MOCK_CONFIG"


def main() -> None:
    config: dict[str, Any] = json.loads(os.environ.pop(CONFIG_ENV))
    app = MockApp(
        litellm_version=config["litellm_version"],
        master_key=config["master_key"],
        require_auth=config["require_auth"],
        record=config["record"],
        control_token=config["control_token"],
    )
    sock = bind(config["host"], config["port"])
    port = sock.getsockname()[1]

    def on_started(server: Any, loop: asyncio.AbstractEventLoop) -> None:
        def stop() -> None:
            app.begin_shutdown()
            server.should_exit = True

        def watch_stdin() -> None:
            with contextlib.suppress(Exception):
                sys.stdin.buffer.read()  # EOF: stop() closed the pipe, or the parent died
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop)

        threading.Thread(target=watch_stdin, name="parent-watch", daemon=True).start()
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()

    serve_forever(app, sock, on_started)


if __name__ == "__main__":
    main()
