"""The python code blocks of a markdown page, and a runner that executes them as a reader would.

A block is a fence opened by a line "```python" at the start of a line. The blocks of a page run in order in
one namespace (as one Python session), each compiled under the page's file name at its own line numbers, so a
traceback points at the page's line. A block preceded by the line

    <!-- docs-test: skip REASON -->

is only compiled (a syntax check), never run; REASON is one of ``SKIP_REASONS``, and the test suite lists every
such block (pytest -ra shows them). Run a page: ``python tests/doc_blocks.py PAGE.md``.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!-- docs-test: skip (\S+)(.*?)-->[ \t]*\n[ \t]*\Z")
SKIP_REASONS = {
    "aws": "needs an AWS account (credentials, a deployed function, a bucket)",
    "cluster": "needs a cluster or service started outside Python",
}


@dataclass
class Block:
    page: Path
    line: int          # the first line of code, 1-based
    code: str
    skip: str | None   # a reason from SKIP_REASONS, or None

    def compiled(self):
        return compile("\n" * (self.line - 1) + self.code, str(self.page), "exec")


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[:match.start()]
        marker = SKIP.search(before[-400:])
        reason = marker.group(1) if marker else None
        if reason is not None and reason not in SKIP_REASONS:
            raise ValueError(f"{page}:{before.count(chr(10)) + 1}: unknown skip reason {reason!r}; "
                             f"use one of {sorted(SKIP_REASONS)}")
        found.append(Block(page, before.count("\n") + 2, match.group(1), reason))
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
