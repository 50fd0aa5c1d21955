"""``gatewaykit route "prompt"``: which group and deployment would serve it, and why.

A dry run of the decisions a call would go through, using the same code the call uses:
:meth:`TaskSelector.select <gatewaykit.selector.TaskSelector.select>` for the task rules, then
the router's admission filters (cooldown, tags, capabilities, context window, rpm/tpm headroom,
order) and its strategy. Nothing is sent upstream and no headroom is reserved, unless ``--send``.

Example::

    plan = explain_route(cfg, "Review this diff: ...", task="code_review")
    plan.group, plan.deployment, plan.why
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from gatewaykit.config import Deployment, GatewayConfig, load_config
from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.routing import strategies as st
from gatewaykit.routing.engine import RouterEngine
from gatewaykit.routing.state import RouterState
from gatewaykit.routing.store import DeploymentState, InMemoryStore, StateStore

__all__ = [
    "DeploymentVerdict",
    "GroupPlan",
    "RoutePlan",
    "explain_route",
    "render_route",
    "run_route",
]

_FAKE_TOOL = {
    "type": "function",
    "function": {"name": "tool", "description": "a tool", "parameters": {"type": "object"}},
}
_FAKE_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {}}},
}


_STRATEGY_RULE = {
    "simple-shuffle": "weighted random choice by weight, else by rpm/tpm",
    "least-busy": "fewest calls in flight, ties at random",
    "usage-based-routing": "lowest rpm/tpm use in the current minute",
    "usage-based-routing-v2": "lowest rpm/tpm use in the current minute",
    "latency-based-routing": "lowest average latency; deployments without a sample are tried first",
    "cost-based-routing": "lowest price per token",
}


@dataclass(frozen=True, slots=True)
class DeploymentVerdict:
    """One deployment of a group: admitted or not, and the rule that decided.

    Example::

        DeploymentVerdict("smart-a", "openai/smart-a", 1, False, "cooling down for 4.2s more")
    """

    id: str
    model: str
    order: int | None
    admitted: bool
    reason: str
    picked: bool = False


@dataclass
class GroupPlan:
    """The router's view of one group for this request: a verdict per deployment, the one
    the strategy picked, or why none can take it.

    Example::

        gp = plan.groups[0]
        gp.group, gp.picked, gp.exhausted     # ('smart', None, 'context_window')
    """

    group: str
    deployments: list[DeploymentVerdict]
    picked: str | None
    exhausted: str | None = None
    """``context_window`` or ``no_deployment`` when no deployment can take the request."""


@dataclass
class RoutePlan:
    """Everything ``route`` decided: the task step (when the config has tasks), the groups
    walked (the first one, then fallbacks while a group cannot take the request), and why.

    Example::

        plan = explain_route(cfg, "hello", model="smart")
        print(plan.group, plan.deployment, plan.why)
    """

    prompt_tokens: int
    token_note: str
    needs: list[str]
    tags: list[str]
    strategy: str
    alias: str
    groups: list[GroupPlan] = field(default_factory=list)
    task: dict[str, Any] | None = None
    fallbacks: dict[str, list[str]] = field(default_factory=dict)

    @property
    def group(self) -> str | None:
        last = self.groups[-1] if self.groups else None
        return last.group if last is not None and last.picked else None

    @property
    def deployment(self) -> str | None:
        return self.groups[-1].picked if self.groups else None

    @property
    def why(self) -> str:
        """One sentence: the task reason (if any), then the router's."""
        parts: list[str] = []
        if self.task is not None:
            parts.append(f"task {self.task['task']}: {self.task['reason']}")
        if len(self.groups) > 1:
            parts.append(
                "fell back "
                + " -> ".join(f"{g.group} ({g.exhausted})" for g in self.groups[:-1])
                + f" -> {self.groups[-1].group}"
            )
        last = self.groups[-1] if self.groups else None
        if last is not None and last.picked:
            chosen = next(v for v in last.deployments if v.picked)
            parts.append(f"{self.strategy} picked {chosen.id}: {chosen.reason}")
        elif last is not None:
            parts.append(f"no deployment of {last.group} can take it ({last.exhausted})")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "group": self.group,
            "deployment": self.deployment,
            "why": self.why,
            "task": self.task,
            "prompt_tokens": self.prompt_tokens,
            "token_note": self.token_note,
            "needs": self.needs,
            "tags": self.tags,
            "strategy": self.strategy,
            "groups": [
                {
                    "group": g.group,
                    "picked": g.picked,
                    "exhausted": g.exhausted,
                    "deployments": [_verdict_dict(v) for v in g.deployments],
                }
                for g in self.groups
            ],
            "fallbacks": self.fallbacks,
        }


