"""How often structured output comes back right: structured() vs with_structured_output().

    python benchmarks/structured_reliability.py            # 240 flawed answers per method
    python benchmarks/structured_reliability.py --cases 600 --calls 500
    python benchmarks/structured_reliability.py --quick    # smoke run: 48 cases, few timed calls

Every variant calls the same MockGateway (a child process, zero latency) with the same
scripted corpus. Each case is a CodeReview request whose **first answer is flawed** in one of
twelve ways a real model gets structured output wrong; where a repair makes sense the mock
answers correctly when asked again, and where it does not (truncation by the token limit, a
refusal) it answers the same way again. Cases rotate through the flaws, so each flaw gets the
same share of the corpus, and each case has its own expected object.

The variants, for ``method="json_schema"`` and ``method="function_calling"``:

- ``gatewaykit``: ``structured(ChatOpenAI(...), CodeReview, method=...)`` (default
  ``max_repairs=2``);
- ``langchain``: ``ChatOpenAI(...).with_structured_output(CodeReview, method=...)``.

Both wrap the same bare ``ChatOpenAI`` (``max_retries=0``), so the difference is the wrapper.
The mock's second answer does not depend on what the re-ask says, so the corpus measures which
failures each wrapper detects and recovers from, not how well a real model follows feedback; and
a wrapper that re-sent the identical request (``with_retry``) would look as good as a repair
here, which is why none is included. A case succeeds when the call returns an object equal to
the case's expected CodeReview.
``silent`` counts calls that returned without an error but without the right object (LangChain's
``None`` for malformed tool arguments or a prose answer): the failures a caller cannot see.

Tables:

1. ``reliability <method>``: per flaw, cases answered right by each variant, and what the
   LangChain variant did instead (an exception name, or ``None``).
2. ``summary``: success rate, mean model calls per success (1.00 means the first answer was used;
   a repair costs one more call), silent failures, and failures that raised a typed
   ``StructuredOutputError``.
3. ``overhead``: median wall time of a clean call (valid first answer) through each wrapper, and
   the ratio structured() / with_structured_output(); calls are interleaved in rotating order.
   Compare ratios across machines, not milliseconds.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from gatewaykit import StructuredOutputError
from gatewaykit.structured import structured
from gatewaykit.testing import Behavior, MockGateway

API_KEY = "sk-bench"
PROMPT = "Review this diff:\n+ def parse(text):\n+     return eval(text)\n"
METHODS = ("json_schema", "function_calling")
GATEWAYKIT = "gatewaykit"
LANGCHAIN = "langchain"
VARIANTS = (GATEWAYKIT, LANGCHAIN)
RECOMMENDATIONS = ("approve", "request_changes", "needs_work")
ISSUES = (
    "eval on untrusted input",
    "no tests",
    "missing type hints",
    "unclear name",
    "no docstring",
    "swallows exceptions",
)

warnings.filterwarnings("ignore", message="Cannot currently include response headers")


class CodeReview(BaseModel):
    """A code review verdict."""

    score: int
    issues: list[str]
    recommendation: Literal["approve", "request_changes", "needs_work"]


def expected_for(i: int) -> dict[str, Any]:
    return {
        "score": i % 11,
        "issues": [ISSUES[(i + k) % len(ISSUES)] for k in range(1 + i % 3)],
        "recommendation": RECOMMENDATIONS[i % 3],
    }


# ---------------------------------------------------------------------- the flaws

Script = tuple[Behavior, Behavior]
"""The first answer, then the answer to every later call."""


def _text_or_tool(method: str, text: str, **kw: Any) -> Behavior:
    """Raw text where the method expects it: message content, or the tool call's arguments."""
    if method == "function_calling":
        return Behavior(tool_calls=[{"name": "CodeReview", "arguments": text}], **kw)
    return Behavior(content=text, **kw)


