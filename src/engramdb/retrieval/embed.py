"""Embedders: text in, L2-normalised float32 vectors out; specs and the shared default.

The implementations live beside this module, one concern each:

* :class:`LocalEmbedder` (``embed_onnx``): the default, all-MiniLM-L6-v2
  (384 dimensions) through ONNX Runtime, packaged in the wheel; no torch.
* :class:`TorchEmbedder` (``embed_torch``): the same model through
  sentence-transformers and torch (the ``local-torch`` extra).
* :class:`OpenAIEmbedder` (``embed_openai``): any OpenAI-compatible
  ``POST {base_url}/embeddings`` service (OpenAI, Ollama, vLLM, LM Studio, ...).
* :class:`CachedEmbedder` (``embed_cache``): an LRU cache by content hash.

An embedder's ``name`` is its identity: the engine stores ``name`` and
``dimension`` in the database and refuses to open it with another embedder,
because vectors from two models are not comparable. The ONNX and torch runs of
all-MiniLM-L6-v2 share the name ``local:all-MiniLM-L6-v2`` because their
vectors agree to a cosine of 0.99 or more per text: a database built with
either opens with either, without re-embedding. Every ``name`` is also a valid
spec, so ``embedder_from_spec(embedder.name)`` rebuilds an equivalent embedder
(an API key is never part of a name or a spec).

Spec strings, for a CLI flag or a config value (:func:`embedder_from_spec`)::

    local                          the packaged all-MiniLM-L6-v2 on ONNX Runtime (the default)
    local:<model>                  a packaged local model, e.g. local:all-MiniLM-L6-v2
    local-torch[:<model>]          the same model through sentence-transformers (needs torch)
    openai:<base_url>#<model>      e.g. openai:http://127.0.0.1:11434/v1#nomic-embed-text

``None`` or a blank spec means the default.
"""

from __future__ import annotations

import threading

from engramdb.errors import InvalidInput
from engramdb.retrieval.embed_base import DEFAULT_LOCAL_MODEL, Embedder, Vectors
from engramdb.retrieval.embed_cache import CachedEmbedder
from engramdb.retrieval.embed_onnx import LOCAL_RUNTIME_MESSAGE, LocalEmbedder
from engramdb.retrieval.embed_openai import OpenAIEmbedder
from engramdb.retrieval.embed_torch import TORCH_EXTRA_MESSAGE, TorchEmbedder

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "LOCAL_RUNTIME_MESSAGE",
    "SPEC_FORMAT",
    "TORCH_EXTRA_MESSAGE",
    "CachedEmbedder",
    "Embedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "TorchEmbedder",
    "Vectors",
    "default_embedder",
    "embedder_from_spec",
]

SPEC_FORMAT = (
    "'local', 'local:<model>', 'local-torch[:<model>]' or 'openai:<base_url>#<model>'"
)
_RUNTIMES: dict[str, type[LocalEmbedder] | type[TorchEmbedder]] = {
    "local": LocalEmbedder,
    "local-torch": TorchEmbedder,
}

_shared_lock = threading.Lock()
_shared_local: dict[tuple[str, str], CachedEmbedder] = {}


def _shared_local_embedder(runtime: str, model_name: str) -> CachedEmbedder:
    key = (runtime, model_name.strip().lower())
    with _shared_lock:
        embedder = _shared_local.get(key)
        if embedder is None:
            embedder = CachedEmbedder(_RUNTIMES[runtime](model_name))
            _shared_local[key] = embedder
        return embedder


def default_embedder() -> CachedEmbedder:
    """The default embedder: cached local all-MiniLM-L6-v2 on ONNX Runtime, no network.

    One instance is shared per process, because loading the model costs
    time and memory; it is thread-safe and survives ``fork()``.
    """
    return _shared_local_embedder("local", DEFAULT_LOCAL_MODEL)


def embedder_from_spec(
    spec: str | None,
    *,
    api_key: str | None = None,
    dimension: int | None = None,
    cache: bool = True,
) -> Embedder:
    """Build an embedder from a spec string (a CLI flag or a config value).

    Formats: ``local``, ``local:<model>``, ``local-torch[:<model>]`` and
    ``openai:<base_url>#<model>``; ``None`` or a blank string means the default
    (``local``). The scheme and local model names are case-insensitive. Any
    embedder's ``name`` is a spec for an equivalent embedder.

    Args:
        spec: The spec string.
        api_key: Bearer key for ``openai:`` specs (kept out of the spec so it
            never lands in a config file's embedder name or the database).
        dimension: Expected vector length for ``openai:`` specs.
        cache: Wrap the embedder in a :class:`CachedEmbedder`. Cached local
            embedders are shared per process, like :func:`default_embedder`.

    Returns:
        The embedder.

    Raises:
        InvalidInput: The spec is malformed or names an unknown local model.
        MissingExtra: ``local-torch`` without the ``local-torch`` extra installed.
    """
    text = (spec or "").strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.strip().lower() if text else "local"
    rest = rest.strip()
    if scheme in _RUNTIMES:
        if colon and not rest:
            raise InvalidInput(f"embedder spec {spec!r} names no model; use {SPEC_FORMAT}")
        if dimension is not None:
            raise InvalidInput("dimension applies to openai: specs only; local models fix it")
        model = rest or DEFAULT_LOCAL_MODEL
        if cache:
            return _shared_local_embedder(scheme, model)
        return _RUNTIMES[scheme](model)
    if scheme == "openai":
        base_url, hash_sign, model = rest.partition("#")
        if not hash_sign or not base_url.strip() or not model.strip():
            raise InvalidInput(
                f"embedder spec {spec!r} must look like openai:<base_url>#<model>, "
                "e.g. openai:http://127.0.0.1:11434/v1#nomic-embed-text"
            )
        embedder = OpenAIEmbedder(base_url, model, api_key=api_key, dimension=dimension)
        return CachedEmbedder(embedder) if cache else embedder
    raise InvalidInput(f"unknown embedder spec {spec!r}; use {SPEC_FORMAT}")
