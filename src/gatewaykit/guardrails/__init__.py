"""Guardrails as hooks around any chat model: PII masking, content filters, prompt-injection
heuristics and custom hooks, before the call and on the answer (streams included).

Use them three ways:

* around any LangChain chat model: ``with_guardrails(model, [PIIGuardrail()])``;
* natively on :class:`~gatewaykit.GatewayChatModel` / :class:`~gatewaykit.RouterChatModel`
  (``local_guardrails=[...]``);
* from a LiteLLM config: ``guardrails:`` entries attached per model with
  ``model_info.guardrails`` (see :mod:`gatewaykit.guardrails.resolve`).

Example::

    from gatewaykit.guardrails import ContentFilter, PIIGuardrail, with_guardrails

    llm = with_guardrails(ChatOpenAI(), [PIIGuardrail(), ContentFilter(["project bluebird"])])
    llm.invoke("mail bob@example.com")          # the provider sees "mail [EMAIL]"
    llm.invoke("hi", guardrails={"pii-masking": False})
"""

from gatewaykit.guardrails.base import Block, Finding, Guardrail, Stage, TextGuardrail
from gatewaykit.guardrails.content import ContentFilter
from gatewaykit.guardrails.custom import FunctionGuardrail
from gatewaykit.guardrails.detectors import detect, iban_valid, luhn_valid, ssn_valid
from gatewaykit.guardrails.injection import PromptInjectionGuardrail
from gatewaykit.guardrails.pii import PIIGuardrail
from gatewaykit.guardrails.presidio import PresidioAnalyzer, PresidioUnavailable
from gatewaykit.guardrails.resolve import GuardrailPlan, build_guardrail, plan_for_deployment
from gatewaykit.guardrails.runner import ActiveGuardrails, GuardrailSet
from gatewaykit.guardrails.streaming import StreamGuardrails, TextStream
from gatewaykit.guardrails.wrapper import GuardedChatModel, with_guardrails

__all__ = [
    "ActiveGuardrails",
    "Block",
    "ContentFilter",
    "Finding",
    "FunctionGuardrail",
    "GuardedChatModel",
    "Guardrail",
    "GuardrailPlan",
    "GuardrailSet",
    "PIIGuardrail",
    "PresidioAnalyzer",
    "PresidioUnavailable",
    "PromptInjectionGuardrail",
    "Stage",
    "StreamGuardrails",
    "TextGuardrail",
    "TextStream",
    "build_guardrail",
    "detect",
    "iban_valid",
    "luhn_valid",
    "plan_for_deployment",
    "ssn_valid",
    "with_guardrails",
]