def _verdict_dict(v: DeploymentVerdict) -> dict[str, Any]:
    return {
        "id": v.id,
        "model": v.model,
        "order": v.order,
        "admitted": v.admitted,
        "picked": v.picked,
        "reason": v.reason,
    }


def _request(prompt: str, needs: Sequence[str]) -> tuple[list[BaseMessage], dict[str, Any]]:
    """The messages and call options of a request that needs ``needs``."""
    content: Any = prompt
    if "vision" in needs:
        content = [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        ]
    kwargs: dict[str, Any] = {}
    if "tools" in needs:
        kwargs["tools"] = [_FAKE_TOOL]
    if "json_schema" in needs:
        kwargs["response_format"] = _FAKE_SCHEMA
    return [HumanMessage(content=content)], kwargs


def _approx_tokens(messages: Sequence[BaseMessage]) -> int:
    chars = 0
    for m in messages:
        if isinstance(m.content, str):
            chars += len(m.content)
        else:
            chars += sum(len(b.get("text", "")) for b in m.content if isinstance(b, dict))
    return chars // 4 + 4 * len(messages)


def _select_task(
    cfg: GatewayConfig, task: str | None, messages: list[BaseMessage], kwargs: dict[str, Any]
) -> dict[str, Any]:
    from gatewaykit.selector import TaskSelector

    # router=True, proxy_info=False: decide from the config alone, call nothing.
    selector = TaskSelector(cfg, router=True, proxy_info=False)
    if task is not None:
        selector.task(task)  # an unknown task fails here, naming the known ones
    return selector.select(task, messages, **kwargs).metadata()


def _plan_group(engine: RouterEngine, state: RouterState, rng: random.Random) -> GroupPlan:
    """:meth:`RouterEngine.admit` and the strategy for the state's group, without reserving."""
    group = state["group"]
    deps = engine.group(group)
    now = time.monotonic()
    views = engine.store.view([d.id for d in deps], now)
    admitted = engine.admit(state, deps, views, now)
    reasons, candidates = admitted.reasons, admitted.candidates
    tokens = state["request"].input_tokens
    ordered = st.by_order(candidates)
    picked = None
    if ordered:
        picked = engine.strategy.pick(ordered, views, rng=rng, input_tokens=tokens, now=now)
    best = ordered[0].order if ordered else None
    verdicts: list[DeploymentVerdict] = []
    for d in deps:
        model = f"{d.provider}/{d.upstream_model}" if d.provider else d.upstream_model
        if d.id in reasons:
            verdicts.append(DeploymentVerdict(d.id, model, d.order, False, reasons[d.id]))
        elif d not in ordered:
            verdicts.append(
                DeploymentVerdict(
                    d.id, model, d.order, True, f"healthy, but order {best} is tried first"
                )
            )
        else:
            headroom = _headroom(d, views[d.id])
            if d is picked:
                among = f"one of {len(ordered)} eligible" if len(ordered) > 1 else "the only one"
                reason = f"{among}{_order_note(d.order)}; {headroom}"
            else:
                reason = f"eligible{_order_note(d.order)}; {headroom}; not picked this time"
            verdicts.append(DeploymentVerdict(d.id, model, d.order, True, reason, d is picked))
    exhausted = None
    if picked is None:
        exhausted = "context_window" if admitted.context_excluded else "no_deployment"
    return GroupPlan(group, verdicts, picked.id if picked else None, exhausted)


