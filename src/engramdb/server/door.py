"""The ASGI layer in front of every route: who is calling, how much, how often, how fast.

For each HTTP request, before any route code runs, in this order:

0. Back-pressure: beyond ``max_in_flight`` requests in progress a new one is
   answered 503 ``overloaded`` with ``Retry-After`` at once (``/healthz``
   excepted), rather than queued without bound.
1. API routes (``/v1/...``, and ``/metrics`` / ``/docs`` unless public) need
   ``Authorization: Bearer <key>``; the key is resolved to the engine session
   of its principal (401 otherwise). The key is checked on every request, so
   a revoked key stops working at once. Failed authentications are charged
   to the client address; past ``auth_failure_burst`` of them the address
   gets 429 until its bucket refills, whatever key it sends.
2. The per-key token bucket is charged (429 with ``Retry-After``).
3. The body is read up to ``max_body_bytes`` (413 past it, without reading
   the rest).

Then the route runs, and its latency is recorded under the route template.
Authentication comes first so that nothing about a request is revealed to a
caller without a valid key.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb import errors as E
from engramdb.server.errors import engram_error_response, error_response
from engramdb.server.metrics import Metrics
from engramdb.server.ratelimit import RateLimiter
from engramdb.server.routing import RouteTable
from engramdb.server.settings import ServerSettings
from engramdb.server.threads import EngineThreads

__all__ = ["API_PREFIX", "KEY_SCOPE", "SESSION_SCOPE", "Door"]

log = logging.getLogger("engramdb.server")

API_PREFIX = "/v1/"
SESSION_SCOPE = "engramdb.session"
KEY_SCOPE = "engramdb.api_key"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Disconnected(Exception):
    """The client went away while sending its body."""


def bearer_key(scope: Scope) -> str | None:
    """The API key of an ``Authorization: Bearer`` header, if there is one."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            try:
                text = value.decode("latin-1").strip()
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
                return None
            scheme, _, key = text.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                return None
            return key.strip()
    return None


