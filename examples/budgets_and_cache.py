"""Budgets that stop spend before it happens, and a response cache that avoids it.

A team gets $0.04 a day; each call through the router costs what the gateway reports ($0.02
here). The third call is refused before it leaves the process. A SQLite response cache then
answers a repeated question without calling the gateway at all.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gatewaykit import (
    Budget,
    BudgetExceeded,
    BudgetManager,
    RouterChatModel,
    SQLiteResponseCache,
)
from gatewaykit.testing import Behavior, MockGateway


def config(base_url: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "smart",
                "litellm_params": {"model": "openai/smart-a", "api_base": base_url, "api_key": "k"},
            }
        ]
    }


def main() -> None:
    with MockGateway() as gw, tempfile.TemporaryDirectory() as tmp:
        gw.script("smart-a", Behavior(cost=0.02))
        budgets = BudgetManager(
            [Budget(0.04, "1d", scope="team", key="search", soft_limit=0.02)],
            on_soft_limit=lambda a: print(f"  soft limit: {a.budget.label}, ${a.spent:.2f} spent"),
        )
        router = RouterChatModel.from_config(config(gw.base_url), model="smart", budgets=budgets)
        team = router.bind(gateway_metadata={"team": "search"})

        print("1. a $0.04/day team budget, $0.02 a call")
        for i in range(3):
            try:
                msg = team.invoke(f"question {i}")
                print(f"  call {i}: ok, cost ${msg.response_metadata['routing']['cost']:.2f}")
            except BudgetExceeded as exc:
                print(f"  call {i}: BudgetExceeded(scope={exc.scope}): {exc}")
        print(f"  the gateway saw {gw.count('smart-a')} calls")

        print("2. a response cache")
        cache = SQLiteResponseCache(Path(tmp) / "llm.sqlite")
        cached = RouterChatModel.from_config(config(gw.base_url), model="smart", cache=cache)
        for _ in range(2):
            msg = cached.invoke("What is a gateway?")
            print(f"  cache: {msg.response_metadata['cache']}")
        print(f"  the gateway saw {gw.count('smart-a')} calls")


if __name__ == "__main__":
    main()
