"""Langfuse traces of routed calls: routing, attempts, fallbacks, gateway cost, user and session.

No Langfuse server is needed: the script runs a tiny OTLP/HTTP receiver on a local port, in the
place of Langfuse's ``/api/public/otel/v1/traces`` endpoint, and points the Langfuse SDK at it.
It decodes what the SDK really exports and prints the generation of a call whose first
deployment answered 500 and whose fallback group served it. In production, set
``LANGFUSE_PUBLIC_KEY`` / ``LANGFUSE_SECRET_KEY`` / ``LANGFUSE_BASE_URL`` and call
``langfuse_callbacks()`` with no arguments; without keys it returns ``[]`` and nothing runs.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langfuse import get_client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gatewaykit import RouterChatModel
from gatewaykit.observability import langfuse_callbacks
from gatewaykit.testing import Behavior, MockGateway

SPANS: list[dict[str, Any]] = []


class Receiver(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP protobuf trace exports and keeps each span's attributes."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attrs = {a.key: a.value for a in span.attributes}
                    SPANS.append({"name": span.name, "attrs": attrs})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def text(attrs: dict[str, Any], key: str) -> Any:
    value = attrs.get(key)
    if value is None:
        return None
    if value.HasField("array_value"):
        return [v.string_value for v in value.array_value.values]
    return value.string_value


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("LANGFUSE_")}
    print("no keys: langfuse_callbacks() ->", langfuse_callbacks())  # a no-op: nothing connects
    os.environ.update(saved)

    callbacks = langfuse_callbacks(
        public_key="pk-lf-example",
        secret_key="sk-lf-example",
        base_url=f"http://127.0.0.1:{server.server_port}",
    )
    with MockGateway() as gw:
        gw.script("primary-a", Behavior(status=500))
        gw.script(
            "cheap-a", Behavior(cost=0.25, usage={"prompt_tokens": 11, "completion_tokens": 7})
        )

        def dep(group: str, name: str) -> dict[str, Any]:
            params = {"model": f"openai/{name}", "api_base": gw.base_url, "api_key": "sk-p"}
            return {"model_name": group, "litellm_params": params, "model_info": {"id": name}}

        router = RouterChatModel.from_config(
            {
                "model_list": [dep("smart", "primary-a"), dep("cheap", "cheap-a")],
                "router_settings": {"num_retries": 0, "fallbacks": [{"smart": ["cheap"]}]},
            },
            model="smart",
        )
        router.invoke(  # a chat model called directly: no chain around it
            "Summarise the incident.",
            config={
                "callbacks": callbacks,
                "tags": ["incident-review"],
                "metadata": {"langfuse_user_id": "user-42", "langfuse_session_id": "sess-7"},
            },
        )
    get_client(public_key="pk-lf-example").flush()  # short scripts flush before exiting
    server.shutdown()

    gen = next(s for s in SPANS if text(s["attrs"], "langfuse.observation.type") == "generation")
    a = gen["attrs"]
    routing = json.loads(text(a, "langfuse.observation.metadata.routing"))
    steps = " -> ".join(
        f"{x['deployment']}:{'ok' if x['ok'] else x['kind']}" for x in routing["attempts"]
    )
    print(f"spans exported: {len(SPANS)} ({', '.join(sorted({s['name'] for s in SPANS}))})")
    print(f"generation: model={text(a, 'langfuse.observation.model.name')}")
    print(f"  usage: {text(a, 'langfuse.observation.usage_details')}")
    print(f"  cost: {text(a, 'langfuse.observation.cost_details')}")
    print(f"  routing: {steps}; fallbacks {routing['fallbacks']}")
    print(
        f"trace: user={text(a, 'user.id')} session={text(a, 'session.id')} "
        f"tags={text(a, 'langfuse.trace.tags')}"
    )


if __name__ == "__main__":
    main()
