"""What calls cost, and budgets that stop spending before it happens.

A call's cost is what the gateway reported (``x-litellm-response-cost``) when it did, else the
deployment's configured per-token prices times the usage. Budgets cap spend per scope (the whole
router, a tag, a team, an end user, a model group, a provider or a deployment) over a window
(``1h``, ``1d``, ``30d``, ``1mo``...), several at once ($10 a day AND $100 a month). A hard budget
raises :class:`~gatewaykit.BudgetExceeded` *before* the call is sent; a soft limit calls a
callback once per window. Each call first reserves its estimated cost and then settles the real
one, so concurrent calls cannot all squeeze under the same limit: overspend is bounded by the
calls in flight.

Example::

    from gatewaykit import Budget, BudgetManager, RouterChatModel

    team = {"scope": "team", "key": "search"}
    budgets = BudgetManager(
        [Budget(10, "1d", **team), Budget(100, "1mo", **team)],
        on_soft_limit=lambda alert: print("heads up:", alert),
    )
    router = RouterChatModel.from_config("config.yaml", model="gpt-4o", budgets=budgets)
"""

from __future__ import annotations

import calendar
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from gatewaykit.errors import BudgetExceeded

__all__ = [
    "Budget",
    "BudgetAlert",
    "BudgetManager",
    "BudgetScope",
    "BudgetStatus",
    "InMemoryLedger",
    "RedisLedger",
    "Reservation",
    "SpendContext",
    "SpendLedger",
    "Window",
    "call_cost",
]

logger = logging.getLogger("gatewaykit.cost")

BudgetScope = Literal["global", "tag", "team", "user", "model_group", "provider", "deployment"]
SCOPES: tuple[str, ...] = (
    "global",
    "tag",
    "team",
    "user",
    "model_group",
    "provider",
    "deployment",
)
REQUEST_SCOPES = frozenset({"global", "tag", "team", "user"})
"""Scopes that belong to the caller: every deployment spends the same budget, so exceeding one
fails the request; the other scopes only take their deployments out of rotation."""

_WORDS = {"hour": "1h", "day": "1d", "week": "1w", "month": "1mo", "year": "12mo"}
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*(mo|s|m|h|d|w)\s*$")


@dataclass(frozen=True, slots=True)
class Window:
    """A budget window: fixed periods aligned to the Unix epoch (UTC days start at midnight),
    calendar months for ``mo``, or ``total`` (never resets). Spelled as LiteLLM's
    ``budget_duration`` (``30s``, ``15m``, ``1h``, ``1d``, ``1w``, ``1mo``) or as a word
    (``hour``, ``day``, ``week``, ``month``, ``year``, ``total``).

    Example::

        w = Window.parse("1d")
        w.period_id(time.time()), w.resets_at(time.time())
    """

    text: str
    seconds: int = 0
    months: int = 0

    @classmethod
    def parse(cls, value: str | int | float | None) -> Window:
        if value is None:
            return cls("total")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value <= 0:
                raise ValueError(f"a window must be a positive duration, got {value!r}")
            return cls(f"{int(value)}s", seconds=int(value))
        if not isinstance(value, str):
            raise ValueError(f"a window must be a duration like 1d or 1mo, got {value!r}")
        text = value.strip().lower()
        if text in ("total", "forever", "none"):
            return cls("total")
        text = _WORDS.get(text, text)
        m = _DURATION.match(text)
        if not m or int(m.group(1)) <= 0:
            raise ValueError(
                f"unknown window {value!r}; use a duration like 30m, 1h, 1d, 7d, 1mo, or total"
            )
        n, unit = int(m.group(1)), m.group(2)
        if unit == "mo":
            return cls(f"{n}mo", months=n)
        return cls(f"{n}{unit}", seconds=n * _UNIT_S[unit])

    def period_id(self, now: float) -> int:
        """Which period ``now`` (Unix seconds) falls in."""
        if self.seconds:
            return int(now // self.seconds)
        if self.months:
            t = datetime.fromtimestamp(now, UTC)
            return (t.year * 12 + t.month - 1) // self.months
        return 0

    def resets_at(self, now: float) -> float | None:
        """Unix time of the next reset (None for ``total``)."""
        if self.seconds:
            return float((self.period_id(now) + 1) * self.seconds)
        if self.months:
            month_index = (self.period_id(now) + 1) * self.months
            year, month0 = divmod(month_index, 12)
            return float(calendar.timegm((year, month0 + 1, 1, 0, 0, 0)))
        return None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Budget:
    """A spend limit in USD for one scope over one window.

    ``key`` names the tag, team, user, model group, provider or deployment; ``"*"`` gives each
    one its own budget (every end user gets $1 a day). ``soft_limit`` fires the manager's
    ``on_soft_limit`` callback once per window instead of failing.

    Example::

        Budget(10, "1d", scope="team", key="search", soft_limit=8)
        Budget(1, "1d", scope="user", key="*")
        Budget(500, "1mo", scope="provider", key="openai")
    """

    limit: float
    window: Window | str | int | float | None = "total"
    scope: BudgetScope = "global"
    key: str | None = None
    soft_limit: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int | float):
            raise ValueError(f"limit must be a number of USD, got {self.limit!r}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit!r}")
        if not isinstance(self.window, Window):
            object.__setattr__(self, "window", Window.parse(self.window))
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; use one of {', '.join(SCOPES)}")
        if self.scope == "global":
            if self.key not in (None, "*"):
                raise ValueError("a global budget has no key")
            object.__setattr__(self, "key", None)
        elif not self.key:
            raise ValueError(f"a {self.scope} budget needs a key (a name, or * for each one)")
        if self.soft_limit is not None and not 0 <= self.soft_limit <= self.limit:
            raise ValueError(
                f"soft_limit must be between 0 and the limit {self.limit}, got {self.soft_limit!r}"
            )

    @property
    def label(self) -> str:
        who = "router" if self.scope == "global" else f"{self.scope} {self.key!r}"
        per = "in total" if str(self.window) == "total" else f"per {self.window}"
        return f"{who} budget ${self.limit:g} {per}"