class Door:
    """ASGI middleware: authentication, rate limit, body limit and request metrics.

    Args:
        app: The wrapped application.
        db: The open :class:`~engramdb.Database` keys are checked against.
        settings: Limits.
        metrics: Where request latencies go.
        routes: Returns the application's route table (for the ``route`` label).
        threads: Where key checks run: bounded threads of their own, never the
            recall route's (a long recall would hold every request behind it).
    """

    def __init__(self, app: ASGIApp, *, db: Any, settings: ServerSettings, metrics: Metrics,
                 routes: Callable[[], RouteTable], threads: EngineThreads) -> None:
        self.app = app
        self.threads = threads
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.routes = routes
        self.limiter = (RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
                        if settings.rate_limit_per_s is not None else None)
        self.failures = (RateLimiter(settings.auth_failures_per_s, settings.auth_failure_burst)
                         if settings.auth_failures_per_s is not None else None)
        self.in_flight = 0

    def _route_label(self, scope: Scope) -> str:
        return self.routes().template(scope["path"]) or "unmatched"

    def _needs_key(self, path: str) -> bool:
        if path.startswith(API_PREFIX):
            return True
        if path == "/metrics":
            return self.settings.metrics == "key"
        if path == "/docs" or path.startswith("/docs/"):
            return self.settings.docs == "key"
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        limit = self.settings.max_in_flight
        if limit is not None and self.in_flight >= limit and scope["path"] != "/healthz":
            await self._overloaded(limit)(scope, receive, send_and_watch)
            self.metrics.observe(scope["method"], self._route_label(scope), status[0],
                                 time.perf_counter() - started)
            return
        self.in_flight += 1  # one event loop: no lock needed
        try:
            await self._handle(scope, receive, send_and_watch)
        except _Disconnected:
            status[0] = 499  # nginx's "client closed request"; nothing can be sent
        finally:
            self.in_flight -= 1
            self.metrics.observe(scope["method"], self._route_label(scope), status[0],
                                 time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._needs_key(scope["path"]):
            refusal = await self._authenticate(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        if scope["method"] in _BODY_METHODS:
            too_big = self._declared_too_big(scope)
            body = None if too_big else await self._read_body(receive)
            if body is None:
                await self._too_large()(scope, receive, send)
                return
            bad = _lone_surrogate(body)
            if bad is not None:
                await engram_error_response(bad)(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _overloaded(self, limit: int) -> Any:
        return engram_error_response(E.Overloaded(
            f"the server is working on its limit of {limit} requests; retry after 1 s",
            retry_after=1, limit=limit))

    def _throttled(self, client: str) -> Any:
        """429 when ``client`` has used up its failed authentications, else ``None``."""
        if self.failures is None:
            return None
        wait = self.failures.wait(client)
        if wait <= 0:
            return None
        retry_after = max(1, math.ceil(wait))
        return engram_error_response(E.RateLimited(
            f"too many failed authentications from this address; retry after "
            f"{retry_after} s with a valid key", retry_after=retry_after))

    def _failed(self, client: str, exc: E.EngramError) -> Any:
        if self.failures is not None:
            self.failures.take(client)
        return engram_error_response(exc)

    async def _authenticate(self, scope: Scope) -> Any:
        client = str((scope.get("client") or ("unknown",))[0])
        throttled = self._throttled(client)
        if throttled is not None:
            return throttled
        key = bearer_key(scope)
        if key is None:
            return self._failed(client, E.Unauthenticated(
                "this route needs an API key: send 'Authorization: Bearer <key>' "
                "(an admin creates keys with POST /v1/admin/agents)"))
        try:
            session = await self.threads.run(self.db.session_for_key, key)
        except E.Unauthenticated:
            # One message for every bad key: which part was wrong is not said.
            return self._failed(client, E.Unauthenticated(
                "API key is unknown or revoked; ask an admin for a new key"))
        except (E.NotFound, E.PermissionDenied):
            # The key's principal vanished or was frozen between the two lookups.
            return self._failed(client, E.Unauthenticated(
                "API key is unknown or revoked; ask an admin for a new key"))
        except E.EngramError as exc:
            return engram_error_response(exc)
        if self.limiter is not None:
            wait = self.limiter.take(key.split("_")[1] if key.count("_") >= 2 else key)
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                return engram_error_response(E.RateLimited(
                    f"rate limit of {self.settings.rate_limit_per_s:g} requests/s "
                    f"(burst {self.settings.rate_limit_burst}) reached for this API key; "
                    f"retry after {retry_after} s",
                    retry_after=retry_after,
                    limit_per_s=self.settings.rate_limit_per_s,
                    burst=self.settings.rate_limit_burst))
        scope[SESSION_SCOPE] = session
        scope[KEY_SCOPE] = key
        return None

    def _declared_too_big(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value) > self.settings.max_body_bytes
                except ValueError:
                    return False
        return False

    async def _read_body(self, receive: Receive) -> bytes | None:
        limit = self.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> Any:
        limit = self.settings.max_body_bytes
        return error_response(
            413, E.PayloadTooLarge.code,
            f"request body is over the server's limit of {limit} bytes; split it "
            "(e.g. several smaller batches)",
            {"limit_bytes": limit},
            # The unread rest of the body makes the connection unusable.
            {"Connection": "close"})


_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
# The error class the engine gives a bad string in these fields, so that the
# door's early answer is the one an embedded caller gets.
_METADATA_FIELDS = frozenset({"metadata", "value", "outcome"})
_NAMESPACE_FIELDS = frozenset({"namespace", "pattern"})


def _lone_surrogate(body: bytes) -> E.InvalidInput | None:
    """The error for a JSON ``body`` holding a string with a lone surrogate, or ``None``.

    JSON may spell one (``"\\ud800"``), Python decodes it, and no database can
    store it (nor can it be written back as UTF-8): it is refused before any
    route runs. The error class is the engine's for that field
    (``invalid_metadata`` inside metadata, ``invalid_namespace`` for a
    namespace). Paired escapes decode to ordinary characters and pass;
    bodies without any such escape (nearly all) are not parsed here.
    """
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None  # the route's own parsing reports it
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= ch <= "\udfff" for ch in item):
                return _surrogate_error(path)
        elif isinstance(item, dict):
            for key, sub in item.items():
                stack.append((key, path))
                stack.append((sub, (*path, str(key))))
        elif isinstance(item, list):
            stack.extend((sub, path) for sub in item)
    return None


def _surrogate_error(path: tuple[str, ...]) -> E.InvalidInput:
    field = ".".join(p.encode("utf-8", "replace").decode() for p in path) or "body"
    message = (f"{field} contains an unpaired UTF-16 surrogate escape (such as \\ud800): "
               "that is not Unicode text; send valid UTF-8 JSON")
    if _METADATA_FIELDS.intersection(path):
        return E.InvalidMetadata(message, field=field)
    if path and path[-1] in _NAMESPACE_FIELDS:
        return E.InvalidNamespace(message, field=field)
    return E.InvalidInput(message, field=field)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
