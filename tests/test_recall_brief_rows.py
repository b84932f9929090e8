"""Recall reads brief candidate rows on SQLite, and only the chosen ones whole (sqlite/rows.py).

What a user could notice if that went wrong: a hit missing a column or showing
another version's (a layer, an author, a ``tx_to`` read as of the past), or a
ranking that differs from the one over whole rows. Both are compared here with
the slow path (every candidate read whole), on the full-text paths (the
in-process index and FTS5) and the vector path, current and as of the past.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import engramdb
from engramdb.model import RecallFilter
from engramdb.retrieval.hybrid import rank_hybrid

WORDS = ("paint paints painted painting garden gardens river stone stones moved moving "
         "Oslo Lima trip trips bread baking baked music guitar lesson lessons").split()
SPEAKERS = ("Ana", "Bo Lind", None)


def _vec(rnd: random.Random, dim: int) -> list[float]:
    v = np.array([rnd.gauss(0, 1) for _ in range(dim)], dtype=np.float32)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, embedder):
    rnd = random.Random(12)
    db = engramdb.open(tmp_path_factory.mktemp("brief") / "e.db", embedder=embedder)
    db.admin.set_read_audit("**", "off")
    dim = db.dimension
    ids = []
    for i in range(80):
        speaker = SPEAKERS[i % 3]
        text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 14)))
        m = db.remember(
            f"{speaker}: {text}" if speaker and i % 2 else text,
            namespace=f"team/ns{i % 3}", layer=("episodic", "semantic")[i % 2],
            subject=f"s{i % 4}" if i % 5 == 0 else None,
            predicate="likes" if i % 5 == 0 else None,
            source=f"chat-{i}", confidence=0.5 + (i % 5) / 10, importance=(i % 7) / 7,
            metadata={"speaker": speaker} if speaker and i % 4 == 0 else {"n": i},
            session=f"s{i // 10}" if i % 3 else None, embedding=_vec(rnd, dim))
        ids.append(m.id)
    before = db.storage.head().tx
    for memory_id in ids[::7]:  # new versions: the old ones are read as of `before`
        db.update(memory_id, text=" ".join(rnd.choice(WORDS) for _ in range(6)),
                  embedding=_vec(rnd, dim))
    queries = [(" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 4))), _vec(rnd, dim))
               for _ in range(25)]
    yield db, before, queries
    db.close()


def _filters(before: int):
    head = RecallFilter(namespaces=("team/ns0", "team/ns1", "team/ns2"))
    return [head, RecallFilter(namespaces=("team/ns1",)),
            RecallFilter(namespaces=("team/ns0", "team/ns2"), layers=("episodic",)),
            RecallFilter(namespaces=("team/ns0", "team/ns1", "team/ns2"), as_of=before)]


@pytest.mark.parametrize("index", [True, False], ids=["in-process index", "fts5"])
def test_brief_candidates_read_whole_are_the_whole_candidates_and_rank_alike(loaded, index):
    db, before, queries = loaded
    storage = db.storage
    storage._lexical.min_rows = 0 if index else 10**12
    try:
        for query, vector in queries:
            for flt in _filters(before):
                with storage.snapshot():
                    text = storage.search_text(query, flt, 30)
                    text_brief = storage.search_text(query, flt, 30, brief=True)
                    vec = storage.search_vector(np.array(vector), flt, 30)
                    vec_brief = storage.search_vector(np.array(vector), flt, 30, brief=True)
                    assert text, query  # every query shares a word with some memory
                    for whole, brief in ((text, text_brief), (vec, vec_brief)):
                        assert [s for _, s in brief] == [s for _, s in whole]
                        assert all("layer" not in r for r, _ in brief)  # brief indeed
                        assert storage.whole_rows([r for r, _ in brief]) == [r for r, _ in whole]
                for k in (1, 5, 10):
                    slow = rank_hybrid(query, text, vec, now_micros=10**16, k=k)
                    fast = rank_hybrid(query, text_brief, vec_brief, now_micros=10**16, k=k)
                    assert [(s.row["id"], s.row["version"], s.score, s.why) for s in fast] \
                        == [(s.row["id"], s.row["version"], s.score, s.why) for s in slow]
    finally:
        storage._lexical.min_rows = type(storage._lexical).min_rows


def test_a_hit_shows_every_column_of_its_version_now_and_as_of_the_past(loaded):
    db, before, queries = loaded
    seen_old = 0
    for query, vector in queries:
        for as_of in (None, before):
            result = db.recall(query, namespace="team/**", k=10, as_of=as_of,
                               query_embedding=vector)
            assert result.hits
            for hit in result.hits:
                assert hit.memory == db.get(hit.memory.id, as_of=as_of)
                seen_old += as_of is not None and hit.memory.version == 1 and any(
                    m.version == 2 for m in db.history(hit.memory.id))
    assert seen_old  # some hits were versions replaced since, read as of before that


def test_brief_rows_outside_a_snapshot_are_refused_and_nothing_else_changes(loaded):
    """A brief row is read whole later, which is exact only in the snapshot it was
    found in: a backend caller outside one gets an error that says so, not rows that
    another writer could change between the two reads."""
    db, _, queries = loaded
    storage = db.storage
    query, vector = queries[0]
    flt = RecallFilter(namespaces=("team/ns0", "team/ns1", "team/ns2"))
    for search in (lambda: storage.search_text(query, flt, 10, brief=True),
                   lambda: storage.search_vector(np.array(vector), flt, 10, brief=True)):
        with pytest.raises(engramdb.StorageError, match=r"inside storage\.snapshot\(\)"):
            search()
    with storage.snapshot():
        rows = [r for r, _ in storage.search_text(query, flt, 10, brief=True)]
    assert rows
    with pytest.raises(engramdb.StorageError, match=r"inside storage\.snapshot\(\)"):
        storage.whole_rows(rows)
    whole = [r for r, _ in storage.search_text(query, flt, 10)]  # whole rows need none
    assert storage.whole_rows(whole) == whole
    assert db.recall(query, namespace="team/**", k=5, query_embedding=vector).hits
