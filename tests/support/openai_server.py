"""A small real HTTP server that speaks the OpenAI-compatible API, for tests.

No LLM or embedding service is reachable from the test machines, so features
that call one (the OpenAI embedder, the LLM contradiction judge, summaries) are
tested against this server on loopback. It is a real HTTP server (stdlib
``http.server`` in a thread): requests go through sockets, JSON and status
codes exactly as they would against Ollama, vLLM or OpenAI.

Behaviour is scripted per test:

* ``/v1/embeddings``: a deterministic bag-of-words hash embedding of each
  input (dimension ``dim``), so similar texts get similar vectors.
* ``/v1/chat/completions``: ``chat_handler(request_json) -> str`` returns the
  assistant message content; by default it echoes a fixed JSON verdict.

Every request body is appended to ``server.requests`` for assertions, and
``server.fail_next`` makes the next N requests answer HTTP 500.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ChatHandler = Callable[[dict[str, Any]], str]


def hash_embedding(text: str, dim: int) -> list[float]:
    vec = [0.0] * dim
    for token in re.findall(r"[a-z0-9]+", text.lower()):
        h = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big")
        vec[h % dim] += 1.0 if (h >> 63) == 0 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class OpenAICompatServer:
    def __init__(self, *, dim: int = 64, api_key: str | None = None,
                 chat_handler: ChatHandler | None = None) -> None:
        self.dim = dim
        self.api_key = api_key
        self.chat_handler: ChatHandler = chat_handler or (
            lambda req: json.dumps(
                {"verdict": "compatible", "confidence": 0.5, "reason": "default"}
            )
        )
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> OpenAICompatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "bad json"}})
                    return
                server.requests.append({"path": self.path, "body": body,
                                        "auth": self.headers.get("Authorization")})
                expected = f"Bearer {server.api_key}"
                if server.api_key and self.headers.get("Authorization") != expected:
                    self._send(401, {"error": {"message": "invalid api key"}})
                    return
                if server.fail_next > 0:
                    server.fail_next -= 1
                    self._send(500, {"error": {"message": "scripted failure"}})
                    return
                if self.path.endswith("/embeddings"):
                    inputs = body.get("input", [])
                    if isinstance(inputs, str):
                        inputs = [inputs]
                    data = [{"object": "embedding", "index": i,
                             "embedding": hash_embedding(t, server.dim)}
                            for i, t in enumerate(inputs)]
                    self._send(200, {"object": "list", "data": data,
                                     "model": body.get("model", "test")})
                elif self.path.endswith("/chat/completions"):
                    content = server.chat_handler(body)
                    self._send(200, {
                        "id": "chatcmpl-test", "object": "chat.completion",
                        "model": body.get("model", "test"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                    })
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

        return Handler
