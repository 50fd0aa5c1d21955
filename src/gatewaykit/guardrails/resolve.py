"""From a config's ``guardrails:`` section to guardrails a model runs.

Each entry's ``litellm_params.guardrail`` names its kind. Kinds gatewaykit implements run in
the process: ``presidio`` (the validated built-in detectors, plus Presidio for entities such
as ``PERSON``), ``litellm_content_filter``, ``detect_prompt_injection`` /
``prompt_injection`` and ``custom`` (a class from ``guardrail_path``). Vendor kinds (aporia,
bedrock, lakera...) run only on a gateway. ``mode``: ``pre_call`` and ``during_call`` check the
input before the call, ``post_call`` the answer, ``pre_and_post_call`` (or a list) both;
``logging_only`` is the gateway's. ``default_on: true`` runs it on every request.

Example::

    cfg = GatewayConfig.from_yaml("config.yaml")
    plan = plan_for_deployment(cfg, cfg.group("claude-sonnet")[0], via_gateway=False)
    plan.local          # [PIIGuardrail(...)]
    plan.gateway_names  # names to send in the request's `guardrails` field
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewaykit.config_errors import ConfigError, ConfigProblem
from gatewaykit.guardrails.base import Guardrail, Stage
from gatewaykit.guardrails.content import ContentFilter
from gatewaykit.guardrails.custom import build_custom, load_guardrail_class
from gatewaykit.guardrails.injection import PromptInjectionGuardrail
from gatewaykit.guardrails.pii import PIIGuardrail

if TYPE_CHECKING:
    from gatewaykit.config import Deployment, GatewayConfig, GuardrailSpec

__all__ = [
    "LOCAL_KINDS",
    "GuardrailPlan",
    "build_guardrail",
    "guardrail_kind",
    "plan_for_deployment",
]

LOCAL_KINDS = frozenset(
    {
        "presidio",
        "pii",
        "pii_masking",
        "litellm_content_filter",
        "content_filter",
        "detect_prompt_injection",
        "prompt_injection",
        "custom",
    }
)
"""``litellm_params.guardrail`` values gatewaykit can run itself."""

_OWN_KEYS = frozenset({"guardrail", "guardrail_path", "guardrail_class", "mode", "default_on"})


def guardrail_kind(spec: GuardrailSpec) -> str | None:
    """The entry's kind; LiteLLM's older ``{name: {callbacks: [...]}}`` form uses the callback."""
    kind = spec.params.get("guardrail")
    if isinstance(kind, str):
        return kind
    callbacks = spec.params.get("callbacks")
    if isinstance(callbacks, list) and callbacks:
        local = [c for c in callbacks if c in LOCAL_KINDS]
        return str(local[0] if local and len(local) == len(callbacks) else callbacks[0])
    return None


def stages_of(spec: GuardrailSpec) -> frozenset[Stage] | None:
    """Local stages for the entry's mode; None for a gateway-only mode (``logging_only``)."""
    modes = [m.strip() for m in (spec.mode or "pre_call").split(",") if m.strip()]
    out: set[Stage] = set()
    for m in modes:
        if m in ("pre_call", "during_call"):
            out.add("pre_call")
        elif m == "post_call":
            out.add("post_call")
        elif m == "pre_and_post_call":
            out.update(("pre_call", "post_call"))
        elif m == "logging_only":
            continue
        else:
            raise ValueError(
                f"unknown mode {m!r}; use pre_call, during_call, post_call or pre_and_post_call"
            )
    return frozenset(out) or None


