"""Typed gateway errors, and the one place where gateway and SDK errors are translated.

The tree mirrors how callers branch::

    langchain_core.exceptions.ModelError
    └── GatewayError                     status, type, message, headers, deployment, model_group
        ├── BudgetExceeded               (ModelRateLimitError, never retried) scope, max_budget
        ├── RateLimited                  (ModelRateLimitError) retry_after, limit_type
        ├── NoDeploymentAvailable        (ModelAPIError) retry_after, reasons, attempts
        ├── ModelAccessDenied            (ModelPermissionDeniedError) model, allowed_models
        ├── AuthenticationFailed         (ModelAuthenticationError)
        ├── GuardrailBlocked             (ModelInvalidRequestError) guardrail, rule, stage
        ├── ContextWindowExceeded        (ContextOverflowError)
        ├── ContentPolicyViolation       (ModelInvalidRequestError)
        ├── InvalidRequest               (ModelInvalidRequestError) a deterministic 4xx
        ├── ModelNotFound                (ModelNotFoundError)
        ├── UpstreamError                (ModelAPIError) 5xx and malformed upstream answers
        │   └── StreamInterrupted        partial_text, chunks_received
        ├── GatewayTimeout               (ModelTimeoutError) phase: request | ttft | idle
        ├── GatewayConnectionError       (ModelConnectionError)
        └── StructuredOutputError        attempts

Every class keeps langchain-core's ``is_retryable`` flag. When the error came from an HTTP answer,
the raised object is *also* an instance of the SDK error it replaced (``openai.RateLimitError``,
``langchain_openai``'s ``OpenAIRateLimitError``...), so code that already catches those keeps
working. LiteLLM versions disagree on status codes (budget exceeded is 400 in some and 429 in
others; model-not-allowed 401 or 403), so :func:`classify` reads the gateway's ``error.type`` and
message first and the status last.

Example::

    try:
        model.invoke("hi")
    except gatewaykit.BudgetExceeded as e:
        notify_finance(e.scope, e.current_cost, e.max_budget)
    except gatewaykit.RateLimited as e:
        time.sleep(e.retry_after or 1)
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from gatewaykit._redact import redact
from gatewaykit.config_errors import ConfigError, ConfigProblem

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "ConfigError",
    "ConfigProblem",
    "ContentPolicyViolation",
    "ContextWindowExceeded",
    "ErrorKind",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayTimeout",
    "GuardrailBlocked",
    "InvalidRequest",
    "ModelAccessDenied",
    "ModelNotFound",
    "NoDeploymentAvailable",
    "RateLimited",
    "StreamInterrupted",
    "StructuredOutputError",
    "UpstreamError",
    "classify",
    "map_errors",
    "parse_retry_after",
    "translate",
]

ErrorKind = Literal[
    "budget_exceeded",
    "rate_limited",
    "no_deployment",
    "access_denied",
    "authentication",
    "guardrail",
    "context_window",
    "content_policy",
    "invalid_request",
    "not_found",
    "upstream",
    "stream_interrupted",
    "timeout",
    "connection",
    "structured_output",
    "agent",
]


class GatewayError(ModelError):
    """Base of every error a gateway call can end in.

    Fields a caller branches on: ``kind`` (a stable string, also on the class), ``status``,
    ``type`` (the gateway's ``error.type``), ``retry_after``, ``deployment`` and ``model_group``
    (which deployment failed, when known). Messages never contain API keys.

    Example::

        try:
            chain.invoke({"q": "..."})
        except GatewayError as e:
            log.warning("gateway said %s (%s) on %s", e.kind, e.status, e.deployment)
    """

    kind: ClassVar[ErrorKind] = "upstream"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: object | None = None,
        deployment: str | None = None,
        model_group: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = redact(message)
        # Not super(): SDK bases mixed in by translate() have incompatible __init__ signatures.
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.status_code = status  # openai SDK name
        self.type = type
        self.code = code
        self.param = param
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body
        self.deployment = deployment
        self.model_group = model_group
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" [deployment={self.deployment}]" if self.deployment else ""
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.message}{where}"

    def __reduce__(self) -> tuple[Any, ...]:
        # SDK-compatible subclasses made by translate() pickle as their gatewaykit class;
        # the live HTTP objects stay behind.
        state = {k: v for k, v in self.__dict__.items() if k not in ("response", "request")}
        return (_rebuild, (_typed_base(type(self)), self.args, state))


def _rebuild(cls: type[GatewayError], args: tuple[Any, ...], state: dict[str, Any]) -> GatewayError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class BudgetExceeded(GatewayError, ModelRateLimitError):
    """A key, team, user, tag or provider budget is spent; retrying will not help until it resets.

    ``scope`` says whose budget ("key", "team", "user", "end_user", "provider", "tag",
    "deployment", "global" or None when the gateway did not say).
    """

    kind: ClassVar[ErrorKind] = "budget_exceeded"
    is_retryable = False

    def __init__(
        self,
        message: str,
        *,
        scope: str | None = None,
        current_cost: float | None = None,
        max_budget: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.scope = scope
        self.current_cost = current_cost
        self.max_budget = max_budget


class RateLimited(GatewayError, ModelRateLimitError):
    """Too many requests; ``retry_after`` (seconds) says when to come back, if the gateway said.

    ``limit_type`` is "requests", "tokens" or "max_parallel_requests" when the proxy named it.
    """

    kind: ClassVar[ErrorKind] = "rate_limited"

    def __init__(self, message: str, *, limit_type: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.limit_type = limit_type


class NoDeploymentAvailable(GatewayError, ModelAPIError):
    """Every deployment of the group is cooling down, filtered out, or over its limits.

    Raised by the gateway ("No deployments available for selected model") and by gatewaykit's
    own router. ``reasons`` maps deployment id to why it was excluded, when known.
    """

    kind: ClassVar[ErrorKind] = "no_deployment"

    def __init__(
        self,
        message: str,
        *,
        reasons: Mapping[str, str] | None = None,
        attempts: list[Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.reasons: dict[str, str] = dict(reasons or {})
        self.attempts: list[Any] = list(attempts or [])


class ModelAccessDenied(GatewayError, ModelPermissionDeniedError):
    """This key (or team, user, tag set) may not use the requested model."""

    kind: ClassVar[ErrorKind] = "access_denied"

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        allowed_models: list[str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.model = model
        self.allowed_models = allowed_models


class AuthenticationFailed(GatewayError, ModelAuthenticationError):
    """The key is missing, unknown or expired."""

    kind: ClassVar[ErrorKind] = "authentication"


class GuardrailBlocked(GatewayError, ModelInvalidRequestError):
    """A guardrail (the gateway's or gatewaykit's) refused the input or output.

    ``guardrail`` names the guardrail that fired when known, ``rule`` the rule inside it (an
    entity such as ``"CREDIT_CARD"``, a word-list entry's label, an injection heuristic), and
    ``stage`` whether it refused the input (``"pre_call"``) or the answer (``"post_call"``);
    ``details`` holds the vendor response. A guardrail raised locally never puts the offending
    text in the message.

    Example::

        try:
            llm.invoke(user_text)
        except GuardrailBlocked as e:
            log.info("refused by %s (%s, %s)", e.guardrail, e.rule, e.stage)
    """

    kind: ClassVar[ErrorKind] = "guardrail"

    def __init__(
        self,
        message: str,
        *,
        guardrail: str | None = None,
        rule: str | None = None,
        stage: str | None = None,
        details: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.guardrail = guardrail
        self.rule = rule
        self.stage = stage
        self.details: dict[str, Any] = dict(details or {})


class ContextWindowExceeded(GatewayError, ContextOverflowError):
    """The prompt does not fit the model's context window; a longer-context model may."""

    kind: ClassVar[ErrorKind] = "context_window"


class ContentPolicyViolation(GatewayError, ModelInvalidRequestError):
    """The provider's content policy refused the request or blocked the answer."""

    kind: ClassVar[ErrorKind] = "content_policy"


class InvalidRequest(GatewayError, ModelInvalidRequestError):
    """A deterministic 4xx: the same request will fail the same way, so it is never retried."""

    kind: ClassVar[ErrorKind] = "invalid_request"


class ModelNotFound(GatewayError, ModelNotFoundError):
    """The gateway does not know this model name."""

    kind: ClassVar[ErrorKind] = "not_found"


class UpstreamError(GatewayError, ModelAPIError):
    """The provider or gateway failed (5xx, or an answer that could not be read)."""

    kind: ClassVar[ErrorKind] = "upstream"


class StreamInterrupted(UpstreamError):
    """A stream broke after tokens were already delivered.

    Tokens cannot be taken back, so instead of returning a silently truncated answer the stream
    raises this, carrying what was received.
    """

    kind: ClassVar[ErrorKind] = "stream_interrupted"

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        chunks_received: int = 0,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.partial_text = partial_text
        self.chunks_received = chunks_received


class GatewayTimeout(GatewayError, ModelTimeoutError):
    """No answer in time. ``phase``: "request", "ttft" (first token) or "idle" (between chunks)."""

    kind: ClassVar[ErrorKind] = "timeout"

    def __init__(self, message: str, *, phase: str = "request", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.phase = phase


class GatewayConnectionError(GatewayError, ModelConnectionError):
    """The gateway could not be reached."""

    kind: ClassVar[ErrorKind] = "connection"


class StructuredOutputError(GatewayError, ModelInvalidRequestError):
    """No attempt produced a valid structured object.

    ``attempts`` holds each attempt's raw output and error.
    """

    kind: ClassVar[ErrorKind] = "structured_output"

    def __init__(self, message: str, *, attempts: list[Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.attempts: list[Any] = list(attempts or [])


# --------------------------------------------------------------------------------------------
# SDK-compatible subclasses


_COMBINED: dict[tuple[type[GatewayError], type[BaseException]], type[GatewayError]] = {}


def _typed_base(cls: type[GatewayError]) -> type[GatewayError]:
    return getattr(cls, "_gatewaykit_class", cls)  # type: ignore[no-any-return]


def _combine(typed: type[GatewayError], sdk: type[BaseException]) -> type[GatewayError]:
    """``typed`` that is also an instance of the SDK class it replaces."""
    if issubclass(typed, sdk):
        return typed
    key = (typed, sdk)
    cls = _COMBINED.get(key)
    if cls is None:
        try:
            cls = type(
                typed.__name__,
                (typed, sdk),
                {
                    "__module__": typed.__module__,
                    "__qualname__": typed.__qualname__,
                    "_gatewaykit_class": typed,
                    "__init__": typed.__init__,
                    "__str__": GatewayError.__str__,
                },
            )
        except TypeError:  # incompatible layouts or MRO: keep the gatewaykit class alone
            cls = typed
        _COMBINED[key] = cls
    return cls


# --------------------------------------------------------------------------------------------
# Classification


def parse_retry_after(headers: Mapping[str, str] | None, message: str = "") -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or HTTP date; also
    as relayed by a proxy, ``llm_provider-retry-after``),
    ``x-ratelimit-reset-*`` ("1s", "6m0s") or LiteLLM's "Try again in N seconds"."""
    h = {k.lower(): v for k, v in (headers or {}).items()}
    # A LiteLLM proxy relays the provider's own headers with an ``llm_provider-`` prefix.
    for name in ("retry-after", "retry-after-ms"):
        if name not in h and f"llm_provider-{name}" in h:
            h[name] = h[f"llm_provider-{name}"]
    ms = h.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = h.get("retry-after")
    if ra:
        try:
            return max(0.0, float(ra))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(ra) if _looks_like_date(ra) else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    m = _TRY_AGAIN.search(message)
    if m:
        return float(m.group(1))
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        if name in h:
            d = parse_duration(h[name])
            if d is not None:
                return d
    return None


def _looks_like_date(value: str) -> bool:
    return "," in value or "GMT" in value


_TRY_AGAIN = re.compile(r"[Tt]ry again in (\d+(?:\.\d+)?)\s*s")
_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$"
)


def parse_duration(value: str) -> float | None:
    """``"1s"``, ``"6m0s"``, ``"250ms"`` or a bare number of seconds -> seconds."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def _error_object(body: object) -> tuple[dict[str, Any], str]:
    """The ``error`` object of a body and its message as text (LiteLLM may nest an object)."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return {}, body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    if not isinstance(body, Mapping):
        return {}, ""
    err = body.get("error", body)
    if not isinstance(err, Mapping):
        return {}, str(err)
    err = dict(err)
    msg = err.get("message", err.get("detail", ""))
    if isinstance(msg, Mapping):
        text = json.dumps(msg, default=str)
    else:
        text = "" if msg is None else str(msg)
    return err, text


_BUDGET_SCOPE = (
    ("ExceededTokenBudget", "key"),
    ("LiteLLM Virtual Key", "key"),
    ("crossed budget", "provider"),
    ("Team=", "team"),
    ("team", "team"),
    ("End User", "end_user"),
    ("User ", "user"),
)
_NUM = r"([0-9]+(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?)"
_CURRENT_COST = re.compile(r"[Cc]urrent (?:cost|spend)[^0-9]*" + _NUM)
_MAX_BUDGET = re.compile(r"[Mm]ax(?:imum)?[ _]budget[^0-9]*" + _NUM)
_ALLOWED = re.compile(r"can only access models=\[(.*?)\]")
_TRIED = re.compile(r"[Tt]ried to access (\S+)|requested model '([^']+)'")
_LIMIT_TYPE = re.compile(r"Limit type: (\w+)")
_GUARDRAIL_NAME = re.compile(r"guardrail[_ ](?:name)?[=: ]+['\"]?([\w\-.]+)", re.I)

_ACCESS_TYPES = frozenset(
    {
        "key_model_access_denied",
        "team_model_access_denied",
        "user_model_access_denied",
        "org_model_access_denied",
    }
)
_AUTH_TYPES = frozenset({"auth_error", "expired_key", "token_not_found_in_db", "no_db_connection"})


def _f(pattern: re.Pattern[str], text: str) -> float | None:
    m = pattern.search(text)
    return float(m.group(1)) if m else None


def classify(
    status: int | None,
    body: object = None,
    headers: Mapping[str, str] | None = None,
    *,
    deployment: str | None = None,
    model_group: str | None = None,
) -> GatewayError:
    """Turn a gateway error answer into the typed error that says what happened.

    Reads ``error.type`` and the message first (LiteLLM's statuses changed between versions),
    the status code last.

    Example::

        err = classify(429, {"error": {"message": "Budget has been exceeded! Current cost: 1.2,"
                                                  " Max budget: 1.0", "type": "budget_exceeded"}})
        assert isinstance(err, BudgetExceeded) and err.max_budget == 1.0
    """
    err, text = _error_object(body)
    etype = err.get("type")
    etype = None if etype in (None, "None") else str(etype)
    code = err.get("code")
    code = None if code is None else str(code)
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    retry_after = parse_retry_after(hdrs, text)
    low = text.lower()
    kw: dict[str, Any] = {
        "status": status,
        "type": etype,
        "code": code,
        "param": err.get("param"),
        "headers": hdrs,
        "body": body if not isinstance(body, bytes) else text,
        "deployment": deployment or hdrs.get("x-litellm-model-id"),
        "model_group": model_group or hdrs.get("x-litellm-model-group"),
        "retry_after": retry_after,
    }
    msg = text or f"gateway answered HTTP {status}"

    # 1. Budgets: type budget_exceeded (400 or 429 by version) or the known messages.
    if (
        etype == "budget_exceeded"
        or any(
            s in text
            for s in (
                "Budget has been exceeded",
                "ExceededTokenBudget",
                "exceeded budget",
                "over budget",
            )
        )
        or "crossed budget" in low
    ):
        scope = next((sc for needle, sc in _BUDGET_SCOPE if needle in text), None)
        if scope is None and etype == "budget_exceeded":
            scope = "key"
        return BudgetExceeded(
            msg,
            scope=scope,
            current_cost=_f(_CURRENT_COST, text),
            max_budget=_f(_MAX_BUDGET, text),
            **kw,
        )
    # 2. Guardrails: the message is an object {"error": "Violated guardrail policy", ...}.
    raw_msg = err.get("message")
    if (
        isinstance(raw_msg, Mapping) and "guardrail" in json.dumps(raw_msg, default=str).lower()
    ) or ("guardrail" in low and ("violat" in low or "blocked" in low)):
        details = dict(raw_msg) if isinstance(raw_msg, Mapping) else {}
        name = _GUARDRAIL_NAME.search(text)
        applied = hdrs.get("x-litellm-applied-guardrails")
        guardrail = name.group(1) if name else (applied.split(",")[0].strip() if applied else None)
        return GuardrailBlocked(msg, guardrail=guardrail, details=details, **kw)
    # 3. Model access (401 older, 403 newer) and tag-routing refusals.
    if (
        (etype in _ACCESS_TYPES)
        or "not allowed to access model" in low
        or "is not available for this api key" in low
    ):
        allowed = _ALLOWED.search(text)
        tried = _TRIED.search(text)
        return ModelAccessDenied(
            msg,
            model=(tried.group(1) or tried.group(2)) if tried else None,
            allowed_models=[m.strip(" '\"") for m in allowed.group(1).split(",") if m.strip()]
            if allowed
            else None,
            **kw,
        )
    # 4. Whole group unavailable (cooldowns) - the proxy sends it as 429.
    if "no deployments available" in low:
        return NoDeploymentAvailable(msg, **kw)
    # 5. Context window and content policy (LiteLLM prefixes the exception name).
    if (
        "contextwindowexceeded" in low
        or "context_length_exceeded" in low
        or "context window" in low
        or "maximum context length" in low
        or "prompt is too long" in low
        or "input tokens exceed" in low
    ):
        return ContextWindowExceeded(msg, **kw)
    if (
        "contentpolicyviolation" in low
        or "content_policy_violation" in low
        or "content management policy" in low
        or "response output was blocked" in low
        or etype == "content_policy_violation"
    ):
        return ContentPolicyViolation(msg, **kw)
    # 6. Rate limits.
    if (
        status == 429
        or etype in ("throttling_error", "rate_limit_error", "rate_limit_exceeded")
        or "ratelimiterror" in low
        or "rate limit exceeded" in low
    ):
        lt = _LIMIT_TYPE.search(text)
        return RateLimited(
            msg, limit_type=(lt.group(1) if lt else hdrs.get("rate_limit_type")), **kw
        )
    # 7. Authentication.
    if status == 401 or etype in _AUTH_TYPES or "authentication error" in low:
        return AuthenticationFailed(msg, **kw)
    if status == 403:
        return ModelAccessDenied(msg, **kw)
    # 8. Unknown model.
    if status == 404 or "invalid model name" in low or etype == "not_found_error":
        return ModelNotFound(msg, **kw)
    if status in (408, 504) or "timeout" in (etype or ""):
        return GatewayTimeout(msg, phase="request", **kw)
    if status is not None and 400 <= status < 500:
        return InvalidRequest(msg, **kw)
    return UpstreamError(msg, **kw)


# --------------------------------------------------------------------------------------------
# Translation of SDK / transport errors: the one place it happens.


def translate(
    exc: BaseException,
    *,
    deployment: str | None = None,
    model_group: str | None = None,
) -> BaseException:
    """The typed gatewaykit error for an openai / httpx / langchain-openai exception.

    Returns ``exc`` itself when it is already a :class:`GatewayError` (filling in the deployment)
    or is not a transport error at all (a bug in user code must not be disguised).
    """
    import httpx
    import openai

    if isinstance(exc, GatewayError):
        if deployment and not exc.deployment:
            exc.deployment = deployment
        if model_group and not exc.model_group:
            exc.model_group = model_group
        return exc
    if isinstance(exc, openai.APIStatusError):
        typed = classify(
            exc.status_code,
            exc.body if exc.body is not None else _response_text(exc.response),
            dict(exc.response.headers),
            deployment=deployment,
            model_group=model_group,
        )
        new = _combine(type(typed), type(exc)).__new__(_combine(type(typed), type(exc)))
        new.__dict__.update(typed.__dict__)
        new.args = typed.args
        new.response = exc.response  # type: ignore[attr-defined]
        new.request = exc.request  # type: ignore[attr-defined]
        new.request_id = getattr(exc, "request_id", None)  # type: ignore[attr-defined]
        new.__cause__ = exc.__cause__ or exc
        return new
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        msg = "the gateway did not answer in time"
        err: GatewayError = _combine(GatewayTimeout, type(exc))(  # type: ignore[call-arg]
            msg, phase="request", deployment=deployment, model_group=model_group
        )
        if isinstance(exc, openai.APIError):
            err.request = exc.request  # type: ignore[attr-defined]
        return err
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        msg = f"could not reach the gateway: {redact(str(exc.__cause__ or exc))}"
        err = _combine(GatewayConnectionError, type(exc))(
            msg, deployment=deployment, model_group=model_group
        )
        if isinstance(exc, openai.APIError):
            err.request = exc.request  # type: ignore[attr-defined]
        return err
    if isinstance(exc, openai.APIError):
        # An error object in a 200 answer, e.g. an SSE `data: {"error": ...}` event mid-stream.
        return classify(
            None,
            exc.body or {"error": {"message": exc.message}},
            None,
            deployment=deployment,
            model_group=model_group,
        )
    if isinstance(exc, openai.LengthFinishReasonError | openai.ContentFilterFinishReasonError):
        return exc
    if isinstance(exc, ValueError | KeyError | TypeError) and _looks_like_error_answer(exc):
        # langchain-openai raises these for a 200 answer with an `error` object or no `choices`.
        return UpstreamError(
            f"the gateway returned an unreadable answer: {redact(str(exc))[:500]}",
            deployment=deployment,
            model_group=model_group,
        )
    return exc


def _looks_like_error_answer(exc: BaseException) -> bool:
    text = str(exc)
    return "choices" in text or "'error'" in text or '"error"' in text or "Expecting value" in text


def _response_text(response: Any) -> object:
    try:
        return response.json()
    except Exception:
        try:
            return str(response.text)
        except Exception:
            return None


@contextmanager
def map_errors(*, deployment: str | None = None, model_group: str | None = None) -> Iterator[None]:
    """Translate SDK and transport errors raised in the block into gatewaykit's typed errors.

    Example::

        with map_errors(deployment="dep-1"):
            client.chat.completions.create(...)
    """
    try:
        yield
    except Exception as exc:
        new = translate(exc, deployment=deployment, model_group=model_group)
        if new is exc:
            raise
        raise new from exc
