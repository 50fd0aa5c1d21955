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
) -> int:
    """Serve a router per model name of ``config`` (all public names when ``models`` is empty).

    Example::

        serve_config("config.yaml", ["smart"], port=8000, api_keys=["sk-team"])
    """
    from gatewaykit.agents.serve import serve
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
    serve(served, host=host, port=port, api_keys=api_keys or None)
    return 0
