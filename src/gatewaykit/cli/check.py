"""``gatewaykit check config.yaml``: validate a config and show what it will do.

Loading a :class:`~gatewaykit.config.GatewayConfig` already rejects what cannot work (unknown
fallback groups, bad types, a ``router:`` section...). ``check`` adds what loading allows but a
reviewer wants to see before deploying: fallback cycles, ``os.environ/VAR`` references whose
variable is not set here, agent deployments without an ``api_base``, and secrets written into
the file. It then lists groups, deployments, aliases, fallback chains and tasks.

Errors fail the check (exit 1); warnings fail it only with ``--strict``. Missing variables are
warnings: a config is usually checked on a machine that does not hold the production keys.

Example::

    report = check_file("config.yaml")
    for f in report.findings:
        print(f.severity, f.path, f.message)
    report.exit_code(strict=True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from gatewaykit._redact import SECRET_FIELD
from gatewaykit.config import EnvRef, GatewayConfig, GuardrailSpec
from gatewaykit.config_errors import ConfigError

__all__ = [
    "FALLBACK_KINDS",
    "CheckReport",
    "Finding",
    "check_config",
    "check_file",
    "fallback_cycles",
    "render_check",
    "run_check",
]

FALLBACK_KINDS: tuple[Literal["general", "context_window", "content_policy"], ...] = (
    "general",
    "context_window",
    "content_policy",
)
_KIND_KEY = {
    "general": "fallbacks",
    "context_window": "context_window_fallbacks",
    "content_policy": "content_policy_fallbacks",
}
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``check`` found, with the field it is about.

    ``code`` is stable for machines: ``invalid``, ``unknown_fallback``, ``fallback_cycle``,
    ``missing_env``, ``agent_api_base``, ``literal_secret``.

    Example::

        Finding("warning", "missing_env", "model_list[0].litellm_params.api_key",
                "environment variable OPENAI_API_KEY is not set (os.environ/OPENAI_API_KEY)")
    """

    severity: Severity
    code: str
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "code": self.code,
            "path": self.path,
            "message": self.message,
        }