@dataclass(frozen=True, slots=True)
class SpendContext:
    """Who and what a call spends for: matched against every budget's scope and key."""

    tags: tuple[str, ...] = ()
    team: str | None = None
    user: str | None = None
    model_group: str | None = None
    provider: str | None = None
    deployment: str | None = None

    def values(self, scope: str) -> tuple[str, ...]:
        if scope == "tag":
            return self.tags
        value = getattr(self, scope, None) if scope != "global" else None
        return (value,) if value else ()


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """Passed to ``on_soft_limit``: a budget crossed its soft limit in the current window."""

    budget: Budget
    key: str | None
    spent: float
    resets_at: float | None


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Spend so far in the current window of one budget (and one key, for ``*`` budgets)."""

    budget: Budget
    key: str | None
    spent: float
    reserved: float
    resets_at: float | None

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget.limit - self.spent - self.reserved)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One (budget, key, period) counter, as the ledger sees it."""

    name: str
    limit: float
    ttl_s: float | None


@runtime_checkable
class SpendLedger(Protocol):
    """Where spend is counted; one store for every process that shares the budgets.

    Implementations are atomic: ``reserve`` checks every entry and reserves on all of them, or
    on none.
    """

    def reserve(self, entries: Sequence[LedgerEntry], amount: float) -> int | None:
        """Reserve ``amount`` on every entry; the index of the first one without room (and
        nothing reserved), or None."""
        ...

    def settle(self, entries: Sequence[LedgerEntry], reserved: float, actual: float) -> None:
        """Turn a reservation into real spend: ``reserved`` is released, ``actual`` added."""
        ...

    def read(self, entries: Sequence[LedgerEntry]) -> list[tuple[float, float]]:
        """``(spent, reserved)`` for each entry."""
        ...


