"""Writing secrets to disk: a new file that only its owner can read, never over another.

API keys (``engram agent key --key-file``, ``engram serve --admin-key-file``)
and checkpoint signing keys are written here, so a secret never lands in a
file that already existed with laxer permissions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from engramdb.errors import InvalidInput

__all__ = ["private_file", "write_private"]


@contextmanager
def private_file(path: str | os.PathLike[str] | None, *, what: str = "file"
                 ) -> Iterator[BinaryIO | None]:
    """Claim a new 0600 file *before* making the secret that goes in it.

    The file is created (exclusively) on entry, so a path that is taken fails
    before any key is issued; if the body raises, the file is removed again.
    ``path=None`` yields ``None`` (nothing to write).

    Raises:
        InvalidInput: the file exists, or cannot be created.
    """
    if path is None:
        yield None
        return
    target = Path(path)
    fh = _create(target, what, overwrite=False)
    try:
        with fh:
            yield fh
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def write_private(path: str | os.PathLike[str], data: bytes, *, what: str = "file",
                  overwrite: bool = False) -> None:
    """Create ``path`` with mode 0600 and write ``data`` to it.

    Args:
        path: where to write.
        data: the secret.
        what: how messages name the file (``"key file"``).
        overwrite: replace an existing file (its mode is reset to 0600 too).

    Raises:
        InvalidInput: the file exists (and ``overwrite`` is false), or cannot be
            created; nothing is written.
    """
    with _create(Path(path), what, overwrite=overwrite) as fh:
        fh.write(data)


def _create(target: Path, what: str, *, overwrite: bool) -> BinaryIO:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as exc:
        raise InvalidInput(
            f"{what} {str(target)!r} already exists; use it, move it away, or give a new path",
            path=str(target),
        ) from exc
    except OSError as exc:
        raise InvalidInput(
            f"cannot create {what} {str(target)!r}: {exc.strerror}; check that the "
            "directory exists and is writable",
            path=str(target),
        ) from exc
    fh = os.fdopen(fd, "wb")
    # os.open's mode is masked by umask and ignored for existing files.
    os.fchmod(fh.fileno(), 0o600)
    return fh
