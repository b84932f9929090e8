"""``/docs``: the interactive API docs, served entirely from this server.

FastAPI's own docs page loads Swagger UI from a CDN, so it is blank on a
machine without internet (and leaks every visit to a third party). Here the
Swagger UI assets come from the ``swagger-ui-bundle`` package (part of the
``server`` extra) and are served under ``/docs/assets/``; nothing is fetched
from elsewhere at run time.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "DOCS_PATH", "install_docs"]

DOCS_PATH = "/docs"
ASSETS = f"{DOCS_PATH}/assets"


def install_docs(app: FastAPI) -> bool:
    """Serve ``/docs`` and its assets on ``app``; ``False`` when the assets are missing."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return False

    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{app.title} API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
    )

    @app.get(DOCS_PATH, include_in_schema=False)
    def docs() -> HTMLResponse:
        return page

    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    return True