def flaw_scripts(method: str, good: dict[str, Any]) -> dict[str, Script]:
    fixed = Behavior(json=good)
    dumped = json.dumps(good)
    half = dumped[: len(dumped) // 2]
    truncated = _text_or_tool(method, half, finish_reason="length")
    refusal = Behavior(refusal="I can't help with that request.")
    return {
        "invalid_json": (Behavior(json=good, invalid_json=True), fixed),
        "single_quotes": (_text_or_tool(method, repr(good)), fixed),
        "fenced_json": (Behavior(content=f"```json\n{dumped}\n```"), fixed),
        "prose_around_json": (
            Behavior(content=f"Here is my review:\n{dumped}\nLet me know if you need more."),
            fixed,
        ),
        "prose_only": (Behavior(content="Mostly fine, but it needs tests before merging."), fixed),
        "missing_field": (Behavior(json={k: v for k, v in good.items() if k != "issues"}), fixed),
        "wrong_type": (Behavior(json={**good, "score": f"{good['score']}/10"}), fixed),
        "wrong_enum": (Behavior(json={**good, "recommendation": "LGTM"}), fixed),
        "list_as_string": (Behavior(json={**good, "issues": "; ".join(good["issues"])}), fixed),
        "extra_field": (Behavior(json={**good, "confidence": 0.8}), fixed),
        "truncated": (truncated, truncated),
        "refusal": (refusal, refusal),
    }


FLAWS = tuple(flaw_scripts("json_schema", expected_for(0)))


@dataclass(frozen=True, slots=True)
class Case:
    index: int
    flaw: str
    expected: CodeReview
    script: Script


def corpus(method: str, n: int) -> list[Case]:
    cases = []
    for i in range(n):
        flaw = FLAWS[i % len(FLAWS)]
        good = expected_for(i)
        cases.append(Case(i, flaw, CodeReview(**good), flaw_scripts(method, good)[flaw]))
    return cases


# ---------------------------------------------------------------------- running

Outcome = Literal["ok", "silent", "typed", "raised"]


@dataclass
class Tally:
    by_flaw: Counter[str] = field(default_factory=Counter)
    cases_by_flaw: Counter[str] = field(default_factory=Counter)
    other_by_flaw: dict[str, Counter[str]] = field(default_factory=dict)
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    calls_per_success: list[int] = field(default_factory=list)


def chat_openai(base_url: str, model: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=base_url, api_key=API_KEY, model=model, max_retries=0)  # type: ignore[arg-type]


def wrapper(variant: str, llm: ChatOpenAI, method: str) -> Runnable[Any, Any]:
    if variant == GATEWAYKIT:
        return structured(llm, CodeReview, method=method)  # type: ignore[arg-type]
    return llm.with_structured_output(CodeReview, method=method)  # type: ignore[arg-type]


def run_corpus(gw: MockGateway, method: str, cases: list[Case]) -> dict[str, Tally]:
    tallies = {v: Tally() for v in VARIANTS}
    for case in cases:
        for variant in VARIANTS:
            model = f"{method[:2]}-{variant[:2]}-{case.index}"
            gw.script(model, list(case.script))
            runnable = wrapper(variant, chat_openai(gw.base_url, model), method)
            tally = tallies[variant]
            tally.cases_by_flaw[case.flaw] += 1
            try:
                result = runnable.invoke(PROMPT)
            except StructuredOutputError as exc:
                outcome: Outcome = "typed"
                what = type(exc).__name__
            except Exception as exc:
                outcome, what = "raised", type(exc).__name__
            else:
                if result == case.expected:
                    outcome, what = "ok", "ok"
                    tally.by_flaw[case.flaw] += 1
                    tally.calls_per_success.append(gw.count(model))
                else:
                    outcome, what = "silent", "None" if result is None else "wrong object"
            tally.outcomes[outcome] += 1
            if outcome != "ok":
                tally.other_by_flaw.setdefault(case.flaw, Counter())[what] += 1
    return tallies


def time_clean_calls(gw: MockGateway, method: str, calls: int, warmup: int) -> dict[str, float]:
    """Median ms of a clean call through each wrapper, interleaved in rotating order."""
    model = f"clean-{method}"
    gw.script(model, Behavior(json=expected_for(1)))
    llm = chat_openai(gw.base_url, model)
    probes: dict[str, Callable[[], object]] = {}
    for variant in VARIANTS:
        runnable = wrapper(variant, llm, method)
        probes[variant] = lambda r=runnable: r.invoke(PROMPT)
    for _ in range(warmup):
        for probe in probes.values():
            probe()
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    for i in range(calls):
        for variant in order[i % 2 :] + order[: i % 2]:
            start = time.perf_counter()
            probes[variant]()
            samples[variant].append((time.perf_counter() - start) * 1e3)
    return {v: statistics.median(s) for v, s in samples.items()}


# ---------------------------------------------------------------------- printing


def print_reliability(method: str, tallies: dict[str, Tally], n: int) -> None:
    print(f"\n[reliability {method}] cases answered right, per flaw of the first answer")
    print(f"  {'flaw':<18}{'cases':>6}  {'gatewaykit':>10}  {'langchain':>10}  langchain instead")
    gk, lc = tallies[GATEWAYKIT], tallies[LANGCHAIN]
    for flaw in FLAWS:
        cases = gk.cases_by_flaw[flaw]
        if not cases:
            continue
        other = lc.other_by_flaw.get(flaw, Counter())
        instead = ", ".join(f"{name} x{k}" for name, k in other.most_common()) or "-"
        print(f"  {flaw:<18}{cases:>6}  {gk.by_flaw[flaw]:>10}  {lc.by_flaw[flaw]:>10}  {instead}")
    print(f"  {'all':<18}{n:>6}  {gk.outcomes['ok']:>10}  {lc.outcomes['ok']:>10}")


def print_summary(results: dict[str, dict[str, Tally]], n: int) -> None:
    print("\n[summary] success rate and cost, per variant")
    print(f"  {'variant':<30}{'success':>9}  {'calls/success':>13}  {'silent':>6}  {'typed':>5}")
    for method, tallies in results.items():
        for variant in VARIANTS:
            t = tallies[variant]
            rate = 100.0 * t.outcomes["ok"] / n
            calls = statistics.mean(t.calls_per_success) if t.calls_per_success else 0.0
            name = f"{variant} {method}"
            print(
                f"  {name:<30}{rate:>8.1f}%  {calls:>13.2f}  {t.outcomes['silent']:>6}"
                f"  {t.outcomes['typed']:>5}"
            )


def print_overhead(medians: dict[str, dict[str, float]], calls: int) -> None:
    print(f"\n[overhead] clean call, median ms over {calls} calls per variant")
    print(f"  {'method':<18}{'langchain':>10}  {'gatewaykit':>10}  ratio")
    for method, m in medians.items():
        ratio = m[GATEWAYKIT] / m[LANGCHAIN]
        print(f"  {method:<18}{m[LANGCHAIN]:>10.3f}  {m[GATEWAYKIT]:>10.3f}  {ratio:.2f}x")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=240, help="flawed cases per method")
    parser.add_argument("--calls", type=int, default=200, help="timed clean calls per variant")
    parser.add_argument("--quick", action="store_true", help="smoke run: 48 cases, 10 calls")
    args = parser.parse_args()
    cases, calls, warmup = (48, 10, 2) if args.quick else (args.cases, args.calls, 20)
    if cases < len(FLAWS) or calls < 1:
        parser.error(f"--cases must be >= {len(FLAWS)} and --calls >= 1")

    print(
        f"structured output reliability: {cases} flawed first answers per method "
        f"({len(FLAWS)} flaws, {cases // len(FLAWS)}+ each), {calls} timed clean calls; "
        "MockGateway in a child process, zero latency\n"
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; gatewaykit "
        f"{_version('gatewaykit')}, langchain-core {_version('langchain-core')}, "
        f"langchain-openai {_version('langchain-openai')}, openai {_version('openai')}"
    )
    sys.stdout.flush()
    results: dict[str, dict[str, Tally]] = {}
    medians: dict[str, dict[str, float]] = {}
    with MockGateway("process") as gw:
        for method in METHODS:
            results[method] = run_corpus(gw, method, corpus(method, cases))
            print_reliability(method, results[method], cases)
            sys.stdout.flush()
        print_summary(results, cases)
        for method in METHODS:
            medians[method] = time_clean_calls(gw, method, calls, warmup)
        print_overhead(medians, calls)


if __name__ == "__main__":
    main()
