"""Task selection: the config names the tasks, the selector picks the model per request.

One config (the LiteLLM proxy's, plus a ``tasks:`` section) drives everything; the embedded
MockGateway stands in for the proxy. Each answer says which model served it and why, in
``response_metadata["task"]``:

1. the task's default model, its temperature, max_tokens and tags sent along;
2. a long input moved to the long-context model;
3. an image moved to a model with vision;
4. a cost ceiling moved to the cheaper model;
5. tasks detected per request (keywords, then an LLM classifier with a cache);
6. a task budget: cheaper model at 80 %, refused when spent.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage

from gatewaykit import BudgetExceeded
from gatewaykit.selector import TaskSelector
from gatewaykit.testing import Behavior, MockGateway


def config(proxy_url: str) -> dict[str, Any]:
    def group(name: str, upstream: str, **info: Any) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": upstream}, "model_info": info}

    return {
        "model_list": [
            group(
                "smart",
                "anthropic/claude-sonnet-4-6",
                max_input_tokens=1000,
                input_cost_per_token=3e-6,
                output_cost_per_token=15e-6,
                supports_function_calling=True,
                supports_vision=False,
            ),
            group(
                "vision",
                "openai/gpt-4o",
                supports_vision=True,
                input_cost_per_token=2.5e-6,
                output_cost_per_token=10e-6,
            ),
            group(
                "big",
                "gemini/gemini-2.5-pro",
                max_input_tokens=1_000_000,
                input_cost_per_token=1.25e-6,
                output_cost_per_token=10e-6,
            ),
            group(
                "cheap",
                "openai/gpt-4o-mini",
                max_input_tokens=128_000,
                input_cost_per_token=0.15e-6,
                output_cost_per_token=0.6e-6,
            ),
        ],
        "gateway": {"base_url": proxy_url, "api_key": "sk-team-virtual-key"},
        "tasks": {
            "code_review": {
                "model": "smart",
                "long_context_model": "big",
                "cheaper_model": "cheap",
                "temperature": 0.1,
                "max_tokens": 400,
                "tags": ["code"],
                "keywords": ["review", "diff", "pull request"],
                "description": "Review code changes and point out bugs",
                "budget": 1.0,
            },
            "summarize": {
                "model": "smart",
                "cheaper_model": "cheap",
                "max_cost_per_call": 0.002,
                "keywords": ["summarize", "tl;dr"],
                "description": "Condense long documents into short summaries",
            },
            "describe_image": {
                "model": "smart",
                "fallback_model": "vision",
                "requires": ["vision"],
            },
        },
    }


def show(label: str, msg: Any) -> dict[str, Any]:
    task: dict[str, Any] = msg.response_metadata["task"]
    print(f"  {label}: {task['task']} -> {task['model']}: {task['reason']}")
    return task


def main() -> None:
    with MockGateway() as gw:
        cfg = config(gw.base_url)
        selector = TaskSelector.from_config(cfg)
        print(f"1. {selector!r}")
        review = selector.for_task("code_review")
        show("short diff", review.invoke("Review this diff: - x = 1 + x = 2"))
        sent = gw.requests_for("smart")[-1]
        print(f"  sent tags: {sent.headers['x-litellm-tags']}")

        print("2. a long input")
        show("long diff", review.invoke("Review this diff: " + "+ line\n" * 600))

        print("3. an image")
        image = HumanMessage(
            content=[
                {"type": "text", "text": "What is on this whiteboard?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            ]
        )
        show("photo", selector.for_task("describe_image").invoke([image]))

        print("4. a cost ceiling")
        show("report", selector.for_task("summarize").invoke("Quarterly report: " + "x " * 1500))

        print("5. tasks detected per request")
        auto = selector.as_runnable()
        for text in ("tl;dr of this thread please", "Please review the pull request"):
            task = auto.invoke(text).response_metadata["task"]
            print(f"  detected {task['task']} by {task['detected_by']}: {task['detection']}")
        named = auto.invoke("hello", config={"configurable": {"task": "summarize"}})
        print(f"  configurable task: {named.response_metadata['task']['task']}")

        llm = TaskSelector.from_config(cfg, classifier="llm")
        gw.script("cheap", Behavior(content="describe_image"))
        llm_auto = llm.as_runnable()
        for _ in range(2):
            task = llm_auto.invoke("what do you see here?").response_metadata["task"]
            print(f"  llm classifier: {task['task']} - {task['detection']}")
        print(f"  classifier calls sent: {llm.classifier_calls}")

        print("6. a $1/day budget for code_review: $0.45 a call on smart, $0.05 on cheap")
        gw.reset()
        gw.script("smart", Behavior(cost=0.45))
        gw.script("cheap", Behavior(cost=0.05))
        budgeted = TaskSelector.from_config(cfg).for_task("code_review")  # fresh spend
        for i in range(5):
            try:
                task = budgeted.invoke(f"Review change {i}").response_metadata["task"]
                print(f"  call {i}: {task['model']} (budget {task['budget_used']:.0%} used)")
            except BudgetExceeded as exc:
                print(f"  call {i}: BudgetExceeded(scope={exc.scope}): {exc}")
        print(f"  the gateway saw {gw.count('smart')} calls to smart, {gw.count('cheap')} to cheap")


if __name__ == "__main__":
    main()
