"""The HTTP door: a thin FastAPI server over the engine (extra ``engramdb[server]``).

::

    from engramdb.server import serve
    serve("engram.db", host="127.0.0.1", port=8420)      # what `engram serve` runs

    from engramdb.server import create_app               # or mount it yourself
    app = create_app(engramdb.open("engram.db"), settings=ServerSettings(max_batch=500))

Every route is one engine call made as the principal of the request's API
key; semantics and errors are the engine's. See ``docs/http.md``.
"""

from __future__ import annotations

try:
    import fastapi as _fastapi  # noqa: F401 - fail early with the extra's name
    import uvicorn as _uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    from engramdb.errors import MissingExtra

    raise MissingExtra("the HTTP server needs the extra: pip install 'engramdb[server]'") from exc

from engramdb.server.app import create_app
from engramdb.server.serve import ensure_admin_key, run, serve
from engramdb.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "ensure_admin_key", "run", "serve"]
