"""Every script in examples/ runs to completion against the embedded MockGateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))

# What each example must print: proof it did its job, not just that it exited.
EXPECTED = {
    "gateway_chain.py": ["served by: smart", "tool calls: [{'name': 'word_count'"],
    "router_failover.py": ["served by: primary-b", "fallback", "StreamInterrupted"],
    "router_outage.py": [
        "50 calls answered by backup-a; the dead primary saw 5 of them",
        "NoDeploymentAvailable after",
        "upstream requests for that call: 0",
        "12 of 12 calls answered",
    ],
    "task_selection.py": [
        "describe_image -> vision",
        "using long_context_model big",
        "using cheaper_model cheap",
        "detected summarize by keywords",
        "classifier calls sent: 1",
        "call 2: cheap (budget 90% used)",
        "BudgetExceeded(scope=tag)",
    ],
    "structured_review.py": [
        "review: CodeReview(score=2",
        "attempt 1: rejected (schema_violation)",
        "score: Input should be a valid integer",
        "repaired after 2 attempts: CodeReview(score=2",
        "no review: StructuredOutputRefused (reason=refusal)",
    ],
    "agent_as_model.py": [
        "usage summed: 180 in, 35 out",
        "tool calls: ['calculator', 'current_time']",
        "returned tool calls: []",
        "each token once: True",
        "the model saw ['system', 'user', 'user']",
        "holds 6 messages",
        "AgentError(agent=math-agent, retryable=False)",
        "stopped after 2 model calls (recursion_limit 4)",
    ],
    "budgets_and_cache.py": [
        "call 2: BudgetExceeded(scope=team)",
        "the gateway saw 2 calls",
        "'hit': True",
        "the gateway saw 3 calls",
    ],
    "a2a_agent.py": [
        "card: trip-planner, streaming=True",
        "usage reported by the agent: 5 in, 11 out",
        "each token once: True",
        "follow-up in context: Plan for Oslo: 2 days",
        "A2ATaskError(state=input-required): Which city would you like to visit?",
    ],
    "ab_testing.py": [
        "assignment is sticky: True",
        "arm b (support-b): 11 calls, mean cost $0.00040",
        "b costs less per call: True",
        "b answers faster: True",
        "share_b=1.0 puts everyone on: ['b']",
        "the gateway saw tags: ab:support-v2,arm:b",
        "both arms served: True",
    ],
    "guardrails_config.py": [
        "answer: Echo: My card is [CARD], mail me at [EMAIL]",
        "streamed answer: Call [PHONE] about card [CARD].",
        "PII reaching the provider: none",
        "GuardrailBlocked: guardrail=injection rule=ignore_instructions stage=pre_call",
        "GuardrailBlocked: guardrail=no-codenames rule=codename stage=pre_call",
        "GuardrailBlocked: guardrail=pii-masking rule=US_SSN stage=pre_call",
        "requests after the refusals: 0",
    ],
    "prometheus_scrape.py": [
        "scrape: 200 text/plain",
        "proof: requests=2 retries=1 fallbacks=1 cooldowns=1 cache_hits=1 spend=$0.25 budget_remaining=$0.75",
    ],
    "langfuse_tracing.py": [
        "no keys: langfuse_callbacks() -> []",
        "generation: model=cheap-a",
        'cost: {"total": 0.25}',
        "routing: primary-a:upstream -> cheap-a:ok; fallbacks ['cheap']",
        "trace: user=user-42 session=sess-7 tags=['incident-review']",
    ],
}


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for needle in EXPECTED.get(script.name, []):
        assert needle in proc.stdout, f"{needle!r} not in output:\n{proc.stdout}"
    assert script.name in EXPECTED, "add the example's expected output to EXPECTED"