class InMemoryLedger:
    """Process-local spend counters (the default).

    Example::

        ledger = InMemoryLedger()
        BudgetManager([Budget(5, "1d")], ledger=ledger)
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[str, list[float]] = {}  # name -> [spent, reserved, expires_at]
        self._lock = threading.Lock()

    def _get(self, e: LedgerEntry, now: float) -> list[float]:
        row = self._counts.get(e.name)
        if row is None or (row[2] and row[2] <= now):
            row = self._counts[e.name] = [0.0, 0.0, now + e.ttl_s if e.ttl_s else 0.0]
        return row

    def reserve(self, entries: Sequence[LedgerEntry], amount: float) -> int | None:
        with self._lock:
            now = self._clock()
            rows = [self._get(e, now) for e in entries]
            for i, (e, row) in enumerate(zip(entries, rows, strict=True)):
                if row[0] >= e.limit or row[0] + row[1] + amount > e.limit:
                    return i
            for row in rows:
                row[1] += amount
            self._sweep(now)
            return None

    def settle(self, entries: Sequence[LedgerEntry], reserved: float, actual: float) -> None:
        with self._lock:
            now = self._clock()
            for e in entries:
                row = self._get(e, now)
                row[1] = max(0.0, row[1] - reserved)
                row[0] += actual

    def read(self, entries: Sequence[LedgerEntry]) -> list[tuple[float, float]]:
        with self._lock:
            now = self._clock()
            return [(row[0], row[1]) for row in (self._get(e, now) for e in entries)]

    def _sweep(self, now: float) -> None:
        if len(self._counts) > 4096:  # expired periods must not pile up in a long-lived process
            for name in [n for n, row in self._counts.items() if row[2] and row[2] <= now]:
                del self._counts[name]


@dataclass(slots=True)
class Reservation:
    """A call's claim on its budgets, from :meth:`BudgetManager.reserve` until settled."""

    entries: list[LedgerEntry]
    matched: list[tuple[Budget, str | None]]
    amount: float
    settled: bool = False


@dataclass(slots=True)
class BudgetManager:
    """Checks, reserves and records spend against a set of budgets.

    ``clock`` returns Unix seconds (windows are calendar-aligned); tests pass a fake one.
    ``on_soft_limit`` is called once per budget, key and window when spend crosses its
    ``soft_limit`` (in this process).

    Example::

        manager = BudgetManager([Budget(10, "1d", scope="tag", key="batch-jobs")])
        res = manager.reserve(SpendContext(tags=("batch-jobs",)), estimate=0.02)
        ...  # make the call
        manager.settle(res, actual=0.017)
    """

    budgets: Sequence[Budget]
    ledger: SpendLedger = field(default_factory=InMemoryLedger)
    clock: Callable[[], float] = time.time
    on_soft_limit: Callable[[BudgetAlert], None] | None = None
    _alerted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.budgets = tuple(self.budgets)
        if isinstance(self.ledger, InMemoryLedger) and self.clock is not time.time:
            self.ledger._clock = self.clock

    def __bool__(self) -> bool:
        return bool(self.budgets)

    # ------------------------------------------------------------------ matching

    def matching(self, ctx: SpendContext) -> list[tuple[Budget, str | None]]:
        """The budgets (with the concrete key) that a call in this context spends."""
        out: list[tuple[Budget, str | None]] = []
        for b in self.budgets:
            if b.scope == "global":
                out.append((b, None))
                continue
            for value in ctx.values(b.scope):
                if b.key == "*" or b.key == value:
                    out.append((b, value))
        return out

    def _entry(self, budget: Budget, key: str | None, now: float) -> LedgerEntry:
        window = budget.window
        assert isinstance(window, Window)
        period = window.period_id(now)
        resets = window.resets_at(now)
        name = f"{budget.scope}:{key or ''}:{budget.limit:g}:{window}:{period}"
        return LedgerEntry(name, budget.limit, (resets - now + 60.0) if resets else None)

    # ------------------------------------------------------------------ the call path

    def blocked(self, ctx: SpendContext) -> str | None:
        """Why a deployment cannot take calls now (its own, provider or group budget is spent),
        or None. Request scopes are left to :meth:`reserve`."""
        matched = [(b, k) for b, k in self.matching(ctx) if b.scope not in REQUEST_SCOPES]
        if not matched:
            return None
        now = self.clock()
        entries = [self._entry(b, k, now) for b, k in matched]
        for (b, _k), (spent, _r) in zip(matched, self.ledger.read(entries), strict=True):
            if spent >= b.limit:
                return f"{b.label} is spent (${spent:.4g}){_resets(b, now)}"
        return None

    def reserve(self, ctx: SpendContext, estimate: float) -> Reservation:
        """Reserve ``estimate`` USD on every matching budget, or raise BudgetExceeded naming
        the budget that has no room left (nothing is reserved then)."""
        matched = self.matching(ctx)
        now = self.clock()
        entries = [self._entry(b, k, now) for b, k in matched]
        estimate = max(0.0, estimate)
        if entries:
            blocking = self.ledger.reserve(entries, estimate)
            if blocking is not None:
                b = matched[blocking][0]
                spent, reserved = self.ledger.read([entries[blocking]])[0]
                err = BudgetExceeded(
                    f"{b.label} exceeded: ${spent:.4g} spent, ${reserved:.4g} reserved by calls "
                    f"in flight, this call needs ~${estimate:.4g}{_resets(b, now)}",
                    scope=b.scope if b.scope in REQUEST_SCOPES else "deployment",
                    current_cost=spent,
                    max_budget=b.limit,
                )
                err.budget = b  # type: ignore[attr-defined]
                err.resets_at = b.window.resets_at(now)  # type: ignore[union-attr, attr-defined]
                raise err
        return Reservation(entries, matched, estimate)

    def settle(self, reservation: Reservation, actual: float) -> None:
        """Record the call's real cost (0 for a failed call) and release its reservation."""
        if reservation.settled or not reservation.entries:
            reservation.settled = True
            return
        reservation.settled = True
        self.ledger.settle(reservation.entries, reservation.amount, max(0.0, actual))
        if self.on_soft_limit is None:
            return
        soft = [
            (e, b, k)
            for e, (b, k) in zip(reservation.entries, reservation.matched, strict=True)
            if b.soft_limit is not None
        ]
        if not soft:
            return
        now = self.clock()
        for (e, b, k), (spent, _r) in zip(
            soft, self.ledger.read([e for e, _, _ in soft]), strict=True
        ):
            assert b.soft_limit is not None
            if spent >= b.soft_limit and e.name not in self._alerted:
                self._alerted.add(e.name)  # the name holds the period: once per window
                assert isinstance(b.window, Window)
                try:
                    self.on_soft_limit(BudgetAlert(b, k, spent, b.window.resets_at(now)))
                except Exception:  # a callback's bug must not fail the call that paid
                    logger.exception("on_soft_limit callback failed for %s", b.label)

    def status(self, ctx: SpendContext | None = None) -> list[BudgetStatus]:
        """Current spend of every budget (``*`` budgets: for the keys in ``ctx``)."""
        now = self.clock()
        pairs = (
            self.matching(ctx)
            if ctx is not None
            else [(b, b.key) for b in self.budgets if b.key != "*"]
        )
        entries = [self._entry(b, k, now) for b, k in pairs]
        out = []
        for (b, k), (spent, reserved) in zip(pairs, self.ledger.read(entries), strict=True):
            assert isinstance(b.window, Window)
            out.append(BudgetStatus(b, k, spent, reserved, b.window.resets_at(now)))
        return out