@dataclass
class CheckReport:
    """What ``check`` learned about one config: the loaded config (None when invalid) and the
    findings.

    Example::

        report = check_file("config.yaml")
        report.valid, len(report.errors), len(report.warnings), report.exit_code()
    """

    source: str
    config: GatewayConfig | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Whether the config loaded (it may still have error findings beyond loading)."""
        return self.config is not None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def exit_code(self, strict: bool = False) -> int:
        """0 when nothing fails the check, else 1 (warnings count with ``strict``)."""
        return 1 if self.errors or (strict and self.warnings) else 0

    def as_dict(self, strict: bool = False) -> dict[str, Any]:
        """A JSON-ready summary; never contains a secret value."""
        out: dict[str, Any] = {"source": self.source, "valid": self.valid}
        cfg = self.config
        if cfg is not None:
            out["groups"] = {g: [d.id for d in ds] for g, ds in cfg.groups.items()}
            out["deployments"] = [_deployment_row(d) for d in cfg.deployments]
            out["aliases"] = {
                a: {"group": t.group, "hidden": t.hidden}
                for a, t in cfg.router.model_group_alias.items()
            }
            out["routing_strategy"] = cfg.router.routing_strategy
            out["fallbacks"] = {
                kind: {g: list(cfg.fallback_chain(g, kind)) for g in cfg.groups}
                for kind in FALLBACK_KINDS
            }
            out["tasks"] = {
                name: {
                    "model": t.model,
                    "fallback_model": t.fallback_model,
                    "cheaper_model": t.cheaper_model,
                    "long_context_model": t.long_context_model,
                    "requires": list(t.requires),
                }
                for name, t in cfg.tasks.items()
            }
        out["findings"] = [f.as_dict() for f in self.findings]
        out["errors"] = len(self.errors)
        out["warnings"] = len(self.warnings)
        out["exit_code"] = self.exit_code(strict)
        return out


# ---------------------------------------------------------------------------- entry points


def check_file(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> CheckReport:
    """Load and check a config file; every problem becomes a :class:`Finding`, nothing raises
    for a bad config (a missing file is an ``invalid`` finding too)."""
    source = str(path)
    try:
        cfg = GatewayConfig.from_yaml(path)
    except ConfigError as e:
        return CheckReport(source, None, [_from_problem(p.path, p.message) for p in e.problems])
    raw: Any = None
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):  # loaded fine above; the raw view only names sections
        raw = None
    return check_config(cfg, env=env, raw=raw if isinstance(raw, Mapping) else None)


def check_config(
    cfg: GatewayConfig,
    *,
    env: Mapping[str, str] | None = None,
    raw: Mapping[str, Any] | None = None,
) -> CheckReport:
    """The checks beyond loading, on an already loaded config.

    ``env`` defaults to ``os.environ``; ``raw`` (the parsed YAML) lets cycle findings name the
    section that declares the fallbacks.
    """
    findings: list[Finding] = []
    findings += _cycle_findings(cfg, raw)
    findings += _agent_findings(cfg)
    findings += _env_findings(cfg, os.environ if env is None else env)
    findings += _secret_findings(cfg)
    return CheckReport(cfg.source or "<config>", cfg, findings)


def _from_problem(path: str, message: str) -> Finding:
    unknown = "unknown fallback target" in message or "fallbacks for unknown model group" in message
    return Finding("error", "unknown_fallback" if unknown else "invalid", path, message)


# ---------------------------------------------------------------------------- fallback cycles


def _target_group(cfg: GatewayConfig, target: str) -> str:
    """The model group a fallback target names (an alias or a deployment id resolved)."""
    group = cfg.resolve_group(target)
    if group in cfg.groups:
        return group
    return cfg.deployment(group).model_name


def fallback_cycles(cfg: GatewayConfig, kind: str = "general") -> list[list[str]]:
    """Every cycle in the fallback graph of ``kind``, each as ``[a, b, ..., a]``.

    The graph has an edge from each group to each group its fallback chain of ``kind`` names
    (``"*"`` entries and ``default_fallbacks`` included, as the router reads them). Each cycle is
    reported once, starting at its first group in config order.

    Example::

        fallback_cycles(cfg)   # [['premium-chat', 'basic-chat', 'premium-chat']]
    """
    order = list(cfg.groups)
    edges: dict[str, list[str]] = {
        g: list(dict.fromkeys(_target_group(cfg, t) for t in cfg.fallback_chain(g, kind)))  # type: ignore[arg-type]
        for g in order
    }
    rank = {g: i for i, g in enumerate(order)}
    cycles: list[list[str]] = []
    for start in order:
        # Only cycles whose lowest-ranked group is `start`: each cycle is found exactly once.
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges[start]))]
        path = [start]
        while stack:
            _, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                continue
            if nxt == start:
                cycles.append([*path, start])
                if len(cycles) >= 100:
                    return cycles
            elif nxt not in path and rank.get(nxt, -1) > rank[start]:
                stack.append((nxt, iter(edges.get(nxt, []))))
                path.append(nxt)
    return cycles


def _declared_at(raw: Mapping[str, Any] | None, kind: str) -> str:
    key = _KIND_KEY[kind]
    if raw is not None:
        for section in ("router_settings", "litellm_settings"):
            sec = raw.get(section)
            if isinstance(sec, Mapping) and sec.get(key) is not None:
                return f"{section}.{key}"
    return f"router_settings.{key}"


def _cycle_findings(cfg: GatewayConfig, raw: Mapping[str, Any] | None) -> list[Finding]:
    out: list[Finding] = []
    seen: set[tuple[str, ...]] = set()
    for kind in FALLBACK_KINDS:
        for cycle in fallback_cycles(cfg, kind):
            key = tuple(cycle)
            if key in seen:
                continue  # a general cycle shows up again in the kinds that inherit it
            seen.add(key)
            out.append(
                Finding(
                    "warning",
                    "fallback_cycle",
                    _declared_at(raw, kind),
                    f"fallback cycle ({kind}): {' -> '.join(cycle)}; the router enters each "
                    "group at most once per request, so this does not loop, but a request that "
                    "fails in all of them fails; make sure the mutual fallback is intended",
                )
            )
    return out


# ---------------------------------------------------------------------------- deployments


def _agent_findings(cfg: GatewayConfig) -> list[Finding]:
    out: list[Finding] = []
    for d in cfg.deployments:
        if d.is_agent and not (
            d.litellm_params.get("api_base") or d.litellm_params.get("base_url")
        ):
            out.append(
                Finding(
                    "error",
                    "agent_api_base",
                    f"model_list[{d.index}].litellm_params.api_base",
                    f"agent deployment {d.id!r} ({d.model}) has no api_base: set the URL of the "
                    "agent's server, e.g. api_base: http://localhost:2024",
                )
            )
    return out


def _containers(cfg: GatewayConfig) -> Iterator[Any]:
    """Every part of the config that may hold an ``os.environ/`` reference or a secret."""
    for d in cfg.deployments:
        yield d.litellm_params
        yield d.model_info
    rs = cfg.router
    yield [rs.redis_url, rs.redis_host, rs.redis_port, rs.redis_password]
    yield rs.extra
    yield cfg.litellm_settings
    yield cfg.general_settings
    yield cfg.environment_variables
    yield [g.params for g in cfg.guardrails if isinstance(g, GuardrailSpec)]
    if cfg.gateway is not None:
        yield [cfg.gateway.base_url, cfg.gateway.api_key]
        yield cfg.gateway.extra
        yield cfg.gateway.default_metadata
    yield cfg.unknown


def _env_refs(value: Any) -> Iterator[EnvRef]:
    if isinstance(value, EnvRef):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _env_refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _env_refs(v)


def _env_findings(cfg: GatewayConfig, env: Mapping[str, str]) -> list[Finding]:
    """One finding per unset variable, at its first field, naming every other field too."""
    missing: dict[str, list[str]] = {}
    for container in _containers(cfg):
        for ref in _env_refs(container):
            try:
                ref.resolve(env, extra=cfg.environment_variables)
            except ConfigError:
                paths = missing.setdefault(ref.var, [])
                if ref.path not in paths:
                    paths.append(ref.path)
    out: list[Finding] = []
    for var, paths in missing.items():
        state = "is empty" if env.get(var) == "" else "is not set"
        also = f"; also used at {', '.join(paths[1:])}" if len(paths) > 1 else ""
        out.append(
            Finding(
                "warning",
                "missing_env",
                paths[0],
                f"environment variable {var} {state} (os.environ/{var}){also}; "
                "export it where this config runs",
            )
        )
    return out


_PLACEHOLDERS = frozenset({"none", "no-key", "dummy", "fake", "empty"})


def _plain_strings(base: str, value: Any) -> Iterator[tuple[str, str, str]]:
    """``(path, key, value)`` for every plain string under a mapping key, recursively."""
    if isinstance(value, Mapping):
        for key, v in value.items():
            path = f"{base}.{key}" if base else str(key)
            if isinstance(v, str):
                yield path, str(key), v
            else:
                yield from _plain_strings(path, v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _plain_strings(f"{base}[{i}]", v)


def _secret_findings(cfg: GatewayConfig) -> list[Finding]:
    """Keys, passwords and tokens written as plain text (their values are never shown)."""
    places: list[tuple[str, Any]] = [
        (f"model_list[{d.index}].litellm_params", d.litellm_params) for d in cfg.deployments
    ]
    places += [
        ("litellm_settings", cfg.litellm_settings),
        ("general_settings", cfg.general_settings),
        ("environment_variables", cfg.environment_variables),
    ]
    out: list[Finding] = []
    for base, section in places:
        for path, key, value in _plain_strings(base, section):
            if (
                SECRET_FIELD.search(key)
                and value.strip()
                and value.strip().lower() not in _PLACEHOLDERS
            ):
                out.append(
                    Finding(
                        "warning",
                        "literal_secret",
                        path,
                        f"a secret is written in the file; use os.environ/VAR instead "
                        f"(e.g. {key}: os.environ/{key.upper()})",
                    )
                )
    return out


# ---------------------------------------------------------------------------- rendering


def _host(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, EnvRef):
        return str(value)
    parts = urlsplit(str(value))
    host = parts.hostname or str(value)
    return f"{host}:{parts.port}" if parts.port else host


def _deployment_row(d: Any) -> dict[str, Any]:
    lp = d.litellm_params
    return {
        "id": d.id,
        "group": d.model_name,
        "provider": d.provider,
        "model": d.upstream_model,
        "api_base_host": _host(lp.get("api_base") or lp.get("base_url")),
        "order": d.order,
        "rpm": d.rpm,
        "tpm": d.tpm,
        "agent": d.is_agent,
    }


def render_check(report: CheckReport, *, strict: bool = False, as_json: bool = False) -> str:
    """The report as text for people, or JSON (``as_json``) for machines."""
    if as_json:
        return json.dumps(report.as_dict(strict), indent=2)
    lines: list[str] = []
    cfg = report.config
    lines.append(f"config: {report.source}")
    if cfg is None:
        lines.append("INVALID: the config does not load")
    else:
        lines.append(f"strategy: {cfg.router.routing_strategy}")
        lines.append(f"groups ({len(cfg.groups)}):")
        for g, ds in cfg.groups.items():
            lines.append(f"  {g}: {len(ds)} deployment{'s' if len(ds) != 1 else ''}")
        lines.append(f"deployments ({len(cfg.deployments)}):")
        for d in cfg.deployments:
            row = _deployment_row(d)
            model = f"{row['provider']}/{row['model']}" if row["provider"] else row["model"]
            extras = [f"{k} {row[k]}" for k in ("order", "rpm", "tpm") if row[k] is not None]
            if row["agent"]:
                extras.append("agent")
            if row["api_base_host"]:
                extras.append(f"api_base {row['api_base_host']}")
            tail = f"  ({', '.join(extras)})" if extras else ""
            lines.append(f"  {row['id']}  [{row['group']}]  {model}{tail}")
        aliases = cfg.router.model_group_alias
        if aliases:
            lines.append(f"aliases ({len(aliases)}):")
            for a, target in aliases.items():
                hidden = " (hidden)" if target.hidden else ""
                lines.append(f"  {a} -> {target.group}{hidden}")
        lines.append("fallback chains:")
        any_chain = False
        for kind in FALLBACK_KINDS:
            for g in cfg.groups:
                chain = cfg.fallback_chain(g, kind)
                if kind != "general" and chain == cfg.fallback_chain(g, "general"):
                    continue  # inherited from the general list: shown once
                if chain:
                    any_chain = True
                    lines.append(f"  {kind}: {g} -> {' -> '.join(chain)}")
        if not any_chain:
            lines.append("  (none)")
        if cfg.tasks:
            lines.append(f"tasks ({len(cfg.tasks)}):")
            for name, t in cfg.tasks.items():
                alts = [
                    f"{label} {v}"
                    for label, v in (
                        ("long context", t.long_context_model),
                        ("cheaper", t.cheaper_model),
                        ("fallback", t.fallback_model),
                    )
                    if v
                ]
                if t.requires:
                    alts.append(f"requires {', '.join(t.requires)}")
                lines.append(f"  {name} -> {t.model}" + (f"  ({'; '.join(alts)})" if alts else ""))
    if report.findings:
        lines.append("findings:")
        for f in report.findings:
            lines.append(f"  {f.severity.upper()} {f.path or '<root>'}: {f.message}")
    code = report.exit_code(strict)
    verdict = "ok" if code == 0 else "FAILED"
    lines.append(
        f"check {verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        + (" (--strict: warnings count)" if strict else "")
    )
    return "\n".join(lines)


def run_check(paths: Sequence[str], *, strict: bool, as_json: bool) -> tuple[int, str]:
    """Check several files; the exit code is the worst one."""
    outputs: list[str] = []
    worst = 0
    reports = [check_file(p) for p in paths]
    for r in reports:
        worst = max(worst, r.exit_code(strict))
    if as_json:
        data: Any = [r.as_dict(strict) for r in reports]
        return worst, json.dumps(data[0] if len(data) == 1 else data, indent=2)
    for r in reports:
        outputs.append(render_check(r, strict=strict))
    return worst, "\n\n".join(outputs)
