"""A new user's first minute: clone the repository, run the README's first command.

The README promises that `make demo` needs only python3 and make. This clones the committed
tree into an empty folder (no .venv, no .tools) and runs it there, as a newcomer would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert first_block is not None
    assert first_block.group(1).split("\n")[:2] == ["make demo", "make test"]
    dry = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "-m pytest" in dry.stdout


@pytest.mark.skipif(
    not (ROOT / ".git").exists() or shutil.which("git") is None or shutil.which("make") is None,
    reason="needs a git checkout, git and make",
)
def test_fresh_clone_runs_make_demo(tmp_path: Path) -> None:
    clone = tmp_path / "gatewaykit"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)],
        check=True,
        timeout=120,
    )
    assert not (clone / ".venv").exists() and not (clone / ".tools").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "GATEWAY"))}
    proc = subprocess.run(
        ["make", "demo"], cwd=clone, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "demo finished: 7 ok, 0 skipped, 0 failed" in proc.stdout
    assert "cost by tag" in proc.stdout
