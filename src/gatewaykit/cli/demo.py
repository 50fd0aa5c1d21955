"""``gatewaykit demo``: the whole story in one command, offline by default.

On an embedded :class:`~gatewaykit.testing.MockGateway` (no keys, no network), each step a
titled section with its proof:

1. task selection - the config's ``tasks:`` pick the model per request, and say why;
2. a chain - ``prompt | GatewayChatModel``, with the deployment and cost the gateway reported;
3. structured output - a validated pydantic object, repaired after a schema violation;
4. a LangGraph agent with tools - its tool calls and their results;
5. router failover - an injected outage: retry on the other deployment, then a fallback group;
6. an agent as a model - the agent behind ``AgentChatModel``, in a chain like any chat model;
7. cost - spend per serving deployment and per tag, from the gateway-reported costs;

then a summary table. ``--base-url`` (with ``--api-key``, ``--model``) or ``--config`` run the
same steps against a real gateway; the steps that need a scripted mock say so and are skipped.

Example::

    from gatewaykit.cli.demo import run_demo
    run_demo()                                                  # embedded mock
    run_demo(base_url="http://localhost:4000/v1", api_key="sk-...", model="gpt-4o-mini")
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gatewaykit._redact import redact
from gatewaykit.cli._console import make_console
from gatewaykit.cli._demo_parts import DIFF, CodeReview, build_agent, demo_config
from gatewaykit.cli._tally import CostTally, served_and_cost
from gatewaykit.config import GatewayConfig, load_config
from gatewaykit.config_errors import ConfigError, ConfigProblem

__all__ = ["StepResult", "run_demo"]

AGENT_MODEL = "agent-llm"
AGENT_ANSWER = "6 times 7 is 42, and the time is 12:00 UTC."
AGENT_QUESTION = "What is 6*7, and what time is it?"


class _SkipStep(Exception):
    """A step that cannot run against this gateway (it needs the scripted mock)."""


@dataclass
class StepResult:
    """How one demo step ended: ``ok``, ``skipped`` or ``failed``, with its one-line proof.

    Example::

        StepResult("A chain", "ok", "served by smart, cost $0.000045", 0.02)
    """

    title: str
    status: str
    proof: str
    seconds: float


@dataclass
class _Target:
    """Where the demo's calls go."""

    base_url: str | None
    api_key: str | None
    model: str
    config: GatewayConfig | None
    mock: Any = None

    @property
    def label(self) -> str:
        url = re.sub(r"//[^/@]*@", "//****@", self.base_url or "")
        if self.mock is not None:
            return f"{url}  (embedded MockGateway)"
        if self.base_url:
            return f"{url}  (model {self.model})"
        return f"{self.config.source if self.config else '?'}  (router, model {self.model})"


