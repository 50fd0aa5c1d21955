"""The docs, tried as a newcomer would: code blocks run verbatim, links resolve, names are documented.

Conventions the docs follow (and this file enforces):

- every ```python block of ``docs/quickstart.md`` runs, in order, as one script;
- in other pages, a ```python block right after a ``<!-- runnable -->`` line runs (each page's
  runnable blocks together, in order, as one script); each migration guide must have some (its
  "after" code);
- a fenced block right after ``<!-- save as NAME -->`` is written to ``NAME`` in the script's
  working directory first (a ``config.yaml`` the reader is told to save);
- a ``# prints: TEXT`` comment in a runnable block says that ``TEXT`` appears in the output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import gatewaykit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
QUICKSTART = DOCS / "quickstart.md"
MIGRATION_GUIDES = sorted(DOCS.glob("migrate-from-*.md"))
# Pages written alongside these docs; links to them must resolve once they land.
EXPECTED_PAGES = ("guardrails.md", "observability.md", "cli.md")

_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(?P<what>runnable|save as (?P<name>[\w.\-/]+))\s*-->\s*$")
_PRINTS = re.compile(r"#\s*prints:\s?(?P<text>.*)$", re.M)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@dataclass
class Page:
    """The code of one docs page, as the conventions above read it."""

    python: list[str] = field(default_factory=list)
    runnable: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def expected_output(self) -> list[str]:
        return [m.group("text").strip() for block in self.runnable for m in _PRINTS.finditer(block)]


def parse(path: Path) -> Page:
    text = path.read_text(encoding="utf-8")
    page = Page()
    for match in _FENCE.finditer(text):
        preceding = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(preceding)
        body = match.group("body")
        if marker and marker.group("name"):
            page.files[marker.group("name")] = body
        if match.group("lang") == "python":
            page.python.append(body)
            if marker and marker.group("what") == "runnable":
                page.runnable.append(body)
    return page


def start_blocks(blocks: list[str], files: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """Start ``blocks`` as one script in ``cwd``, offline, after writing the page's files."""
    for name, body in files.items():
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_text(body, encoding="utf-8")
    script = cwd / "page.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY", "OPENAI_", "LITELLM_", "LANGSMITH_", "LANGFUSE_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[timed out after {timeout} s]"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_ran(proc: subprocess.CompletedProcess[str], expected: list[str], page: str) -> None:
    assert proc.returncode == 0, f"{page}: the script failed:\n{proc.stderr[-4000:]}"
    missing = [text for text in expected if text not in proc.stdout]
    assert not missing, f"{page}: {missing} not in the output:\n{proc.stdout}"


# ---------------------------------------------------------------------- the parser itself


def test_parser_reads_the_conventions(tmp_path: Path) -> None:
    sample = (
        "text\n<!-- save as config.yaml -->\n```yaml\na: 1\n```\n\n"
        "```python\nprint('shown only')\n```\n"
        "<!-- runnable -->\n```python\nprint('hi')  # prints: hi\n```\n"
    )
    tmp = tmp_path / "sample.md"
    tmp.write_text(sample, encoding="utf-8")
    page = parse(tmp)
    assert page.files == {"config.yaml": "a: 1\n"}
    assert page.python == ["print('shown only')\n", "print('hi')  # prints: hi\n"]
    assert page.runnable == ["print('hi')  # prints: hi\n"]
    assert page.expected_output == ["hi"]


# ---------------------------------------------------------------------- runnable pages


def _runnable_pages() -> list[Path]:
    """Every page but the quickstart with runnable blocks, and every migration guide."""
    pages = {
        p for p in DOCS.glob("*.md") if p != QUICKSTART and "<!-- runnable -->" in p.read_text()
    }
    return sorted(pages | set(MIGRATION_GUIDES))


RUNNABLE_PAGES = _runnable_pages()


