"""`python -m rose SCRIPT [ARGS]` / `python -m rose -m MODULE [ARGS]`: run an unchanged
asyncio program with rose as its event loop."""

from __future__ import annotations

import os
import runpy
import sys

import rose

USAGE = "usage: python -m rose SCRIPT [ARGS...] | python -m rose -m MODULE [ARGS...]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    # rose's own plumbing: no deprecation warning where asyncio deprecates policies (3.14+)
    rose._compat.set_policy(rose._EventLoopPolicy())
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv[:]
        # As `python SCRIPT` does: the script's directory comes first on sys.path.
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
