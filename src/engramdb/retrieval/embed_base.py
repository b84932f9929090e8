"""What every embedder shares: the protocol, the vector type, input checks.

An embedder's ``name`` is its identity: the engine stores ``name`` and
``dimension`` in the database and refuses to open it with another embedder,
because vectors from two models are not comparable. Two embedders share a
name only when their vectors are interchangeable (the same model run by two
runtimes, within a cosine of 0.99 per text).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from engramdb.errors import InvalidInput

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "Embedder",
    "Vectors",
    "check_texts",
    "installed",
    "normalised",
    "optional_module",
]

Vectors = NDArray[np.float32]
"""A ``(n, dimension)`` float32 matrix whose rows have unit L2 norm."""

DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Anything that turns texts into comparable unit vectors.

    Implementations must be safe to call from several threads, and in a
    process forked after the parent used them. (Not ``runtime_checkable``: on
    Python 3.11 an ``isinstance`` check would read ``dimension``, which may
    send a probe request.)
    """

    @property
    def name(self) -> str:
        """Stable identity stored in the database, e.g. ``local:all-MiniLM-L6-v2``."""
        ...

    @property
    def dimension(self) -> int:
        """Length of every vector :meth:`embed` returns."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed a batch of texts.

        Args:
            texts: The texts, in order (a list, not a bare string).

        Returns:
            A float32 array of shape ``(len(texts), dimension)``, rows
            L2-normalised, row ``i`` for ``texts[i]``.
        """
        ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list; a bare string or a non-string item is bad input."""
    if isinstance(texts, str | bytes):
        raise InvalidInput("embed() takes a sequence of texts, not one string: pass [text]")
    batch = list(texts)
    for index, text in enumerate(batch):
        if not isinstance(text, str):
            raise InvalidInput(
                f"text {index} to embed is a {type(text).__name__}, not a str", index=index
            )
    return batch


def normalised(matrix: NDArray[Any]) -> Vectors:
    """Float32 copy of ``matrix`` with unit rows; an all-zero row stays zero."""
    out = np.array(matrix, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def optional_module(module: str) -> ModuleType | None:
    """The module if it imports, else ``None``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        # ValueError: a module placed in sys.modules without a spec.
        return False
