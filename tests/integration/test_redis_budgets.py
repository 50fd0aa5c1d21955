"""Budgets shared across processes through RedisLedger, against the real Redis on 127.0.0.1."""

from __future__ import annotations

import logging
import multiprocessing as mp
import uuid
from collections.abc import Iterator

import pytest

from gatewaykit import Budget, BudgetExceeded, BudgetManager, RedisLedger, SpendContext

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> Iterator[str]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the tests need Redis on 127.0.0.1:6379 (.ci/run starts one): {exc}")
    p = f"gatewaykit-test:budget:{uuid.uuid4().hex}:"
    yield p
    keys = list(client.scan_iter(match=p + "*"))
    if keys:
        client.delete(*keys)


def test_spend_in_one_process_is_seen_by_another(prefix: str) -> None:
    budget = [Budget(1.0, "1d", scope="team", key="search")]
    a = BudgetManager(budget, ledger=RedisLedger(url="redis://127.0.0.1:6379/0", prefix=prefix))
    b = BudgetManager(budget, ledger=RedisLedger(url="redis://127.0.0.1:6379/0", prefix=prefix))
    ctx = SpendContext(team="search")
    a.settle(a.reserve(ctx, 0.2), 0.6)
    b.settle(b.reserve(ctx, 0.2), 0.4)
    with pytest.raises(BudgetExceeded) as info:
        a.reserve(ctx, 0.0)
    assert info.value.current_cost == pytest.approx(1.0)
    (status,) = b.status()
    assert status.spent == pytest.approx(1.0) and status.reserved == pytest.approx(0.0)


def test_keys_expire_after_their_window(prefix: str) -> None:
    import redis

    ledger = RedisLedger(url="redis://127.0.0.1:6379/0", prefix=prefix)
    m = BudgetManager([Budget(5, "1h")], ledger=ledger)
    m.settle(m.reserve(SpendContext(), 0.1), 0.1)
    client = redis.Redis(host="127.0.0.1", port=6379)
    (key,) = list(client.scan_iter(match=prefix + "*"))
    assert 0 < client.pttl(key) <= (3600 + 60) * 1000


def _spender(prefix: str, calls: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    m = BudgetManager(
        [Budget(5.0, "1d")], ledger=RedisLedger(url="redis://127.0.0.1:6379/0", prefix=prefix)
    )
    admitted = 0
    for _ in range(calls):
        try:
            res = m.reserve(SpendContext(), 0.1)
        except BudgetExceeded:
            continue
        admitted += 1
        m.settle(res, 0.1)
    queue.put(admitted)


def test_four_processes_never_overspend_a_shared_budget(prefix: str) -> None:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_spender, args=(prefix, 40, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    admitted = sum(queue.get(timeout=5) for _ in procs)
    # 160 attempts at $0.10 against $5: exactly 50 fit, and estimate == cost means no overshoot.
    assert admitted == 50
    m = BudgetManager(
        [Budget(5.0, "1d")], ledger=RedisLedger(url="redis://127.0.0.1:6379/0", prefix=prefix)
    )
    assert m.status()[0].spent == pytest.approx(5.0)


def test_redis_down_counts_locally_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    ledger = RedisLedger(url="redis://127.0.0.1:1/0", retry_s=60)
    m = BudgetManager([Budget(0.25)], ledger=ledger)
    with caplog.at_level(logging.WARNING, logger="gatewaykit.cost"):
        for _ in range(2):
            m.settle(m.reserve(SpendContext(), 0.1), 0.1)
        with pytest.raises(BudgetExceeded):
            m.reserve(SpendContext(), 0.1)
    assert ledger.degraded and ledger.failures == 1  # retried only after retry_s
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1
