"""Doc tests: every ```python block of README.md and docs/sections/*.md runs in the test suite.

The blocks are collected by pytest-markdown-docs (its Markdown collector; not its
``--markdown-docs`` switch, which would also import every ``.py`` file under the test paths to
look for code in docstrings) and run as pasted, each in a fresh namespace and in its own empty
temporary working folder, so files a block writes (``runs/...``, ``embeddings.npz``) land there.
A block's printed output is kept, and shown only when the block fails.

Fence options (after ``python``, invisible in rendered Markdown): ``slow`` marks the block as a
slow test (run by ``pytest -m slow``, as in CI); pytest-markdown-docs' own ``notest`` (never
run: say why next to it), ``continuation`` (run after the block before it, sharing its names)
and ``fixture:NAME`` apply as documented by the plugin.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from pytest_markdown_docs._runners import DefaultRunner, register_runner
from pytest_markdown_docs.plugin import MARKER_NAME, MarkdownTextFile

ROOT = Path(__file__).resolve().parent
DOCS = (ROOT / "README.md", ROOT / "docs" / "sections")


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    path = Path(file_path).resolve()
    if parent.config.option.markdowndocs or path.suffix != ".md":
        return None  # with --markdown-docs the plugin collects Markdown itself
    if any(path == d or d in path.parents for d in DOCS):
        return MarkdownTextFile.from_parent(parent, path=path)
    return None


def _fence_options(item: pytest.Item) -> set[str]:
    """The words after ``python`` on the block's opening fence line."""
    lines = Path(item.path).read_text(encoding="utf-8").splitlines()
    fence = lines[item.start_line - 1] if 0 < item.start_line <= len(lines) else ""
    return set(fence.strip().lstrip("`~").split()[1:])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker(MARKER_NAME) and "slow" in _fence_options(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _doc_block_in_empty_folder(request, tmp_path, monkeypatch):
    if request.node.get_closest_marker(MARKER_NAME):
        monkeypatch.chdir(tmp_path)
        from vcreg import losses  # a block may register a loss: the registry is restored after

        monkeypatch.setattr(losses, "_REGISTRY", dict(losses._REGISTRY))


@register_runner(default=True)
class QuietRunner(DefaultRunner):
    """The plugin's runner, with the block's prints kept (the plugin turns pytest's capture off
    while a block runs) and shown under its failure report."""

    def __init__(self) -> None:
        self.output: dict[int, str] = {}

    def runtest(self, test, args, *, asyncio_runner=None):
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                super().runtest(test, args, asyncio_runner=asyncio_runner)
        finally:
            self.output[id(test)] = buf.getvalue()

    def repr_failure(self, test, excinfo, style=None):
        text = super().repr_failure(test, excinfo, style)
        out = self.output.get(id(test), "")
        return f"{text}\n--- output of the block (last 3000 characters) ---\n{out[-3000:]}"