def build_guardrail(
    spec: GuardrailSpec,
    *,
    config: GatewayConfig | None = None,
    default_on: bool | None = None,
    where: str | None = None,
) -> Guardrail | None:
    """The local guardrail for a ``guardrails:`` entry, or None when only a gateway runs it."""
    where = where or f"guardrails[{spec.name}]"
    source = config.source if config is not None else None
    kind = guardrail_kind(spec)
    if kind not in LOCAL_KINDS:
        return None
    p: Mapping[str, Any] = spec.params
    try:
        stages = stages_of(spec)
    except ValueError as exc:
        raise ConfigError(
            ConfigProblem(f"{where}.litellm_params.mode", str(exc)), source=source
        ) from None
    if stages is None:
        return None
    on = bool(p.get("default_on", False)) if default_on is None else default_on
    common: dict[str, Any] = {"name": spec.name, "stages": stages, "default_on": on}
    try:
        if kind in ("presidio", "pii", "pii_masking"):
            entities = p.get("pii_entities_config") or p.get("entities")
            presidio = None
            if entities and any(str(e).upper() not in _BUILTIN_NAMES for e in entities):
                from gatewaykit.guardrails.presidio import PresidioAnalyzer

                extra = [str(e).upper() for e in entities if str(e).upper() not in _BUILTIN_NAMES]
                presidio = PresidioAnalyzer(
                    entities=extra, language=str(p.get("presidio_language") or "en")
                )
            return PIIGuardrail(
                entities,
                mask=p.get("mask_style", "label"),
                presidio=presidio,
                **common,
            )
        if kind in ("litellm_content_filter", "content_filter"):
            return ContentFilter(
                words=list(p.get("blocked_words") or []),
                patterns=list(p.get("patterns") or []),
                **common,
            )
        if kind in ("detect_prompt_injection", "prompt_injection"):
            return PromptInjectionGuardrail(threshold=float(p.get("threshold", 1.0)), **common)
        # custom
        path, cls_name = p.get("guardrail_path"), p.get("guardrail_class")
        if not isinstance(path, str) or not isinstance(cls_name, str):
            raise ValueError("guardrail: custom needs guardrail_path and guardrail_class")
        base = Path(source).parent if source else None
        cls = load_guardrail_class(
            path, cls_name, base_dir=base, field=f"{where}.litellm_params", source=source
        )
        own = {k: v for k, v in p.items() if k not in _OWN_KEYS}
        return build_custom(cls, own, **common)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            ConfigProblem(f"{where}.litellm_params", str(exc)), source=source
        ) from None


_BUILTIN_NAMES = frozenset(
    {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN",
     "EMAIL", "PHONE", "CARD", "CC", "IBAN", "SSN"}
)  # fmt: skip


@dataclass
class GuardrailPlan:
    """What runs where for one deployment: ``local`` guardrails, names for the gateway."""

    local: list[Guardrail] = field(default_factory=list)
    gateway_names: list[str] = field(default_factory=list)


def plan_for_deployment(
    config: GatewayConfig, deployment: Deployment, *, via_gateway: bool
) -> GuardrailPlan:
    """Resolve ``model_info.guardrails`` and ``default_on`` entries for one deployment.

    Local kinds run in the process; behind a gateway (``via_gateway``) the attached names are
    *also* sent in the request's ``guardrails`` field, and names only a gateway can run are sent
    only there. Without a gateway, a name that cannot run locally is a :class:`ConfigError`.
    """
    specs = {g.name: g for g in config.guardrails}
    field_path = f"model_list[{deployment.index}].model_info.guardrails"
    plan = GuardrailPlan()
    problems: list[ConfigProblem] = []
    attached = list(dict.fromkeys(deployment.guardrails))
    for name in attached:
        spec = specs.get(name)
        if spec is None:
            if via_gateway:
                plan.gateway_names.append(name)
                continue
            problems.append(
                ConfigProblem(
                    field_path,
                    f"guardrail {name!r} is not defined in the `guardrails:` section "
                    f"(defined: {', '.join(specs) or 'none'})",
                )
            )
            continue
        g = build_guardrail(spec, config=config, default_on=True)
        if via_gateway:
            plan.gateway_names.append(name)
        if g is not None:
            plan.local.append(g)
        elif not via_gateway:
            problems.append(
                ConfigProblem(
                    field_path,
                    f"guardrail {name!r} (guardrail: {guardrail_kind(spec)}) runs only on a "
                    "gateway, and this deployment calls its provider directly; use a kind "
                    f"gatewaykit runs ({', '.join(sorted(LOCAL_KINDS))}) or route it through a "
                    "litellm_proxy/ deployment",
                )
            )
    for spec in config.guardrails:
        if spec.name in attached:
            continue
        on = bool(spec.params.get("default_on", False))
        g = build_guardrail(spec, config=config)
        if g is not None:
            plan.local.append(g)
        elif on and not via_gateway:
            problems.append(
                ConfigProblem(
                    f"guardrails[{spec.name}]",
                    f"default_on guardrail {spec.name!r} (guardrail: {guardrail_kind(spec)}) "
                    f"runs only on a gateway, but deployment {deployment.id!r} calls its "
                    "provider directly",
                )
            )
    if problems:
        raise ConfigError(problems, source=config.source)
    return plan