def _order_note(order: int | None) -> str:
    return f" at order {order}" if order is not None else ""


def _headroom(d: Deployment, s: DeploymentState) -> str:
    bits = ["healthy"]
    if d.rpm:
        bits.append(f"rpm {s.rpm_used}/{d.rpm}")
    if d.tpm:
        bits.append(f"tpm {s.tpm_used}/{d.tpm}")
    if d.max_input_tokens:
        bits.append(f"max_input_tokens {d.max_input_tokens}")
    return ", ".join(bits)


def explain_route(
    config: GatewayConfig | str,
    prompt: str,
    *,
    model: str | None = None,
    task: str | None = None,
    tags: Sequence[str] = (),
    needs: Sequence[str] = (),
    store: StateStore | None = None,
    seed: int | None = None,
) -> RoutePlan:
    """Decide, without calling anything, where ``prompt`` would go.

    With a ``tasks:`` section and no ``model``, the task (named or detected) picks the alias
    first. ``store`` is the router state to read cooldowns and usage from (a fresh
    :class:`~gatewaykit.routing.store.InMemoryStore` by default: every deployment healthy).
    """
    cfg = load_config(config)
    messages, kwargs = _request(prompt, needs)
    task_info: dict[str, Any] | None = None
    if task is not None and not cfg.tasks:
        raise ConfigError(
            ConfigProblem("tasks", "--task needs a tasks: section in the config"),
            source=cfg.source,
        )
    if model is None:
        if not cfg.tasks:
            raise ConfigError(
                ConfigProblem(
                    "model",
                    "name a model with --model (the config has no tasks: section to choose "
                    f"one); known: {', '.join(cfg.public_models())}",
                ),
                source=cfg.source,
            )
        task_info = _select_task(cfg, task, messages, {**kwargs, "gateway_tags": list(tags)})
        alias = str(task_info["model"])
    else:
        alias = model
        if task is not None:
            task_info = _select_task(cfg, task, messages, {**kwargs, "model": model})
    engine = RouterEngine(cfg, store=store if store is not None else InMemoryStore(), seed=seed)
    state = engine.start(alias, messages, None, kwargs, stream=False, tags=tags)
    req = state["request"]
    all_needs = set(req.needs)
    if req.input_tokens:
        tokens, note = req.input_tokens, "router estimate: 4 characters a token, 4 a message"
    else:
        tokens = _approx_tokens(messages)
        note = "not checked by the router: no deployment sets max_input_tokens or tpm"
    plan = RoutePlan(
        prompt_tokens=tokens,
        token_note=note,
        needs=sorted(all_needs),
        tags=list(tags),
        strategy=cfg.router.routing_strategy,
        alias=alias,
        task=task_info,
    )
    rng = random.Random(seed)
    group = state["group"]
    visited = [group]
    while True:
        state["group"] = group
        gp = _plan_group(engine, state, rng)
        plan.groups.append(gp)
        if gp.picked is not None or len(visited) > cfg.router.max_fallbacks:
            break
        kind = "context_window" if gp.exhausted == "context_window" else "general"
        nxt = next(
            (
                cfg.resolve_group(t)
                for t in cfg.fallback_chain(group, kind)  # type: ignore[arg-type]
                if cfg.resolve_group(t) not in visited
            ),
            None,
        )
        if nxt is None:
            break
        visited.append(nxt)
        group = nxt
    served = plan.groups[-1].group
    for kind in ("general", "context_window", "content_policy"):
        plan.fallbacks[kind] = list(cfg.fallback_chain(served, kind))  # type: ignore[arg-type]
    return plan


