"""An embedder that calls any OpenAI-compatible ``POST {base_url}/embeddings``.

OpenAI, Ollama, vLLM, LM Studio and the like. The base URL and model form the
embedder's name (``openai:<base_url>#<model>``); an API key never does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import httpx
import numpy as np

from engramdb.errors import EmbeddingDimensionMismatch, InvalidInput, UpstreamError
from engramdb.retrieval.embed_base import Vectors, check_texts, normalised

__all__ = ["OpenAIEmbedder"]

_PROBE_TEXT = "dimension probe"
_SERVER_MESSAGE_CHARS = 200


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
        batch = check_texts(texts)
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
        return normalised(matrix)

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


