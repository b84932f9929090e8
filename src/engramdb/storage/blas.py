"""One BLAS thread for a block of NumPy products, for both backends' vector work.

A matrix-vector product (a recall's exact scan, a batch's candidate scan) gains
nothing from BLAS threads on a busy machine and loses a lot to their wake-ups:
OpenBLAS's second thread spins while it waits, so on two shared cores a scan cost
several times its own CPU. ``threadpoolctl`` sets the count for the block and puts
it back after; without it (or unusable) the block runs as is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["single_blas"]

_controller: Any = None


@contextlib.contextmanager
def single_blas() -> Iterator[None]:
    """One BLAS thread for the products inside."""
    global _controller
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        limiter = _controller.limit(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - threadpoolctl missing or unusable: run as is
        yield
        return
    with limiter:
        yield
