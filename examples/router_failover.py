"""The router during an outage: retries, a fallback group, and an honest stream.

One config (the LiteLLM proxy's config.yaml dialect) describes a group of two deployments and a
cheaper fallback group. The script breaks deployments on an embedded MockGateway and shows what
RouterChatModel does about it:

1. the primary deployment answers 500: the retry goes to the other deployment of the group;
2. the whole group is down: the request moves to the fallback group;
3. a stream breaks after its first tokens: ``StreamInterrupted`` carries the partial text,
   instead of a silently truncated answer; with ``on_stream_interrupt="restart"`` the answer
   restarts on a healthy deployment and arrives whole.
"""

from __future__ import annotations

from typing import Any

from gatewaykit import RetryPolicy, RouterChatModel, StreamInterrupted
from gatewaykit.testing import Behavior, MockGateway


def config(base_url: str) -> dict[str, Any]:
    def deployment(group: str, name: str, order: int = 1) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": base_url,
                "api_key": "sk-provider-key",
                "order": order,
            },
            "model_info": {"id": name},
        }

    return {
        "model_list": [
            deployment("smart", "primary-a", order=1),
            deployment("smart", "primary-b", order=2),
            deployment("cheap", "cheap-a"),
        ],
        "router_settings": {"num_retries": 1, "fallbacks": [{"smart": ["cheap"]}]},
    }


def show(title: str, routing: dict[str, Any]) -> None:
    steps = " -> ".join(
        f"{a['deployment']}:{'ok' if a['ok'] else a['kind']}" for a in routing["attempts"]
    )
    print(f"{title}\n  served by: {routing['deployment']}\n  attempts:  {steps}")
    if routing["fallbacks"]:
        print(f"  fallback groups taken: {routing['fallbacks']}")


def main() -> None:
    with MockGateway() as gw:
        fast = RetryPolicy(num_retries=1, initial_backoff=0.05)
        router = RouterChatModel.from_config(config(gw.base_url), model="smart", retry=fast)

        gw.script("primary-a", Behavior(status=500))
        msg = router.invoke("Summarise the incident report.")
        show("1. primary-a is down", msg.response_metadata["routing"])

        gw.script("primary-b", Behavior(status=503))
        msg = router.invoke("Summarise it again.")
        show("2. the whole smart group is down", msg.response_metadata["routing"])

        gw.reset()
        gw.script("primary-a", Behavior(content="The outage began at", stream_cut_after=2))
        print("3. a stream that breaks after two chunks")
        received = ""
        try:
            for chunk in router.stream("Tell me what happened."):
                received += str(chunk.content)
        except StreamInterrupted as exc:
            print(f"  StreamInterrupted after {received!r}: partial_text={exc.partial_text!r}")

        restarting = router.model_copy(update={"on_stream_interrupt": "restart"})
        text = ""
        routing: dict[str, Any] = {}
        for chunk in restarting.stream("Tell me what happened."):
            text += str(chunk.content)
            routing = chunk.response_metadata.get("routing", routing)
        print(f"  with on_stream_interrupt='restart': {text!r}")
        show("  restarted answer", routing)


if __name__ == "__main__":
    main()
