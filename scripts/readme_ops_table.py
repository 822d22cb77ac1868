"""Writes the README's Ops table from the op table (fastmask.library.ops_table: one row per OpSpec,
from its name, wrapper, summary and benchmark family). tests/test_op_table.py checks that the
committed README.md holds what this writes.

    python scripts/readme_ops_table.py           # rewrites README.md's table in place
    python scripts/readme_ops_table.py --check   # exit status 1 if README.md's table is stale
"""

from __future__ import annotations

import argparse
import os
import sys

from fastmask import library

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
HEADER = "| op | public function |"


def with_ops_table(readme: str) -> str:
    """The README's text with the table of its "## Ops" section (the lines from HEADER to the first
    line that is not a table row) replaced by the generated one."""
    section = readme.index("\n## Ops\n")
    start = readme.index(HEADER, section)
    end = start
    while readme.startswith("|", end):
        end = readme.index("\n", end) + 1
    return readme[:start] + library.ops_table() + readme[end:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check: exit status 1 if README.md is stale")
    args = parser.parse_args(argv)
    with open(README) as f:
        text = f.read()
    updated = with_ops_table(text)
    if args.check:
        if updated != text:
            print("README.md's Ops table is stale: run python scripts/readme_ops_table.py", file=sys.stderr)
        return int(updated != text)
    with open(README, "w") as f:
        f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
