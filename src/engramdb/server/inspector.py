"""``/ui``: the web inspector, a static page served from this package (no CDN, no build).

The page, its script and its stylesheet are package data
(``engramdb/server/ui/``). They hold nothing secret and nothing about the
database: everything the inspector shows comes from the ``/v1`` API, called
from the browser with the API key the user signs in with (kept in
``sessionStorage``, sent as ``Authorization: Bearer``), so the engine's grants
decide what is shown and the door checks the key on every call.

Safety, by construction:

- No cookies: state-changing calls (resolving a conflict) authenticate with a
  header another site cannot make a browser send, so they are CSRF-safe.
- The live feed reads ``/v1/changes/stream`` with ``fetch`` and that same
  header (``EventSource`` cannot send headers); no key or token is ever put
  in a URL, where logs and history would keep it.
- Every ``/ui`` answer carries a strict Content-Security-Policy (scripts only
  from this origin, no inline script, no framing), ``nosniff`` and
  ``no-referrer``; the script builds the page with ``textContent`` only, so a
  memory's text (written by agents: untrusted) always renders inert.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response

from engramdb.errors import NotFound

__all__ = ["ASSETS", "SECURITY_HEADERS", "UI_PATH", "install_inspector"]

UI_PATH = "/ui"
ASSETS = f"{UI_PATH}/assets"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",  # ES modules: the type browsers require
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _files() -> dict[str, bytes]:
    folder = resources.files("engramdb.server").joinpath("ui")
    return {f.name: f.read_bytes() for f in folder.iterdir()
            if f.name == "index.html" or any(f.name.endswith(t) for t in _TYPES)}


def install_inspector(app: FastAPI) -> bool:
    """Serve the inspector at ``/ui`` on ``app``; ``False`` if its files are missing."""
    try:
        files = _files()
    except (FileNotFoundError, ModuleNotFoundError):
        return False
    page = files.pop("index.html", None)
    if page is None:
        return False

    @app.get(UI_PATH, include_in_schema=False)
    def inspector() -> Response:
        return Response(page, media_type="text/html; charset=utf-8",
                        headers=SECURITY_HEADERS)

    @app.get(UI_PATH + "/", include_in_schema=False)
    def inspector_slash() -> Response:
        return RedirectResponse(UI_PATH, headers=SECURITY_HEADERS)

    @app.get(ASSETS + "/{asset}", include_in_schema=False)
    def asset(asset: str) -> Response:
        body = files.get(asset)
        if body is None:
            raise NotFound(f"no such inspector file; open {UI_PATH}")
        media_type = _TYPES["." + asset.rsplit(".", 1)[-1]]
        return Response(body, media_type=media_type, headers=SECURITY_HEADERS)

    return True
