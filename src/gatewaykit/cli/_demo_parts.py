"""The pieces the demo is built from: its config, the agent's tools, the review schema."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import BaseModel

__all__ = ["TOOLS", "CodeReview", "build_agent", "demo_config"]

DIFF = "+ def load(path):\n+     return eval(open(path).read())\n"


class CodeReview(BaseModel):
    """A code review verdict."""

    score: int
    issues: list[str]
    recommendation: Literal["approve", "request_changes", "needs_work"]


@tool
def calculator(expression: str) -> str:
    """Multiply two integers written as 'a*b'."""
    left, _, right = expression.partition("*")
    try:
        return str(int(left) * int(right))
    except ValueError:
        return f"cannot compute {expression!r}: write two integers as a*b"


@tool
def current_time() -> str:
    """The current UTC time."""
    return "12:00 UTC"


TOOLS = [calculator, current_time]


def build_agent(llm: BaseChatModel, name: str = "math-agent") -> Any:
    """A small ReAct agent: a model node and a tool node, looping until the model answers."""
    bound = llm.bind_tools(TOOLS)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(name=name)


def demo_config(base_url: str) -> dict[str, Any]:
    """The demo's config, in the LiteLLM proxy's config.yaml dialect, on the embedded mock."""

    def deployment(group: str, id_: str, order: int | None = None, **info: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": f"openai/{id_}",
            "api_base": base_url,
            "api_key": "sk-demo-upstream",
        }
        if order is not None:
            params["order"] = order
        return {"model_name": group, "litellm_params": params, "model_info": {"id": id_, **info}}

    smart = {
        "max_input_tokens": 1000,
        "input_cost_per_token": 3e-6,
        "output_cost_per_token": 15e-6,
        "supports_function_calling": True,
    }
    return {
        "model_list": [
            deployment("smart", "smart-primary", 1, **smart),
            deployment("smart", "smart-secondary", 2, **smart),
            deployment(
                "big",
                "big-1",
                max_input_tokens=1_000_000,
                input_cost_per_token=1.25e-6,
                output_cost_per_token=10e-6,
            ),
            deployment(
                "cheap",
                "cheap-1",
                max_input_tokens=128_000,
                input_cost_per_token=0.15e-6,
                output_cost_per_token=0.6e-6,
            ),
        ],
        "router_settings": {
            "num_retries": 1,
            "cooldown_time": 30,
            "fallbacks": [{"smart": ["cheap"]}],
            "context_window_fallbacks": [{"smart": ["big"]}],
        },
        "tasks": {
            "code_review": {
                "model": "smart",
                "long_context_model": "big",
                "cheaper_model": "cheap",
                "temperature": 0.1,
                "tags": ["code"],
                "keywords": ["review", "diff", "pull request"],
            },
            "summarize": {
                "model": "cheap",
                "keywords": ["summarize", "tl;dr"],
                "tags": ["docs"],
            },
        },
    }