def _resets(budget: Budget, now: float) -> str:
    assert isinstance(budget.window, Window)
    at = budget.window.resets_at(now)
    if at is None:
        return ""
    left = max(0, int(at - now))
    h, rem = divmod(left, 3600)
    return f" (resets in {h}h{rem // 60:02d}m)"


# ---------------------------------------------------------------------- cost of one call


def call_cost(
    gateway_cost: float | None,
    usage: Mapping[str, Any] | None,
    input_cost_per_token: float | None,
    output_cost_per_token: float | None,
) -> float:
    """The gateway's reported cost when present, else configured prices times usage.

    Example::

        call_cost(None, {"input_tokens": 1000, "output_tokens": 200}, 3e-6, 15e-6)  # 0.006
    """
    if gateway_cost is not None:
        return float(gateway_cost)
    if not usage:
        return 0.0
    return float(
        int(usage.get("input_tokens", 0) or 0) * (input_cost_per_token or 0.0)
        + int(usage.get("output_tokens", 0) or 0) * (output_cost_per_token or 0.0)
    )


def budgets_from_specs(specs: Iterable[Mapping[str, Any]]) -> list[Budget]:
    """Budgets from plain mappings (``{limit, window, scope, key, soft_limit}``)."""
    return [Budget(**dict(s)) for s in specs]


# ---------------------------------------------------------------------- shared ledger on Redis

