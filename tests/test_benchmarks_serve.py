"""benchmarks/serve_load.py runs end to end (``--quick``) and prints its two tables; its timings
are never asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "serve_load.py"
_NUM = r"\d+\.\d+"
_RATIO = r"\d+\.\d\dx"

# Each table: its title, and each row's name followed by what the row must hold.
TABLES = {
    "router call latency": {
        "idle": rf"\d+\s+{_NUM}\s+{_NUM}\s+1\.00x",
        "50 agent calls in flight": rf"\d+\s+{_NUM}\s+{_NUM}\s+{_RATIO}",
    },
    "agent calls": {
        "direct A2AAgentChatModel": rf"1\s+{_NUM}\s+{_NUM}\s+1\.00x",
        "through gatewaykit serve": rf"1\s+{_NUM}\s+{_NUM}\s+{_RATIO}",
    },
}


def _tables(stdout: str) -> dict[str, list[str]]:
    """Table title (the bracketed head) -> its lines."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        head = re.match(r"\[([^\]]+)\]", line)
        if head:
            current = tables.setdefault(head.group(1), [])
        elif current is not None and line.strip():
            current.append(line)
    return tables


def test_serve_load_quick() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY", "OPENAI_"))}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = _tables(proc.stdout)
    for title, rows in TABLES.items():
        assert title in tables, f"table {title!r} missing:\n{proc.stdout}"
        for name, rest in rows.items():
            row = re.compile(rf"^\s+{re.escape(name)}\s+{rest}\s*$")
            assert any(row.match(line) for line in tables[title]), (
                f"no row {name!r} in table {title!r}:\n" + "\n".join(tables[title])
            )
