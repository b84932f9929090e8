"""The HTTP door's limits and knobs, as one frozen value.

Every limit the server enforces on its own (as opposed to the engine's limits
in :class:`~engramdb.engine.EngineConfig`) lives here, so ``engram serve``
flags, tests and benchmarks set them in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engramdb.errors import ConfigurationError

__all__ = ["EXPOSURES", "ServerSettings"]

# How an operational route (/metrics, /docs) is exposed.
EXPOSURES = ("off", "key", "public")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Limits and behaviour of one HTTP server.

    Attributes:
        max_body_bytes: Largest request body accepted; larger ones get 413.
        max_batch: Most items in one ``/v1/memories/batch`` or
            ``/v1/tool-outcomes/batch`` call or ops in one ``/v1/transactions``
            call; more get 413.
        max_page_size: Largest ``limit`` a paged read (``/v1/changes``) accepts.
        default_page_size: ``limit`` when the caller gives none.
        rate_limit_per_s: Sustained requests per second allowed per API key
            (a token bucket); ``None`` turns rate limiting off.
        rate_limit_burst: Bucket size: how many requests a key may send at once
            after being idle.
        sse_poll_s: How often an open change stream looks for new events.
        sse_keepalive_s: Idle interval after which a stream sends a comment so
            proxies keep the connection open.
        sse_max_s: A stream ends after this long; clients reconnect with
            ``Last-Event-ID`` and lose nothing. ``None`` keeps streams open.
        metrics: Who may read ``/metrics`` (counts of memories per layer and
            status, open conflicts, request rates): ``"key"`` (default: an
            admin key), ``"public"`` (no key, the usual Prometheus set-up on
            a private network) or ``"off"`` (404).
        docs: The interactive docs at ``/docs``: ``"off"`` (default),
            ``"key"`` (any valid API key) or ``"public"``. The spec at
            ``/openapi.json`` is always served (it holds no data).
        metrics_public: Deprecated spelling: ``True`` is ``metrics="public"``,
            ``False`` is ``metrics="key"``.
        max_in_flight: Requests the server works on at once; beyond it new
            requests get 503 ``overloaded`` with ``Retry-After`` at once,
            instead of queueing without bound. ``None``: no bound.
        auth_failures_per_s, auth_failure_burst: Failed authentications
            allowed per client address (a token bucket); beyond them the
            address gets 429 ``rate_limited`` until the bucket refills, even
            with a good key. ``auth_failures_per_s=None`` turns it off.
        checkpoint_key: Path of the Ed25519 key ``POST /v1/audit/checkpoints``
            signs with. ``None``: ``<db file>.audit-key.pem`` for SQLite
            (created on first use, as ``engram init`` does); a PostgreSQL
            server without one answers that route with ``configuration_error``.
        maintain_every_s: How often the server runs ``db.maintain()`` (expiry,
            decay, capacity) in the background; ``None`` turns it off.
        recall_threads: Recalls one server process runs at once, each on a
            thread; the others wait their turn in arrival order. The door's
            API-key checks have as many threads again of their own, so a long
            recall never holds other requests' key checks.
            ``"auto"`` (default): 1 on SQLite, where a recall is the process's
            own CPU work and more threads only take turns at the GIL (with 16
            concurrent recalls on 2 cores, one thread per process halved the
            server's CPU per recall, ``bench/bench_http.py``; use worker
            processes for more cores); on PostgreSQL, whose recalls mostly wait
            for the database server, the thread pool's own bound (40), as
            ``None`` gives everywhere.
    """

    max_body_bytes: int = 4 * 1024 * 1024
    max_batch: int = 1000
    max_page_size: int = 1000
    default_page_size: int = 100
    rate_limit_per_s: float | None = 50.0
    rate_limit_burst: int = 100
    sse_poll_s: float = 0.5
    sse_keepalive_s: float = 15.0
    sse_max_s: float | None = 300.0
    metrics: str = "key"
    docs: str | bool = "off"
    checkpoint_key: str | None = None
    maintain_every_s: float | None = 3600.0
    metrics_public: bool | None = None
    max_in_flight: int | None = 64
    auth_failures_per_s: float | None = 0.2
    auth_failure_burst: int = 10
    recall_threads: int | str | None = "auto"

    def __post_init__(self) -> None:
        if self.metrics_public is not None:  # the old boolean knob
            object.__setattr__(self, "metrics", "public" if self.metrics_public else "key")
        if isinstance(self.docs, bool):
            object.__setattr__(self, "docs", "public" if self.docs else "off")
        for name in ("metrics", "docs"):
            if getattr(self, name) not in EXPOSURES:
                raise ConfigurationError(f"server setting {name} must be one of "
                                         f"{', '.join(EXPOSURES)}", setting=name)
        for name in ("max_in_flight", "recall_threads"):
            value = getattr(self, name)
            if name == "recall_threads" and value == "auto":
                continue
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                more = ", 'auto'" if name == "recall_threads" else ""
                raise ConfigurationError(f"server setting {name} must be a positive integer"
                                         f"{more} or None", setting=name)
        for name in ("max_body_bytes", "max_batch", "max_page_size", "default_page_size",
                     "rate_limit_burst", "auth_failure_burst"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"server setting {name} must be a positive integer, "
                                         f"not {value!r}", setting=name)
        if self.default_page_size > self.max_page_size:
            raise ConfigurationError("default_page_size cannot exceed max_page_size",
                                     setting="default_page_size")
        for name in ("rate_limit_per_s", "sse_poll_s", "sse_keepalive_s", "sse_max_s",
                     "maintain_every_s", "auth_failures_per_s"):
            value = getattr(self, name)
            if value is None and name in ("rate_limit_per_s", "sse_max_s", "maintain_every_s",
                                          "auth_failures_per_s"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"server setting {name} must be a positive number, "
                                         f"not {value!r}", setting=name)
        key = self.checkpoint_key
        if key is not None:
            if not isinstance(key, (str, os.PathLike)):
                raise ConfigurationError("server setting checkpoint_key must be a file path",
                                         setting="checkpoint_key")
            if not Path(key).is_file():
                raise ConfigurationError(
                    f"checkpoint_key {os.fspath(key)!r} is not a file; create the key with "
                    "`engram audit keygen` first", setting="checkpoint_key")
