"""Run the benchmarks from a checkout: ``python bench/run.py [--quick] [...]``.

The same as ``engram bench``; the measurements live in
:mod:`engramdb.cli.benchmarks` so that an installed ``engram`` has them too.
"""

from __future__ import annotations

import sys

from engramdb.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
