"""The ``gatewaykit`` command.

* ``gatewaykit demo``: the whole story on an embedded MockGateway (no keys, no network), or
  against a real gateway with ``--base-url`` / ``--config``;
* ``gatewaykit check config.yaml``: validate a config, list what it defines, find fallback
  cycles, missing environment variables and agents without an ``api_base``;
* ``gatewaykit route "prompt" --config config.yaml --explain``: which group and deployment
  would serve a prompt, and why, without sending it (``--send`` sends it);
* ``gatewaykit serve --config config.yaml``: a router per model group behind an
  OpenAI-compatible API, as A2A agents, and with Prometheus ``/metrics``;
* ``gatewaykit bench``: the client-side overhead of GatewayChatModel and RouterChatModel over
  bare ChatOpenAI, on a MockGateway.
"""

from __future__ import annotations

import argparse
import os
import sys

from gatewaykit.config_errors import ConfigError

__all__ = ["main"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewaykit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the whole story on an embedded MockGateway (~10 s)")
    d.add_argument(
        "--config",
        help="a config.yaml for a real gateway (its gateway: section or "
        "its deployments) instead of the mock",
    )
    d.add_argument("--base-url", help="a real OpenAI-compatible gateway instead of the mock")
    d.add_argument("--api-key", help="key for --base-url (default: $GATEWAYKIT_API_KEY)")
    d.add_argument("--model", help="model alias to call on the real gateway")

    c = sub.add_parser("check", help="validate config files and list what they define")
    c.add_argument("configs", nargs="+", metavar="config.yaml")
    c.add_argument("--strict", action="store_true", help="warnings fail the check too")
    c.add_argument("--json", action="store_true", help="machine-readable output")

    r = sub.add_parser("route", help="which group and deployment would serve a prompt, and why")
    r.add_argument("prompt")
    r.add_argument(
        "--config",
        default=os.environ.get("GATEWAYKIT_CONFIG", "config.yaml"),
        help="config.yaml (default: $GATEWAYKIT_CONFIG or ./config.yaml)",
    )
    r.add_argument("--model", help="model group or alias (default: chosen by the task)")
    r.add_argument("--task", help="a task of the config's tasks: section (default: detected)")
    r.add_argument("--tags", nargs="+", default=[], help="request tags (tag routing, budgets)")
    r.add_argument(
        "--needs",
        nargs="+",
        default=[],
        choices=["tools", "vision", "json_schema"],
        help="capabilities the request needs (as if it bound tools, sent an image...)",
    )
    r.add_argument("--explain", action="store_true", help="show every rule and deployment")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--send", action="store_true", help="also send the prompt and show the answer")
    r.add_argument("--seed", type=int, default=None, help="seed for random strategies")
    r.add_argument(
        "--shared-state",
        action="store_true",
        help="read cooldowns and usage from the config's Redis instead of a fresh process",
    )

    s = sub.add_parser(
        "serve", help="serve a config's model groups as an OpenAI-compatible API, A2A and /metrics"
    )
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
    s.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=None,
        help="largest request body accepted, in bytes; bigger ones get 413 (default 8 MiB)",
    )

    b = sub.add_parser("bench", help="overhead over bare ChatOpenAI, on a MockGateway")
    b.add_argument("--n", type=_positive, default=200, help="timed calls per variant (default 200)")
    b.add_argument("--warmup", type=int, default=10, help="untimed calls per variant first")
    b.add_argument(
        "--mock",
        choices=["process", "thread"],
        default="process",
        help="run the mock in a child process (default: it does not share the GIL) or a thread",
    )
    b.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's Router")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``gatewaykit`` command; returns the exit code.

    Example::

        from gatewaykit.cli import main
        main(["check", "config.yaml", "--strict"])
    """
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # `gatewaykit check --json x.yaml | head`: the reader left; exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from gatewaykit.cli.serve import serve_config

        keys = args.api_key or [
            k.strip() for k in os.environ.get("GATEWAYKIT_SERVE_KEYS", "").split(",") if k.strip()
        ]
        return serve_config(
            args.config, args.model, args.host, args.port, keys, args.max_body_bytes
        )
    if args.command == "check":
        from gatewaykit.cli.check import run_check

        code, text = run_check(args.configs, strict=args.strict, as_json=args.json)
        print(text)
        return code
    try:
        if args.command == "demo":
            from gatewaykit.cli.demo import run_demo

            key = args.api_key or os.environ.get("GATEWAYKIT_API_KEY")
            return run_demo(
                config=args.config, base_url=args.base_url, api_key=key, model=args.model
            )
        if args.command == "route":
            from gatewaykit.cli.route import run_route

            return run_route(args)
        if args.command == "bench":
            from gatewaykit.cli.bench import run_bench

            return run_bench(
                n=args.n,
                warmup=args.warmup,
                mock_mode=args.mock,
                litellm=not args.no_litellm,
                as_json=args.json,
            )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
