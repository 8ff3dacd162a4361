"""The python code blocks of a markdown page, and a runner that executes them as a reader would.

A block is a fence opened by a line "```python" (indented or not, e.g. inside a list item; attributes such as
``title="..."`` allowed). The blocks of a page run in order in one namespace (as one Python session), each compiled under the page's file name at its own line numbers, so a
traceback points at the page's line. A block preceded by the line

    <!-- docs-test: skip REASON -->

is only compiled (a syntax check), never run; REASON is one of ``SKIP_REASONS``, and the test suite lists every
such block (pytest -ra shows them). Any other mark (an unknown reason, or words after "```python" such as
"```python skip", which MkDocs would not render) is not run either, and its test fails saying how to mark it.
Run a page: ``python tests/doc_blocks.py PAGE.md``.
"""
from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>[ \t]*)```python(?P<info>[^\n]*)\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!-- docs-test: skip (\S+)(.*?)-->[ \t]*\n[ \t]*\Z")
SKIP_REASONS = {
    "aws": "needs an AWS account (credentials, a deployed function, a bucket)",
    "cluster": "needs a cluster or service started outside Python",
    "illustrative": "a fragment shown for its shape, not meant to run as it is",
}


@dataclass
class Block:
    page: Path
    line: int          # the first line of code, 1-based
    code: str
    skip: str | None   # a reason from SKIP_REASONS (or an unknown mark, which the tests refuse), or None

    def compiled(self):
        return compile("\n" * (self.line - 1) + self.code, str(self.page), "exec")


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[:match.start()]
        marker = SKIP.search(before[-400:])
        reason = marker.group(1) if marker else None
        words = [w for w in re.sub(r"\{.*?\}|\S+=(\"[^\"]*\"|'[^']*'|\S+)", " ", match.group("info")).split()]
        if words:  # a bare word after ```python: a mark MkDocs would not render (attributes are fine)
            reason = f"```python {match.group('info').strip()}"
        code = textwrap.dedent(match.group("code"))
        found.append(Block(page, before.count("\n") + 2, code, reason))
    return found


def run_page(page: Path) -> int:
    namespace = {"__name__": "__main__"}
    ran = 0
    for block in blocks(page):
        code = block.compiled()
        if block.skip is None:
            exec(code, namespace)
            ran += 1
    print(f"{page}: ran {ran} python blocks")
    return ran


if __name__ == "__main__":
    run_page(Path(sys.argv[1]))
