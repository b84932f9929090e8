"""The ranking's speaker cue reads a transcript line's ``Name:`` as it always did.

``speaker_words`` looks for the colon without slicing the text (it runs for every
recall candidate); the reference below is the plain reading: the text's first 80
characters split at the first colon, a name only when a space follows it there and
it is not a structured text's label ("Returns:", "Note:").
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engramdb.retrieval.first_person import first_person, speakers
from engramdb.retrieval.hybrid import _SPEAKER, _name_words, speaker_words

_PIECES = st.sampled_from(["Ana", "Bo Lind", "Dr. Who", "x", " ", ":", ": ", ":\t", "::",
                           "é", "42", "-", "note", "Returns", "See Also", "a" * 30, "\n"])
_LABELS = {"returns", "note", "see also"}  # the labels among the pieces, as a reader names them


def _reference(row):
    meta = row.get("metadata") or {}
    named = meta.get("speaker") if isinstance(meta, dict) else None
    if isinstance(named, str) and named:
        return _name_words(named[:200])
    head, colon, rest = str(row.get("text") or "")[:80].partition(":")
    if not colon or not rest[:1].isspace():
        return frozenset()
    m = _SPEAKER.match(head + ": ")
    if not m or m.group(1).lower() in _LABELS:
        return frozenset()
    return _name_words(m.group(1))


@given(st.lists(_PIECES, max_size=12).map("".join), st.integers(0, 90),
       st.sampled_from([None, {}, {"speaker": "Mia Sol"}, {"speaker": ""}, {"speaker": 3}]))
def test_speaker_words_agree_with_the_plain_reading(text, pad, metadata):
    text = "y" * pad + text if pad % 3 == 0 else text  # colons near and past character 80
    row = {"text": text, "metadata": metadata}
    assert speaker_words(row) == _reference(row)


def test_a_colon_at_the_80th_character_opens_no_speaker_line():
    name = "A" * 79
    assert speaker_words({"text": name + ": hello", "metadata": {}}) == frozenset()
    assert speaker_words({"text": "Ana: hello", "metadata": {}}) == frozenset({"ana"})


def test_a_docstring_section_names_no_speaker():
    """A code memory opening "Returns:" has no speaker "returns": a question about what a
    function returns keeps its words (no first-person rewrite) and gets no speaker cue."""
    rows = [{"text": "Returns: the resolved path, or None when missing", "metadata": {}},
            {"text": "See Also: os.path.realpath", "metadata": {}},
            {"text": "Ana: the gallery returns my paintings on Friday", "metadata": {}}]
    assert [speaker_words(r) for r in rows] == [frozenset(), frozenset(), frozenset({"ana"})]
    assert speakers(rows) == {frozenset({"ana"})}
    assert first_person("what returns the resolved path", speakers(rows)) is None
    assert first_person("when does Ana get Ana's paintings", speakers(rows)) == \
        "when does I get my paintings"
    # A speaker named in the metadata is taken as given.
    assert speaker_words({"text": "x", "metadata": {"speaker": "Note"}}) == frozenset({"note"})