class _Demo:
    """The steps, run in order, each printed as a titled section."""

    def __init__(self, console: Console, target: _Target) -> None:
        self.console = console
        self.t = target
        self.tally = CostTally()
        self.results: list[StepResult] = []

    # ------------------------------------------------------------------ plumbing

    def say(self, text: str) -> None:
        self.console.print(f"  {text}", markup=False)

    def run_config(self, step: str) -> RunnableConfig:
        return {"callbacks": [self.tally], "tags": [f"step:{step}"]}

    def llm(self, model: str | None = None, **fields: Any) -> BaseChatModel:
        """A chat model for ``model`` on the target: through the gateway URL, or the config."""
        t = self.t
        name = model or t.model
        if t.base_url is not None:
            from gatewaykit import GatewayChatModel

            return GatewayChatModel(
                base_url=t.base_url,
                api_key=SecretStr(t.api_key or "no-key"),
                model=name,
                max_retries=0 if t.mock is not None else 2,
                **fields,
            )
        assert t.config is not None
        if t.config.gateway is not None and t.config.gateway.base_url is not None:
            from gatewaykit import GatewayChatModel

            return GatewayChatModel.from_config(t.config, name, **fields)
        from gatewaykit import RouterChatModel

        known = RouterChatModel.model_fields
        kept = {k: v for k, v in fields.items() if k in known}
        return RouterChatModel.from_config(t.config, model=name, **kept)

    def need_mock(self, what: str) -> Any:
        if self.t.mock is None:
            raise _SkipStep(
                f"{what} needs the embedded MockGateway (run without --base-url and --config)"
            )
        return self.t.mock

    # ------------------------------------------------------------------ steps

    def task_selection(self) -> str:
        from gatewaykit.selector import TaskSelector

        cfg = self.t.config
        if cfg is None or not cfg.tasks:
            raise _SkipStep("needs a config with a tasks: section (--config)")
        selector = TaskSelector.from_config(cfg)
        self.say(f"tasks: {', '.join(cfg.tasks)}  (mode: {selector.mode})")
        task = "code_review" if "code_review" in cfg.tasks else next(iter(cfg.tasks))
        model = selector.for_task(task)
        proofs: list[str] = []
        prompts = [("short diff", f"Review this diff:\n{DIFF}")]
        if self.t.mock is not None:
            prompts.append(("long diff", "Review this diff:\n" + "+ line\n" * 600))
        for label, prompt in prompts:
            msg = model.invoke(prompt, config=self.run_config("task-selection"))
            info = msg.response_metadata["task"]
            served, _ = served_and_cost(msg.response_metadata)
            self.say(f"{label}: {info['task']} -> {info['model']}, served by {served}")
            self.say(f"  why: {info['reason']}")
            proofs.append(f"{label} -> {info['model']}")
        detected = selector.detect("tl;dr of this thread please")
        self.say(f"detected: 'tl;dr of this thread please' -> {detected.task} ({detected.reason})")
        return "; ".join(proofs) + f"; tl;dr -> {detected.task}"

    def chain(self) -> str:
        llm = self.llm(gateway_tags=["demo"], end_user="demo-user", map_run_tags=True)
        chain = (
            ChatPromptTemplate.from_messages(
                [("system", "You answer in one sentence."), ("human", "{question}")]
            )
            | llm
        )
        msg = chain.invoke(
            {"question": "What does a gateway do for an LLM app?"}, config=self.run_config("chain")
        )
        served, cost = served_and_cost(msg.response_metadata)
        self.say(f"prompt | {type(llm).__name__}: {str(msg.content)[:70]!r}")
        self.say(f"served by {served}, cost ${cost:.6f} (reported by the gateway)")
        if self.t.mock is not None:
            sent = self.t.mock.requests_for(self.t.model)[-1].headers.get("x-litellm-tags", "")
            self.say(f"tags sent to the gateway: {sent}")
        return f"served by {served}, cost ${cost:.6f}"

    def structured_output(self) -> str:
        from gatewaykit.structured import structured

        model = None
        if self.t.mock is not None:
            good = {
                "score": 2,
                "issues": ["eval() on file contents runs arbitrary code"],
                "recommendation": "request_changes",
            }
            bad = {"score": "low", "issues": good["issues"], "recommendation": "reject"}
            from gatewaykit.testing import Behavior

            self.t.mock.script("reviewer", [Behavior(json=bad), Behavior(json=good)])
            model = "reviewer"
        review = structured(self.llm(model), CodeReview, max_repairs=2, include_raw=True)
        out = review.invoke(f"Review this diff:\n{DIFF}", config=self.run_config("structured"))
        for attempt in out["attempts"]:
            verdict = "ok" if attempt.ok else f"rejected ({attempt.reason})"
            self.say(f"attempt {attempt.number}: {verdict}")
        parsed = out["parsed"]
        if not isinstance(parsed, CodeReview):
            raise RuntimeError(f"no valid CodeReview: {out.get('parsing_error')}")
        self.say(f"validated: {parsed!r}")
        return f"{type(parsed).__name__}(score={parsed.score}, " + (
            f"recommendation={parsed.recommendation!r}) after {len(out['attempts'])} attempt(s)"
        )

    def _script_agent(self) -> str | None:
        if self.t.mock is None:
            return None
        from gatewaykit.testing import Behavior

        self.t.mock.script(
            AGENT_MODEL,
            [
                Behavior(tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}]),
                Behavior(tool_calls=[{"name": "current_time", "arguments": {}}]),
                Behavior(content=AGENT_ANSWER),
            ],
        )
        return AGENT_MODEL

    def agent(self) -> str:
        graph = build_agent(self.llm(self._script_agent()))
        state = graph.invoke(
            {"messages": [HumanMessage(AGENT_QUESTION)]}, config=self.run_config("agent")
        )
        results = {
            m.tool_call_id: m.content for m in state["messages"] if isinstance(m, ToolMessage)
        }
        calls: list[str] = []
        for m in state["messages"]:
            if isinstance(m, AIMessage):
                for c in m.tool_calls:
                    self.say(f"tool call: {c['name']}({c['args']}) -> {results.get(c['id'] or '')}")
                    calls.append(c["name"])
        answer = str(state["messages"][-1].content)
        self.say(f"answer: {answer}")
        return f"{len(calls)} tool call(s): {', '.join(calls) or 'none'}"

    def failover(self) -> str:
        from gatewaykit import RetryPolicy, RouterChatModel
        from gatewaykit.testing import Behavior

        gw = self.need_mock("injecting an outage")
        assert self.t.config is not None
        router = RouterChatModel.from_config(
            self.t.config,
            model="smart",
            retry=RetryPolicy(num_retries=1, initial_backoff=0.05),
            seed=7,
        )
        outages = [
            ("smart-primary answers 500", "smart-primary", Behavior(status=500)),
            ("the whole smart group is down", "smart-secondary", Behavior(status=503)),
        ]
        served: list[str] = []
        for i, (title, dep, behavior) in enumerate(outages, 1):
            gw.script(dep, behavior)
            msg = router.invoke(
                f"request {i}: summarise the incident", config=self.run_config("failover")
            )
            routing = msg.response_metadata["routing"]
            steps = " -> ".join(
                f"{a['deployment']}:{'ok' if a['ok'] else a['kind']}" for a in routing["attempts"]
            )
            self.say(f"{title}: served by {routing['deployment']}")
            self.say(f"  attempts: {steps}")
            if routing["fallbacks"]:
                self.say(f"  fallback groups taken: {routing['fallbacks']}")
            served.append(str(routing["deployment"]))
        for dep in ("smart-primary", "smart-secondary"):
            gw.script(dep, Behavior())
        return f"served by {' then '.join(served)} during the outage"

    def agent_as_model(self) -> str:
        from gatewaykit.agents import AgentChatModel

        model = AgentChatModel(graph=build_agent(self.llm(self._script_agent())))
        chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | model
        msg = chain.invoke({"question": AGENT_QUESTION}, config=self.run_config("agent-as-model"))
        info = msg.response_metadata["agent"]
        self.say(f"prompt | AgentChatModel -> {type(msg).__name__}: {msg.content}")
        self.say(
            f"agent {info['name']}: {info['steps']} model calls, "
            f"tool calls: {', '.join(info['tool_calls'])}"
        )
        usage = msg.usage_metadata
        if usage is not None:
            self.say(f"usage summed: {usage['input_tokens']} in, {usage['output_tokens']} out")
        return f"agent {info['name']} answered as a chat model"

    def cost(self) -> str:
        for title, rows in (
            ("by model", self.tally.by_model()),
            ("by tag", self.tally.by_tag()),
        ):
            table = Table(title=f"cost {title}", title_justify="left")
            table.add_column("model (served)" if title == "by model" else "tag")
            table.add_column("calls", justify="right")
            table.add_column("cost $", justify="right")
            for name, (n, c) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
                table.add_row(name, str(n), f"{c:.6f}")
            self.console.print(table)
        calls = len(self.tally.records())
        return f"${self.tally.total:.6f} over {calls} calls"

    # ------------------------------------------------------------------ the run

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("Task selection", self.task_selection),
            ("A chain", self.chain),
            ("Structured output", self.structured_output),
            ("A LangGraph agent with tools", self.agent),
            ("Router failover during an outage", self.failover),
            ("An agent called as a model", self.agent_as_model),
            ("Cost per model and tag", self.cost),
        ]

    def run(self) -> int:
        console = self.console
        started = time.perf_counter()
        console.rule("gatewaykit demo")
        console.print(f"gateway: {self.t.label}", markup=False)
        steps = self.steps()
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        with progress:
            bar = progress.add_task("demo", total=len(steps))
            for i, (title, step) in enumerate(steps, 1):
                progress.update(bar, description=title)
                console.rule(f"{i}. {title}", align="left")
                t0 = time.perf_counter()
                try:
                    proof = step()
                    status = "ok"
                except _SkipStep as e:
                    proof, status = f"skipped: {e}", "skipped"
                    self.say(proof)
                except Exception as e:  # one broken step must not hide the others
                    proof, status = f"{type(e).__name__}: {redact(str(e))[:200]}", "failed"
                    self.say(f"FAILED: {proof}")
                self.results.append(StepResult(title, status, proof, time.perf_counter() - t0))
                progress.advance(bar)
        self.summary(time.perf_counter() - started)
        return 1 if any(r.status == "failed" for r in self.results) else 0

    def summary(self, elapsed: float) -> None:
        table = Table(title="summary", title_justify="left")
        for col in ("step", "result", "proof", "s"):
            table.add_column(col, justify="right" if col == "s" else "left")
        for i, r in enumerate(self.results, 1):
            table.add_row(f"{i}. {r.title}", r.status, r.proof, f"{r.seconds:.2f}")
        self.console.print(table)
        ok = sum(r.status == "ok" for r in self.results)
        skipped = sum(r.status == "skipped" for r in self.results)
        self.console.print(
            f"demo finished: {ok} ok, {skipped} skipped, "
            f"{len(self.results) - ok - skipped} failed in {elapsed:.1f}s",
            markup=False,
        )


def _real_target(
    config: str | None, base_url: str | None, api_key: str | None, model: str | None
) -> _Target:
    cfg = load_config(config) if config else None
    name = model or (cfg.public_models()[0] if cfg is not None and cfg.public_models() else None)
    if name is None:
        raise ConfigError(
            ConfigProblem("model", "--base-url needs --model: the model alias to call"),
        )
    if cfg is not None:
        cfg.resolve_group(name)
    return _Target(base_url=base_url, api_key=api_key, model=name, config=cfg)


def run_demo(
    *,
    config: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    console: Console | None = None,
) -> int:
    """Run the demo; on the embedded MockGateway unless ``config`` or ``base_url`` is given.

    Returns the exit code: 0 when no step failed.
    """
    console = console or make_console()
    if config or base_url:
        return _Demo(console, _real_target(config, base_url, api_key, model)).run()
    from gatewaykit.testing import MockGateway

    with MockGateway() as gw:
        target = _Target(
            base_url=gw.base_url,
            api_key="sk-demo-master",
            model="smart",
            config=GatewayConfig.from_dict(demo_config(gw.base_url), source="demo config"),
            mock=gw,
        )
        return _Demo(console, target).run()
