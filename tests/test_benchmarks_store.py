"""benchmarks/store_overhead.py runs end to end (``--quick``); its timings are never asserted."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "store_overhead.py"

pytestmark = pytest.mark.redis


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379 (.ci/run starts one)")
def test_store_overhead_quick_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for section, unit in (("hot path", "us"), ("throughput", "calls/s")):
        for store in ("InMemoryStore", "RedisStore"):
            line = rf"^{section}\s+{store}\s+median\s+[\d.]+ {unit}\b.*[\d.]+x InMemoryStore$"
            assert re.search(line, out, re.MULTILINE), f"no {section} line for {store}:\n{out}"
    assert "warning: Redis failed" not in out