_RESERVE_LUA = """
local amount = tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local row = redis.call('HMGET', k, 's', 'r')
  local spent = tonumber(row[1] or '0')
  local reserved = tonumber(row[2] or '0')
  if spent >= limit or spent + reserved + amount > limit then return i end
end
for i, k in ipairs(KEYS) do
  redis.call('HINCRBYFLOAT', k, 'r', amount)
  local ttl = tonumber(ARGV[2 * i + 1])
  if ttl > 0 then redis.call('PEXPIRE', k, math.floor(ttl * 1000)) end
end
return 0
"""

_SETTLE_LUA = """
local reserved = tonumber(ARGV[1])
local actual = tonumber(ARGV[2])
for i, k in ipairs(KEYS) do
  local r = tonumber(redis.call('HINCRBYFLOAT', k, 'r', -reserved))
  if r < 0 then redis.call('HSET', k, 'r', '0') end
  redis.call('HINCRBYFLOAT', k, 's', actual)
  local ttl = tonumber(ARGV[2 + i])
  if ttl > 0 then redis.call('PEXPIRE', k, math.floor(ttl * 1000)) end
end
return 0
"""


class RedisLedger:
    """Spend counters on Redis, shared by every process and machine that uses the budgets.

    Each method is one atomic Lua script (one round trip); every key expires a minute after its
    window ends. If Redis fails, counting goes on in a process-local ledger with one warning
    (``degraded`` is True) and Redis is tried again every ``retry_s`` seconds.

    Example::

        ledger = RedisLedger(url="redis://localhost:6379/0")
        budgets = BudgetManager([Budget(100, "1d", scope="team", key="search")], ledger=ledger)
    """

    def __init__(
        self,
        client: Any = None,
        *,
        url: str | None = None,
        prefix: str = "gatewaykit:budget:",
        retry_s: float = 2.0,
    ) -> None:
        if client is None:
            import redis

            client = redis.Redis.from_url(
                url or "redis://127.0.0.1:6379/0", socket_timeout=1.0, socket_connect_timeout=1.0
            )
        self.client = client
        self.prefix = prefix
        self.retry_s = retry_s
        self.local = InMemoryLedger()
        self.degraded = False
        self.failures = 0
        self._down_until = 0.0
        self._reserve = client.register_script(_RESERVE_LUA)
        self._settle = client.register_script(_SETTLE_LUA)

    def _keys(self, entries: Sequence[LedgerEntry]) -> list[str]:
        return [self.prefix + e.name for e in entries]

    def _usable(self) -> bool:
        return not self.degraded or time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self._down_until = time.monotonic() + self.retry_s
        if not self.degraded:
            self.degraded = True
            logger.warning(
                "budget ledger: Redis unavailable (%s); counting in this process until it is back",
                type(exc).__name__,
            )

    def _ok(self) -> None:
        if self.degraded:
            self.degraded = False
            logger.warning("budget ledger: Redis is back; spend is shared again")

    def reserve(self, entries: Sequence[LedgerEntry], amount: float) -> int | None:
        if self._usable():
            args: list[Any] = [repr(float(amount))]
            for e in entries:
                args += [repr(float(e.limit)), repr(float(e.ttl_s or 0.0))]
            try:
                blocked = int(self._reserve(keys=self._keys(entries), args=args))
            except Exception as exc:
                self._failed(exc)
            else:
                self._ok()
                return None if blocked == 0 else blocked - 1
        return self.local.reserve(entries, amount)

    def settle(self, entries: Sequence[LedgerEntry], reserved: float, actual: float) -> None:
        if self._usable():
            args = [repr(float(reserved)), repr(float(actual))]
            args += [repr(float(e.ttl_s or 0.0)) for e in entries]
            try:
                self._settle(keys=self._keys(entries), args=args)
            except Exception as exc:
                self._failed(exc)
            else:
                self._ok()
                return
        self.local.settle(entries, reserved, actual)

    def read(self, entries: Sequence[LedgerEntry]) -> list[tuple[float, float]]:
        if self._usable():
            try:
                pipe = self.client.pipeline(transaction=False)
                for k in self._keys(entries):
                    pipe.hmget(k, "s", "r")
                rows = pipe.execute()
            except Exception as exc:
                self._failed(exc)
            else:
                self._ok()
                return [(float(s or 0.0), float(r or 0.0)) for s, r in rows]
        return self.local.read(entries)
