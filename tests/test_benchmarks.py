"""The benchmark scripts run to completion and print what they promise (never how fast)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"

TIMED = ["ChatOpenAI", "GatewayChatModel", "RouterChatModel", "litellm.Router"]
FAILOVER = ["ChatOpenAI.with_fallbacks", "RouterChatModel", "litellm.Router"]
MEMORY = ["ChatOpenAI", "RouterChatModel", "litellm.Router"]
DEAD_PRIMARY = ["RouterChatModel", "ChatOpenAI.with_fallbacks", "litellm.Router"]
TOTAL_OUTAGE = ["RouterChatModel", "litellm.Router", "ChatOpenAI"]

# Each table: its title and the variants that must have a row with both ratio columns.
TABLES = {
    "invoke sync": TIMED,
    "ttft sync": TIMED,
    "stream total sync": TIMED,
    "failover sync": FAILOVER,
    "invoke async": TIMED,
    "ttft async": TIMED,
    "stream total async": TIMED,
    "failover async": FAILOVER,
    "memory": MEMORY,
}

# The outage tables (benchmarks/router_outage.py), in every run and alone with --outage-only.
# A variant with no finished call (cut off by the wall-time cap) shows n/a for its ratios.
OUTAGE_TABLES = {
    "dead primary fallback sync": DEAD_PRIMARY,
    "dead primary fallback async": DEAD_PRIMARY,
    "total outage async": TOTAL_OUTAGE,
    "total outage paced": TOTAL_OUTAGE,
}

_RATIO = r"\d+\.\d\dx"
_RATIO_OR_NA = rf"(?:{_RATIO}|n/a)"
# What follows the variant's name in a row: anything, then the two ratio columns; an outage row
# starts with its count of finished calls.
_ROW = rf"\s.*\s{_RATIO}\s+{_RATIO}"
_OUTAGE_ROW = rf"\s+\d+\s.*\s{_RATIO_OR_NA}\s+{_RATIO_OR_NA}"


def _tables(stdout: str) -> dict[str, list[str]]:
    """Table title (the bracketed head, up to a colon) -> its lines."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        head = re.match(r"\[([^\]:]+)", line)
        if head:
            current = tables.setdefault(head.group(1), [])
        elif current is not None and line.strip():
            current.append(line)
    return tables


def _run_router_overhead(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "router_overhead.py"), *args],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _check_rows(
    stdout: str, tables: dict[str, list[str]], expected: dict[str, list[str]], rest: str
) -> None:
    """Every expected table is there, with a row per variant: its name, then ``rest``."""
    for title, variants in expected.items():
        assert title in tables, f"table {title!r} missing from output:\n{stdout}"
        for variant in variants:
            row = re.compile(rf"^\s+{re.escape(variant)}{rest}\s*$")
            assert any(row.match(line) for line in tables[title]), (
                f"no ratio row for {variant!r} in table {title!r}:\n" + "\n".join(tables[title])
            )


def test_router_overhead_quick() -> None:
    stdout = _run_router_overhead("--quick")
    tables = _tables(stdout)
    _check_rows(stdout, tables, TABLES, _ROW)
    _check_rows(stdout, tables, OUTAGE_TABLES, _OUTAGE_ROW)


def test_router_overhead_outage_only() -> None:
    stdout = _run_router_overhead("--outage-only", "--quick")
    tables = _tables(stdout)
    _check_rows(stdout, tables, OUTAGE_TABLES, _OUTAGE_ROW)
    assert set(tables) == set(OUTAGE_TABLES), f"more than the outage tables:\n{stdout}"