def render_route(plan: RoutePlan, *, explain: bool) -> str:
    """The plan as text: one line, or every rule and deployment with ``explain``."""
    if not explain:
        if plan.deployment is None:
            return f"no deployment: {plan.why}"
        return f"{plan.group} / {plan.deployment}  ({plan.why})"
    lines: list[str] = []
    lines.append(f"prompt: ~{plan.prompt_tokens} input tokens ({plan.token_note})")
    lines.append(
        f"needs: {', '.join(plan.needs) or 'nothing special'}; "
        f"tags: {', '.join(plan.tags) or 'none'}"
    )
    if plan.task is not None:
        t = plan.task
        how = f" ({t['detection']})" if t.get("detection") else ""
        lines.append(f"task: {t['task']}{how}")
        for r in t["rules"]:
            lines.append(
                f"  rule {r['rule']}: {'applied' if r['applied'] else 'kept'} - {r['detail']}"
            )
        lines.append(f"  model: {t['model']} - {t['reason']}")
        if t.get("estimated_cost") is not None:
            lines.append(f"  estimated cost: ${t['estimated_cost']:.6f}")
    rule = _STRATEGY_RULE.get(plan.strategy)
    lines.append(f"strategy: {plan.strategy}" + (f" ({rule})" if rule else ""))
    for g in plan.groups:
        alias = f" (alias {plan.alias})" if g is plan.groups[0] and plan.alias != g.group else ""
        lines.append(f"group {g.group}{alias}:")
        for v in g.deployments:
            mark = "->" if v.picked else ("ok" if v.admitted else "x ")
            lines.append(f"  {mark} {v.id} ({v.model}): {v.reason}")
        if g.exhausted:
            lines.append(f"  no deployment can take it ({g.exhausted})")
    for kind, chain in plan.fallbacks.items():
        if chain:
            lines.append(f"on {kind} errors: falls back to {' -> '.join(chain)}")
    if plan.deployment is not None:
        lines.append(f"would serve: {plan.group} / {plan.deployment}")
    else:
        lines.append("would serve: nothing (the call would fail)")
    lines.append(f"why: {plan.why}")
    return "\n".join(lines)


def run_route(args: argparse.Namespace) -> int:
    """``gatewaykit route``: print the plan; ``--send`` also makes the call."""
    cfg = load_config(args.config)
    store: StateStore | None = None
    if args.shared_state:
        from gatewaykit.routing.redis_store import store_from_config

        store = store_from_config(cfg)
    from gatewaykit.selector import TaskSelectionError

    try:
        plan = explain_route(
            cfg,
            args.prompt,
            model=args.model,
            task=args.task,
            tags=args.tags,
            needs=args.needs,
            store=store,
            seed=args.seed,
        )
    except TaskSelectionError as e:
        print(f"no model can serve it: {e}")
        return 1
    if args.json:
        print(json.dumps(plan.as_dict(), indent=2, default=str))
    else:
        print(render_route(plan, explain=args.explain))
    if plan.deployment is None:
        return 1
    if args.send:
        return _send(cfg, plan, args)
    return 0


def _send(cfg: GatewayConfig, plan: RoutePlan, args: argparse.Namespace) -> int:
    from langchain_core.language_models import BaseChatModel

    from gatewaykit.errors import GatewayError
    from gatewaykit.routing.model import RouterChatModel

    messages, _ = _request(args.prompt, args.needs)
    model: BaseChatModel
    if plan.task is not None and args.model is None:
        from gatewaykit.selector import TaskSelector

        selector = TaskSelector(cfg, router=True, proxy_info=False)
        model = selector.for_task(str(plan.task["task"]))
    else:
        model = RouterChatModel.from_config(cfg, model=plan.alias, seed=args.seed)
    try:
        msg = model.invoke(messages, gateway_tags=list(args.tags))
    except GatewayError as e:
        print(f"sent: failed with {type(e).__name__}: {e}")
        return 1
    routing = msg.response_metadata.get("routing") or {}
    steps = " -> ".join(
        f"{a['deployment']}:{'ok' if a['ok'] else a['kind']}" for a in routing.get("attempts", [])
    )
    cost = routing.get("cost") or 0.0
    print(f"sent: served by {routing.get('deployment')} ({steps}); cost ${cost:.6f}")
    print(f"answer: {msg.content}")
    return 0
