"""The mock's mutable state: scripts, emulated virtual keys, the request log.

Handlers run on the server's event loop thread only; the test thread mutates through the methods
below, which either swap whole objects or take ``lock``. Recording is one ``list.append`` per call.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from gatewaykit.testing.behavior import Behavior, RecordedRequest

__all__ = ["DEFAULT_BEHAVIOR", "MockState", "VirtualKey"]

DEFAULT_BEHAVIOR = Behavior()
_WINDOW_S = 60.0
_ALLOW_ALL = frozenset({"*", "all-proxy-models"})


class _Script:
    """One scripted entry: behaviours played in order per model name, the last one repeating."""

    __slots__ = ("behaviors", "positions", "rngs")

    def __init__(self, behaviors: Sequence[Behavior]) -> None:
        self.behaviors = tuple(behaviors)
        self.rngs = tuple(
            random.Random(b.seed) if b.fail_rate is not None else None for b in self.behaviors
        )
        self.positions: dict[str, int] = {}

    def next(self, model: str) -> tuple[Behavior, random.Random | None]:
        if len(self.behaviors) == 1:
            return self.behaviors[0], self.rngs[0]
        position = self.positions.get(model, 0)
        self.positions[model] = position + 1
        index = min(position, len(self.behaviors) - 1)
        return self.behaviors[index], self.rngs[index]


@dataclass(slots=True)
class VirtualKey:
    """A LiteLLM virtual key as the proxy would hold it in its database (emulated)."""

    key: str
    models: list[str] | None = None
    max_budget: float | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    team_id: str | None = None
    key_alias: str | None = None
    spend: float = 0.0
    request_times: deque[float] = field(default_factory=deque)
    token_log: deque[tuple[float, int]] = field(default_factory=deque)

    def allows(self, model: str) -> bool:
        if not self.models:
            return True
        for allowed in self.models:
            if allowed == model or allowed in _ALLOW_ALL:
                return True
            if "*" in allowed and fnmatchcase(model, allowed):
                return True
        return False

    def requests_in_window(self, now: float) -> int:
        times = self.request_times
        while times and times[0] <= now - _WINDOW_S:
            times.popleft()
        return len(times)

    def tokens_in_window(self, now: float) -> int:
        log = self.token_log
        while log and log[0][0] <= now - _WINDOW_S:
            log.popleft()
        return sum(tokens for _, tokens in log)

    def info(self) -> dict[str, Any]:
        return {
            "key_alias": self.key_alias,
            "spend": self.spend,
            "max_budget": self.max_budget,
            "models": list(self.models or []),
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "team_id": self.team_id,
        }


class MockState:
    """Scripts, keys and the request log of one mock server."""

    def __init__(self, *, record: bool = True) -> None:
        self.record = record
        self.lock = threading.Lock()
        self.scripts: dict[str, _Script] = {}
        self.patterns: list[tuple[str, _Script]] = []
        self.keys: dict[str, VirtualKey] = {}
        self.records: list[RecordedRequest] = []
        self.counts: dict[str | None, int] = {}

    # -- control ---------------------------------------------------------------------------
    def script(self, model: str, behaviors: Sequence[Behavior]) -> None:
        if not behaviors:
            raise ValueError("script() needs at least one Behavior")
        entry = _Script(behaviors)
        with self.lock:
            scripts = dict(self.scripts)
            scripts[model] = entry
            self.scripts = scripts
            if model != "*" and any(c in model for c in "*?["):
                self.patterns = [(p, s) for p, s in self.patterns if p != model]
                self.patterns.append((model, entry))

    def reset(self) -> None:
        with self.lock:
            self.scripts = {}
            self.patterns = []
            self.keys = {}
            self.records = []
            self.counts = {}

    def add_key(self, key: VirtualKey) -> None:
        with self.lock:
            keys = dict(self.keys)
            keys[key.key] = key
            self.keys = keys

    def requests(self, model: str | None = None) -> list[RecordedRequest]:
        records = list(self.records)
        if model is None:
            return records
        return [r for r in records if r.model == model]

    def count(self, model: str | None = None) -> int:
        counts = self.counts
        if model is None:
            return sum(counts.values())
        return counts.get(model, 0)

    def model_names(self) -> list[str]:
        names = [m for m in self.scripts if m != "*" and not any(c in m for c in "*?[")]
        for key in self.keys.values():
            names.extend(m for m in key.models or () if "*" not in m and m not in _ALLOW_ALL)
        return list(dict.fromkeys(names))

    # -- hot path --------------------------------------------------------------------------
    def note(
        self,
        path: str,
        method: str,
        headers: dict[str, str],
        body: dict[str, Any] | None,
        model: str | None,
    ) -> None:
        counts = self.counts
        counts[model] = counts.get(model, 0) + 1
        if self.record:
            self.records.append(RecordedRequest(path, method, headers, body, model, time.time()))

    def pick(self, model: str) -> tuple[Behavior, random.Random | None]:
        scripts = self.scripts
        entry = scripts.get(model)
        if entry is None:
            for pattern, candidate in self.patterns:
                if fnmatchcase(model, pattern):
                    entry = candidate
                    break
            else:
                entry = scripts.get("*")
                if entry is None:
                    return DEFAULT_BEHAVIOR, None
        return entry.next(model)


def key_from_spec(spec: dict[str, Any]) -> VirtualKey:
    """A key from ``MockGateway.add_key`` arguments (also what the control endpoint receives)."""
    allowed = {"key", "models", "max_budget", "rpm_limit", "tpm_limit", "team_id", "key_alias"}
    allowed.add("spend")
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"unknown add_key argument(s): {sorted(unknown)}")
    models: Iterable[str] | None = spec.get("models")
    return VirtualKey(
        key=str(spec["key"]),
        models=list(models) if models is not None else None,
        max_budget=spec.get("max_budget"),
        rpm_limit=spec.get("rpm_limit"),
        tpm_limit=spec.get("tpm_limit"),
        team_id=spec.get("team_id"),
        key_alias=spec.get("key_alias"),
        spend=float(spec.get("spend") or 0.0),
    )
