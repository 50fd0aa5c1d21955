"""Plain data that scripts the mock and records what it saw.

Both types are JSON-serialisable dataclasses, because in ``mode="process"`` they cross a process
boundary over the mock's control endpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = ["ERROR_KINDS", "Behavior", "ErrorKind", "RecordedRequest"]

ErrorKind = Literal[
    "rate_limit",
    "server",
    "context_window",
    "content_policy",
    "budget_exceeded",
    "model_not_allowed",
    "guardrail_blocked",
    "no_deployments",
    "auth",
    "bad_request",
    "not_found",
    "timeout",
]
"""The error bodies the mock can answer with (LiteLLM proxy shapes)."""

ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)


@dataclass(frozen=True, kw_only=True)
class Behavior:
    """How the mock answers one call. Every field is optional; ``Behavior()`` is a normal answer.

    Scripted per model name (the request body's ``model``) on a :class:`MockGateway`; a list of
    behaviours is played one per call and the last one repeats::

        gw.script("dep-a", Behavior(status=500))                        # always a 500
        gw.script("dep-b", [Behavior(error="rate_limit", retry_after=1), Behavior()])
        gw.script("*", Behavior(latency_ms=5, fail_rate=0.1, seed=7))   # every other model

    Errors: ``status`` and/or ``error`` make the call fail up front with a LiteLLM-shaped error
    body (the kind is derived from the status when only ``status`` is given, and vice versa).
    With ``fail_rate`` the failure happens only with that probability (drawn from a
    ``random.Random(seed)`` owned by the script, so a seeded run is reproducible); a bare
    ``fail_rate`` fails with a 500. With ``stream_error_after`` a *streamed* call fails mid-stream
    instead, after that many chunks. ``error="timeout"`` hangs until the client gives up, or
    ``hang_s`` passes, then answers 408.

    Streams: ``ttft_ms`` delays the first chunk, ``chunk_delay_ms`` spaces the others;
    ``stream_cut_after`` drops the connection after k chunks (no finish chunk, no ``[DONE]``);
    ``stall_after`` pauses ``stall_s`` after k chunks, then finishes normally. The ``stream_*`` and
    ``stall_*`` fields are ignored for non-streamed calls.

    Content: ``content``, ``refusal``, ``tool_calls`` (``{"name", "arguments"}`` or OpenAI's
    ``{"id", "type", "function"}`` form) and ``json`` replace what the mock would synthesise;
    ``json`` also becomes the arguments of an automatic tool call. ``invalid_json`` truncates the
    JSON the mock would have returned.

    Gateway metadata: ``headers`` are added to the response; ``usage`` overrides token counts;
    ``cost``, ``model_id``, ``api_base``, ``model_group``, ``attempted_fallbacks``,
    ``attempted_retries`` and ``cache_key`` set the matching ``x-litellm-*`` headers.
    """

    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    status: int | None = None
    error: ErrorKind | None = None
    retry_after: float | None = None
    fail_rate: float | None = None
    seed: int | None = None
    hang_s: float = 30.0
    content: str | None = None
    stream_cut_after: int | None = None
    stream_error_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 30.0
    finish_reason: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    json: dict[str, Any] | None = None
    invalid_json: bool = False
    headers: dict[str, str] | None = None
    usage: dict[str, int] | None = None
    cost: float | None = None
    model_id: str | None = None
    api_base: str | None = None
    model_group: str | None = None
    attempted_fallbacks: int | None = None
    attempted_retries: int | None = None
    cache_key: str | None = None

    def __post_init__(self) -> None:
        for name in ("latency_ms", "ttft_ms", "chunk_delay_ms", "hang_s", "stall_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"Behavior.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("stream_cut_after", "stream_error_after", "stall_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Behavior.{name} must be >= 0, got {value!r}")
        if self.error is not None and self.error not in ERROR_KINDS:
            raise ValueError(f"Behavior.error must be one of {ERROR_KINDS}, got {self.error!r}")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"Behavior.status must be an HTTP error status, got {self.status!r}")
        if self.fail_rate is not None and not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"Behavior.fail_rate must be within [0, 1], got {self.fail_rate!r}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"Behavior.retry_after must be >= 0, got {self.retry_after!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from their defaults (what crosses the control endpoint)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Behavior:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Behavior field(s): {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the mock received: headers lower-cased, body parsed (None if not JSON)."""

    path: str
    method: str
    headers: dict[str, str] = field(repr=False)
    body: dict[str, Any] | None = field(repr=False)
    model: str | None
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "method": self.method,
            "headers": self.headers,
            "body": self.body,
            "model": self.model,
            "time": self.time,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecordedRequest:
        return cls(
            path=data["path"],
            method=data["method"],
            headers=data["headers"],
            body=data["body"],
            model=data["model"],
            time=data["time"],
        )
