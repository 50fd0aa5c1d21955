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

_RATIO = r"\d+\.\d\dx"


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


def test_router_overhead_quick() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "router_overhead.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = _tables(proc.stdout)
    for title, variants in TABLES.items():
        assert title in tables, f"table {title!r} missing from output:\n{proc.stdout}"
        for variant in variants:
            row = re.compile(rf"^\s+{re.escape(variant)}\s.*\s{_RATIO}\s+{_RATIO}\s*$")
            assert any(row.match(line) for line in tables[title]), (
                f"no ratio row for {variant!r} in table {title!r}:\n" + "\n".join(tables[title])
            )