@pytest.fixture(scope="module")
def page_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the quickstart and every runnable page at once (each script mostly waits on imports
    and on the mock), so the whole set costs about as long as the slowest page."""
    started: dict[str, subprocess.Popen[str]] = {}
    quick = parse(QUICKSTART)
    started[QUICKSTART.name] = start_blocks(
        quick.python, quick.files, tmp_path_factory.mktemp("quickstart")
    )
    for doc in RUNNABLE_PAGES:
        page = parse(doc)
        if page.runnable:
            cwd = tmp_path_factory.mktemp(doc.stem)
            started[doc.name] = start_blocks(page.runnable, page.files, cwd)
    return {name: finish(proc) for name, proc in started.items()}


def test_quickstart_runs_verbatim(page_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    page = parse(QUICKSTART)
    assert len(page.python) >= 6, "the quickstart lost its code blocks"
    assert "config.yaml" in page.files
    assert page.python[0].lstrip().startswith(("import", "from")), "start with the imports"
    assert "from gatewaykit.testing import" in page.python[0]
    expected = [m.group("text").strip() for b in page.python for m in _PRINTS.finditer(b)]
    assert len(expected) >= 8, "the quickstart should say what each step prints"
    assert_ran(page_runs[QUICKSTART.name], expected, QUICKSTART.name)


@pytest.mark.parametrize("doc", RUNNABLE_PAGES, ids=[p.name for p in RUNNABLE_PAGES])
def test_runnable_blocks_run(
    doc: Path, page_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    page = parse(doc)
    assert page.runnable, (
        f"{doc.name}: mark the code to run (the 'after' code) with <!-- runnable -->"
    )
    assert page.expected_output, f"{doc.name}: say what the runnable code prints (# prints:)"
    assert_ran(page_runs[doc.name], page.expected_output, doc.name)


def test_three_migration_guides_exist() -> None:
    names = {p.name for p in MIGRATION_GUIDES}
    assert names >= {
        "migrate-from-chatopenai.md",
        "migrate-from-chatlitellmrouter.md",
        "migrate-from-litellm-router.md",
    }


# ---------------------------------------------------------------------- links and coverage


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _broken_links(files: list[Path]) -> list[str]:
    broken = []
    for md in files:
        text = _FENCE.sub("", md.read_text(encoding="utf-8"))  # links inside code are code
        for match in _LINK.finditer(text):
            target = match.group("target")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            path = target.split("#", 1)[0]
            if path and not (md.parent / path).exists():
                broken.append(f"{md.name} -> {target}")
    return broken


def test_relative_links_resolve() -> None:
    broken = _broken_links(_markdown_files())
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_expected_pages_exist() -> None:
    missing = [name for name in EXPECTED_PAGES if not (DOCS / name).exists()]
    assert not missing, f"docs pages linked from the docs but not written yet: {missing}"


def test_index_lists_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = {m.group("target").split("#")[0] for m in _LINK.finditer(index)}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "index.md"]
    missing = [name for name in missing if name not in linked]
    assert not missing, f"docs/index.md does not link: {missing}"


def test_index_lists_every_example() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = {Path(m.group("target")).name for m in _LINK.finditer(index)}
    missing = [p.name for p in sorted((ROOT / "examples").glob("*.py")) if p.name not in linked]
    assert not missing, f"docs/index.md does not list the examples: {missing}"


def test_every_public_name_is_documented() -> None:
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    undocumented = [
        name for name in gatewaykit.__all__ if not re.search(rf"\b{re.escape(name)}\b", corpus)
    ]
    assert not undocumented, f"public names no docs page mentions: {undocumented}"


def test_link_checker_catches_a_broken_link(tmp_path: Path) -> None:
    # The checker must be able to fail: a page with a dead relative link is reported.
    sample = tmp_path / "page.md"
    sample.write_text(
        "[ok](page.md#top) [dead](nowhere.md) [web](https://example.com) [here](#top)\n"
        "```text\n[in code](also-nowhere.md)\n```\n"
    )
    assert _broken_links([sample]) == ["page.md -> nowhere.md"]
