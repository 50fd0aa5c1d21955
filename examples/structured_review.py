"""A validated CodeReview from a chat model, repaired when the first answer is wrong.

Runs against an embedded MockGateway, scripted to answer once correctly and once with a
schema violation; point GATEWAY_URL / GATEWAY_KEY / GATEWAY_MODEL at a real LiteLLM proxy to use
it there (the model then decides what it answers).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel

from gatewaykit import GatewayChatModel, StructuredOutputError
from gatewaykit.structured import structured
from gatewaykit.testing import Behavior, MockGateway

DIFF = """\
+ def load(path):
+     return eval(open(path).read())
"""


class CodeReview(BaseModel):
    """A code review verdict."""

    score: int
    issues: list[str]
    recommendation: Literal["approve", "request_changes", "needs_work"]


def main(base_url: str, api_key: str, model: str) -> None:
    llm = GatewayChatModel(base_url=base_url, api_key=api_key, model=model, max_retries=0)
    review = structured(llm, CodeReview, max_repairs=2, include_raw=True)
    print("method:", review.method)

    out = review.invoke(f"Review this diff:\n{DIFF}")
    print("review:", repr(out["parsed"]))

    out = review.invoke(f"Review this diff again, strictly:\n{DIFF}")
    for attempt in out["attempts"]:
        verdict = "ok" if attempt.ok else f"rejected ({attempt.reason})"
        print(f"attempt {attempt.number}: {verdict}")
        if attempt.error:
            print("  told the model:", attempt.error.replace("\n", "\n  "))
    print(f"repaired after {len(out['attempts'])} attempts:", repr(out["parsed"]))

    try:
        structured(llm, CodeReview).invoke("Review the diff of a file I won't show you.")
    except StructuredOutputError as e:
        reason = getattr(e, "reason", None)
        print(f"no review: {type(e).__name__} (reason={reason}) after {len(e.attempts)} call(s)")


if __name__ == "__main__":
    if os.environ.get("GATEWAY_URL"):
        main(
            os.environ["GATEWAY_URL"],
            os.environ.get("GATEWAY_KEY", ""),
            os.environ.get("GATEWAY_MODEL", "gpt-4o"),
        )
    else:
        good = {
            "score": 2,
            "issues": ["eval() on file contents runs arbitrary code", "the file is never closed"],
            "recommendation": "request_changes",
        }
        with MockGateway() as gw:
            gw.script(
                "reviewer",
                [
                    Behavior(json=good),
                    Behavior(
                        json={"score": "low", "issues": good["issues"], "recommendation": "reject"}
                    ),
                    Behavior(json=good),
                    Behavior(refusal="I can't review code I have not been shown."),
                ],
            )
            main(gw.base_url, "sk-example", "reviewer")
