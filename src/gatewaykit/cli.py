"""The ``gatewaykit`` command.

``gatewaykit demo`` runs the whole story on an embedded MockGateway (no keys, no network):
a LangChain chain and a tool call through :class:`GatewayChatModel` with what the gateway said
about each call, then the router failing over during an injected outage.

``gatewaykit serve --config config.yaml`` serves a :class:`RouterChatModel` for each model group
and alias of the config (or only the ``--model`` ones) behind an OpenAI-compatible API.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _demo_config(base_url: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "smart",
                "litellm_params": {
                    "model": "openai/smart-primary",
                    "api_base": base_url,
                    "api_key": "sk-demo-upstream",
                    "order": 1,
                },
                "model_info": {"id": "smart-primary"},
            },
            {
                "model_name": "smart",
                "litellm_params": {
                    "model": "openai/smart-secondary",
                    "api_base": base_url,
                    "api_key": "sk-demo-upstream",
                    "order": 2,
                },
                "model_info": {"id": "smart-secondary"},
            },
            {
                "model_name": "cheap",
                "litellm_params": {
                    "model": "openai/cheap-1",
                    "api_base": base_url,
                    "api_key": "sk-demo-upstream",
                },
                "model_info": {"id": "cheap-1"},
            },
        ],
        "router_settings": {
            "num_retries": 1,
            "fallbacks": [{"smart": ["cheap"]}],
            "cooldown_time": 30,
        },
    }


def demo(base_url: str | None = None, api_key: str | None = None, model: str | None = None) -> int:
    """Run the demo; against ``base_url`` when given, else an embedded MockGateway."""
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.tools import tool
    from pydantic import SecretStr
    from rich.console import Console
    from rich.table import Table

    from gatewaykit import GatewayChatModel, RouterChatModel
    from gatewaykit.testing import Behavior, MockGateway

    console = Console()
    t0 = time.perf_counter()
    mock: MockGateway | None = None
    if base_url is None:
        mock = MockGateway()
        mock.start()
        base_url = mock.base_url
        api_key = "sk-demo-master"
    try:
        console.rule("[bold]gatewaykit demo")
        console.print(f"gateway: {base_url}" + ("  (embedded MockGateway)" if mock else ""))

        llm = GatewayChatModel(
            base_url=base_url,
            api_key=SecretStr(api_key or "no-key"),
            model=model or "smart",
            gateway_tags=["demo"],
            end_user="demo-user",
        )
        table = Table(title="calls through GatewayChatModel")
        for col in ("call", "answer", "served by", "cost $"):
            table.add_column(col)

        chain = (
            ChatPromptTemplate.from_messages(
                [("system", "You answer in one sentence."), ("human", "{question}")]
            )
            | llm
        )
        msg = chain.invoke({"question": "What does a gateway do for an LLM app?"})
        gw = msg.response_metadata.get("gateway", {})
        table.add_row(
            "prompt | model",
            str(msg.content)[:60],
            str(gw.get("deployment_id")),
            f"{gw.get('response_cost', 0):.6f}",
        )

        @tool
        def multiply(a: int, b: int) -> int:
            """Multiply two integers."""
            return a * b

        tool_msg = llm.bind_tools([multiply]).invoke("What is 6 times 7?")
        gw = tool_msg.response_metadata.get("gateway", {})
        calls = ", ".join(f"{c['name']}({c['args']})" for c in tool_msg.tool_calls)
        table.add_row(
            "bind_tools",
            calls or str(tool_msg.content)[:60],
            str(gw.get("deployment_id")),
            f"{gw.get('response_cost', 0):.6f}",
        )
        console.print(table)

        if mock is not None:
            mock.script("smart-primary", Behavior(status=500, error="server"))
            with tempfile.TemporaryDirectory() as tmp:
                import yaml

                path = Path(tmp) / "config.yaml"
                path.write_text(yaml.safe_dump(_demo_config(base_url)))
                router = RouterChatModel.from_config(path, model="smart", seed=7)
                rt = Table(title="router during an outage of smart-primary")
                for col in ("request", "served by", "attempts"):
                    rt.add_column(col)
                for i in range(3):
                    out = router.invoke(f"request {i}: summarise the incident")
                    routing = out.response_metadata["routing"]
                    tried = " -> ".join(
                        f"{a['deployment']}:{'ok' if a['ok'] else a['kind']}"
                        for a in routing["attempts"]
                    )
                    rt.add_row(str(i), str(routing["deployment"]), tried)
                console.print(rt)
        console.print(f"done in {time.perf_counter() - t0:.1f}s")
        return 0
    finally:
        if mock is not None:
            mock.stop()


def serve_config(
    config: str,
    models: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: list[str] | None = None,
) -> int:
    """Serve a router per model name of ``config`` (all public names when ``models`` is empty)."""
    from gatewaykit.agents.serve import serve
    from gatewaykit.config import load_config
    from gatewaykit.routing.graph import RouterEngine
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatewaykit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the demo on an embedded MockGateway")
    d.add_argument("--base-url", help="a real OpenAI-compatible gateway instead of the mock")
    d.add_argument("--api-key", help="key for --base-url (default: $GATEWAYKIT_API_KEY)")
    d.add_argument("--model", help="model alias to call on --base-url")
    s = sub.add_parser("serve", help="serve a config's model groups as an OpenAI-compatible API")
    s.add_argument("--config", required=True, help="LiteLLM-style config.yaml")
    s.add_argument(
        "--model",
        action="append",
        help="a model group or alias to serve (repeatable; default: all public names)",
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--api-key",
        action="append",
        help="accepted bearer key (repeatable; default: comma-separated $GATEWAYKIT_SERVE_KEYS,"
        " none means no auth)",
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        import os

        key = args.api_key or os.environ.get("GATEWAYKIT_API_KEY")
        return demo(args.base_url, key, args.model)
    if args.command == "serve":
        import os

        keys = args.api_key or [
            k.strip() for k in os.environ.get("GATEWAYKIT_SERVE_KEYS", "").split(",") if k.strip()
        ]
        return serve_config(args.config, args.model, args.host, args.port, keys)
    return 2


if __name__ == "__main__":
    sys.exit(main())
