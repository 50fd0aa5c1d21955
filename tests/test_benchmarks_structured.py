"""The structured-output benchmark runs to completion and prints its tables (never timings)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "structured_reliability.py"
METHODS = ["json_schema", "function_calling"]
FLAWS = [
    "invalid_json",
    "single_quotes",
    "fenced_json",
    "prose_around_json",
    "prose_only",
    "missing_field",
    "wrong_type",
    "wrong_enum",
    "list_as_string",
    "extra_field",
    "truncated",
    "refusal",
]


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


def test_structured_reliability_quick() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OPENAI_"))}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = _tables(proc.stdout)
    for method in METHODS:
        rows = tables.get(f"reliability {method}")
        assert rows, f"no reliability table for {method}:\n{proc.stdout}"
        for flaw in [*FLAWS, "all"]:
            assert any(re.match(rf"^\s+{flaw}\s+\d+\s+\d+\s+\d+", r) for r in rows), (
                f"no row for {flaw!r} in the {method} table:\n" + "\n".join(rows)
            )
    summary = tables["summary"]
    for method in METHODS:
        for variant in ("gatewaykit", "langchain"):
            row = re.compile(rf"^\s+{variant} {method}\s+\d+\.\d%\s+\d+\.\d\d\s+\d+\s+\d+\s*$")
            assert any(row.match(r) for r in summary), "\n".join(summary)
    overhead = tables["overhead"]
    for method in METHODS:
        row = re.compile(rf"^\s+{method}\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d\dx\s*$")
        assert any(row.match(r) for r in overhead), "\n".join(overhead)
