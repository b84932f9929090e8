"""The ``engram`` command line: a thin door onto the engine.

``main`` is the console script. Importing this package registers every
built-in command on :data:`cli`; other doors add theirs as described in
:mod:`engramdb.cli.app`.
"""

from engramdb.cli import (  # noqa: F401  (register)
    agents,
    bench,
    demo,
    layers,
    lifecycle,
    log,
    memories,
    reasoning,
    serve,
)
from engramdb.cli.app import cli, main

__all__ = ["cli", "main"]
