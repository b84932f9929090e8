"""The default local embedder: all-MiniLM-L6-v2 through ONNX Runtime, no torch.

The model ships inside the engramdb wheel (``retrieval/models/``): an int8
ONNX graph (one feed-forward projection left in float32) converted from the
Apache-2.0 sentence-transformers weights by
``tools/build_minilm_onnx.py``, with the model's own ``tokenizer.json``.
Nothing is downloaded, ever.

Vectors match sentence-transformers' (mean pooling over the attention mask,
L2 normalisation) to a cosine of about 0.995 on natural text, so this
embedder carries the same name as the torch one, ``local:all-MiniLM-L6-v2``:
a database built with either opens with either.

Fork safety: ONNX Runtime's thread pool does not survive ``fork()``. Every
live embedder drops its session and locks in the child (``os.register_at_fork``)
and loads them again on first use, so a forked worker (multiprocessing,
gunicorn ``--preload``, Celery prefork) embeds instead of hanging.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.errors import ConfigurationError, InvalidInput, MissingExtra
from engramdb.retrieval.embed_base import (
    DEFAULT_LOCAL_MODEL,
    Vectors,
    check_texts,
    installed,
    normalised,
)

__all__ = ["LOCAL_RUNTIME_MESSAGE", "MODELS_DIR", "LocalEmbedder", "bundled_model_names"]

MODELS_DIR = Path(__file__).resolve().parent / "models"
LOCAL_RUNTIME_MESSAGE = (
    "the local embedder needs onnxruntime and tokenizers, which engramdb depends on: "
    "pip install onnxruntime tokenizers (or reinstall engramdb)"
)
# Texts embedded at once, one core each; a database process needs cores for
# its other requests too.
_DEFAULT_MAX_THREADS = 4


@dataclass(frozen=True)
class _BundledModel:
    name: str  # canonical spelling, part of the embedder's identity
    dimension: int
    max_tokens: int  # sentence-transformers' max_seq_length


_BUNDLED: dict[str, _BundledModel] = {
    "all-minilm-l6-v2": _BundledModel("all-MiniLM-L6-v2", 384, 256),
}


def bundled_model_names() -> list[str]:
    """The canonical names of the models that ship with engramdb."""
    return sorted(m.name for m in _BUNDLED.values())


def _bundled(model_name: str) -> _BundledModel:
    found = _BUNDLED.get(model_name.strip().lower())
    if found is None:
        raise InvalidInput(
            f"no packaged local model named {model_name!r}; available: "
            f"{', '.join(bundled_model_names())} "
            "(or use an OpenAI-compatible server: 'openai:<base_url>#<model>')",
            model=model_name,
        )
    return found


def _default_threads() -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    return max(1, min(available, _DEFAULT_MAX_THREADS))


class LocalEmbedder:
    """A packaged model run in-process by ONNX Runtime.

    The model loads lazily on the first :meth:`embed` (well under a second);
    ``name`` and ``dimension`` are known before that. Each text runs through
    the model alone, unpadded, on one thread, so its vector never depends on
    the other texts of the call (the int8 graph quantises activations per
    forward pass). A call of one text (a query) runs it on ``num_threads``
    runtime threads, for latency. A call of several texts splits them into
    chunks that ``num_threads`` threads (the caller's and helpers started for
    the call) run at once, one runtime thread each, which uses the cores
    better; ONNX Runtime runs one session from several threads and releases
    the GIL while it does. At most ``num_threads`` runs are under way
    in the process across all callers, taken per chunk of at most
    ``batch_size`` texts so that concurrent callers interleave. Texts longer
    than the model's window (256 word pieces) are truncated, as
    sentence-transformers does.

    Args:
        model_name: A packaged model; only ``"all-MiniLM-L6-v2"`` is bundled.
        batch_size: The most texts embedded per hold of a run slot.
        num_threads: Texts embedded at once (each on one thread), and the
            runtime threads for a call of one text. ``None`` uses the cores
            this process may run on, at most 4.
        model_dir: Load ``model.onnx`` and ``tokenizer.json`` from this
            folder instead of the packaged one (for the conversion script).

    Raises:
        InvalidInput: Unknown model name, or a batch size or thread count below 1.
        MissingExtra: onnxruntime or tokenizers is not installed.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_LOCAL_MODEL,
        batch_size: int = 64,
        *,
        num_threads: int | None = None,
        model_dir: str | Path | None = None,
    ) -> None:
        self._spec = _bundled(model_name)
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, not {batch_size}")
        if num_threads is not None and num_threads < 1:
            raise InvalidInput(f"num_threads must be at least 1, not {num_threads}")
        missing = [m for m in ("onnxruntime", "tokenizers") if not installed(m)]
        if missing:
            raise MissingExtra(LOCAL_RUNTIME_MESSAGE, missing=missing)
        self._dir = Path(model_dir) if model_dir is not None else MODELS_DIR / self._spec.name
        self._batch_size = batch_size
        self._num_threads = num_threads or _default_threads()
        self._sessions: dict[int, Any] = {}  # by intra-op thread count
        self._tokenizer: Any = None
        self._reset_locks()
        _LIVE.add(self)

    @property
    def name(self) -> str:
        """``local:<model>``, e.g. ``local:all-MiniLM-L6-v2``."""
        return f"local:{self._spec.name}"

    @property
    def dimension(self) -> int:
        """Vector length (384 for all-MiniLM-L6-v2); does not load the model."""
        return self._spec.dimension

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (in this process) yet."""
        return bool(self._sessions)

    @property
    def num_threads(self) -> int:
        """Texts embedded at once, one thread each."""
        return self._num_threads

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts with the local model; see :meth:`Embedder.embed`.

        Raises:
            InvalidInput: ``texts`` is a bare string or holds a non-string.
            MissingExtra: onnxruntime or tokenizers is not installed.
            ConfigurationError: The model files are missing or unreadable.
        """
        batch = check_texts(texts)
        if not batch:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # One text (a query) is split across the cores by the runtime's own
        # threads: measured on 12-word questions, about 2x lower latency than
        # one thread. Several texts run side by side, one thread each.
        threads = self._num_threads if len(batch) == 1 else 1
        session, tokenizer = self._ensure_loaded(threads)
        return self._encode(session, tokenizer, batch)

    def _encode(self, session: Any, tokenizer: Any, batch: list[str]) -> Vectors:
        # The int8 graph quantises activations with one scale per forward pass,
        # so a padded batch would make a text's vector depend on its neighbours.
        # Each text therefore runs alone: no padding at all, measured as fast
        # per CPU-second as length-sorted padded batches. Throughput comes from
        # running texts side by side instead, one single-threaded run per core.
        out = np.empty((len(batch), self.dimension), dtype=np.float32)
        size = max(1, min(self._batch_size, -(-len(batch) // self._num_threads)))
        chunks = [(start, min(start + size, len(batch)))
                  for start in range(0, len(batch), size)]
        claim = threading.Lock()
        errors: list[BaseException] = []

        def work() -> None:
            while not errors:
                with claim:
                    if not chunks:
                        return
                    start, stop = chunks.pop()
                try:
                    with self._slots:  # other callers get a turn between chunks
                        for i in range(start, stop):
                            out[i] = _run_one(session, tokenizer, batch[i])
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append(exc)

        helpers = [threading.Thread(target=work, name="engramdb-embed", daemon=True)
                   for _ in range(min(self._num_threads, len(chunks)) - 1)]
        for helper in helpers:
            helper.start()
        work()
        for helper in helpers:
            helper.join()
        if errors:
            raise errors[0]
        return normalised(out)

    def _ensure_loaded(self, threads: int) -> tuple[Any, Any]:
        session = self._sessions.get(threads)
        if session is None:
            with self._load_lock:
                if self._tokenizer is None:
                    self._tokenizer = self._load_tokenizer()
                session = self._sessions.get(threads)
                if session is None:
                    session = self._sessions[threads] = self._load_session(threads)
        return session, self._tokenizer

    def _files(self) -> tuple[Path, Path]:
        model, tokenizer = self._dir / "model.onnx", self._dir / "tokenizer.json"
        for path in (model, tokenizer):
            if not path.is_file():
                raise ConfigurationError(
                    f"the packaged model file {path} is missing; reinstall engramdb "
                    "(pip install --force-reinstall engramdb), or from a checkout build "
                    "it with: make minilm-onnx",
                    path=str(path),
                )
        return model, tokenizer

    def _load_tokenizer(self) -> Any:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingExtra(LOCAL_RUNTIME_MESSAGE, missing=["tokenizers"]) from exc
        path = self._files()[1]
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception
            raise ConfigurationError(
                f"could not read the tokenizer {path} ({type(exc).__name__}); "
                "reinstall engramdb",
                path=str(path),
            ) from exc
        tokenizer.no_padding()
        tokenizer.enable_truncation(self._spec.max_tokens)
        return tokenizer

    def _load_session(self, threads: int) -> Any:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingExtra(LOCAL_RUNTIME_MESSAGE, missing=["onnxruntime"]) from exc
        path = self._files()[0]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # Idle pool threads sleep instead of spinning: the process has other work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own non-OSError types
            raise ConfigurationError(
                f"could not load the local model {path} ({type(exc).__name__}: "
                f"{str(exc)[:200]}); reinstall engramdb",
                model=self._spec.name,
            ) from exc

    def _reset_locks(self) -> None:
        self._load_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._num_threads)

    def _after_fork_in_child(self) -> None:
        # The parent's threads do not exist here, and a lock or run slot held by
        # another parent thread at fork time would never be released. The
        # inherited session is never freed either: its destructor joins the
        # parent's pool threads, and would wait for them forever.
        for session in self._sessions.values():
            _never_free(session)
        self._sessions = {}
        self._tokenizer = None
        self._reset_locks()

    def __repr__(self) -> str:
        return (f"LocalEmbedder({self._spec.name!r}, batch_size={self._batch_size}, "
                f"num_threads={self._num_threads})")


def _run_one(session: Any, tokenizer: Any, text: str) -> np.ndarray:
    """One text through the model, unpadded; its mean-pooled, normalised vector."""
    ids = np.asarray([tokenizer.encode(text).ids], dtype=np.int64)
    mask = np.ones_like(ids)
    (hidden,) = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
    pooled: np.ndarray = _mean_pool(hidden, mask)[0]
    return pooled


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling, then its ``F.normalize`` (eps 1e-12)."""
    weights = mask[:, :, None].astype(np.float32)
    summed = np.einsum("bsh,bsx->bh", hidden, weights)
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    pooled = summed / counts
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled / norms


_LIVE: weakref.WeakSet[LocalEmbedder] = weakref.WeakSet()


def _never_free(obj: object) -> None:
    """Leak one reference, so not even interpreter shutdown deallocates ``obj``."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def _reset_all_in_child() -> None:
    for embedder in list(_LIVE):
        embedder._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_in_child)
