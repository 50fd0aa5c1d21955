"""``gatewaykit serve``: a config's model groups behind an OpenAI-compatible API."""

from __future__ import annotations

import sys

__all__ = ["serve_config"]


def serve_config(
    config: str,
    models: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: list[str] | None = None,
    max_body_bytes: int | None = None,
) -> int:
    """Serve a router per model name of ``config`` (all public names when ``models`` is empty);
    request bodies over ``max_body_bytes`` (default 8 MiB) are answered 413.

    Example::

        serve_config("config.yaml", ["smart"], port=8000, api_keys=["sk-team"])
    """
    from gatewaykit.agents.serve import DEFAULT_MAX_BODY_BYTES, serve
    from gatewaykit.config import load_config
    from gatewaykit.routing.engine import RouterEngine
    from gatewaykit.routing.model import RouterChatModel

    cfg = load_config(config)
    names = models or cfg.public_models()
    for name in names:
        cfg.resolve_group(name)  # a typo fails here, naming the known groups
    engine = RouterEngine(cfg)  # one engine: cooldowns and budgets are shared across names
    served = {name: RouterChatModel(config=cfg, model=name, engine=engine) for name in names}
    print(f"serving {', '.join(names)} on http://{host}:{port}/v1", file=sys.stderr)
    limit = max_body_bytes if max_body_bytes is not None else DEFAULT_MAX_BODY_BYTES
    serve(served, host=host, port=port, api_keys=api_keys or None, max_body_bytes=limit)
    return 0
