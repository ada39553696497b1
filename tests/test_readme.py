"""The README's Python examples run as written.

Every ```python block of README.md is executed, in order, in one fresh namespace (the way
a reader pastes them into a session), with a temporary folder as the working directory.
Any exception fails the test, and so does any warning (the project's pytest config turns
warnings into errors). Tracebacks point at README.md line numbers.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^\n]*$")


@dataclass(frozen=True)
class Block:
    section: str  # the nearest heading above the block
    line: int  # 1-based line of the first code line in README.md
    code: str


def python_blocks(text: str) -> list[Block]:
    """The fenced blocks tagged ``python`` (or ``py``), with their section and position."""
    blocks: list[Block] = []
    section = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _OPEN.match(line)
        if match is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            i += 1
            continue
        fence = match["fence"]
        body: list[str] = []
        i += 1
        start = i + 1
        while i < len(lines) and not (
            lines[i].startswith(fence[0] * len(fence)) and not lines[i].strip(fence[0]).strip()
        ):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if match["lang"].lower() in {"python", "py", "python3"}:
            blocks.append(Block(section, start, "\n".join(body) + "\n"))
    return blocks


def quickstart_blocks(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.section.lower() == "quickstart"]


def test_finds_python_blocks_and_rejects_a_readme_without_quickstart() -> None:
    text = (
        "# x\n\n```bash\nmake test\n```\n\n## Quickstart\n\n```python\nprint(1)\n```\n"
        "\n## Other\n\n~~~py\nx = 2\n~~~\n"
    )
    blocks = python_blocks(text)
    assert [(b.section, b.line, b.code) for b in blocks] == [
        ("Quickstart", 10, "print(1)\n"),
        ("Other", 16, "x = 2\n"),
    ]
    assert quickstart_blocks(blocks) == [blocks[0]]
    assert quickstart_blocks(python_blocks("# x\n\n## Quickstart\n\n```bash\nls\n```\n")) == []


def test_readme_has_a_python_quickstart() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    quickstart = quickstart_blocks(blocks)
    assert quickstart, "README.md has no ```python block under a '## Quickstart' heading"
    code = "".join(b.code for b in quickstart)
    assert "import mlops_nb" in code and ".register(" in code, (
        "the README quickstart no longer shows opening a workspace and registering a model"
    )


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python blocks"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    try:
        for block in blocks:
            # Pad with newlines so tracebacks show README.md line numbers.
            source = "\n" * (block.line - 1) + block.code
            exec(compile(source, str(README), "exec"), namespace)
    finally:
        _close_workspaces(namespace)


def _close_workspaces(namespace: dict[str, object]) -> None:
    import mlops_nb as mnb

    for value in namespace.values():
        if isinstance(value, mnb.Workspace):
            # A block that failed half-way may have left a deployment running: stop it.
            with contextlib.suppress(mnb.MlopsError):
                for name in value.deployments()["name"]:
                    value.deployment(name).delete()
            value.close()
