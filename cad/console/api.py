"""The console pages, the offline API docs and the base map (docs/console.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from cad.console.deps import ConsoleDeps, console_deps
from cad.console.schemas import BaseMap, ConsoleConfig
from cad.console.vendor import vendor_dirs
from cad.errors import NotFound
from cad.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
STATIC_MOUNT = "/console/static"
SWAGGER = "/console/vendor/swagger-ui"
# Zooms at which routing.basemap changes detail (kept in step with routing.basemap.ZOOM_BANDS
# by tests/console/test_console.py, since this package may not import routing).
BASEMAP_ZOOM_BANDS = [0, 11, 12, 14, 16]

router = APIRouter()
Deps = Annotated[ConsoleDeps, Depends(console_deps)]


def console_csp(settings: Settings) -> str:
    """The console page's policy: its own origin only, plus the tile server when one is set."""
    img = "'self' data:"
    if settings.console_tile_url:
        parts = urlsplit(settings.console_tile_url.replace("{s}", "a"))
        img += f" {parts.scheme}://{parts.netloc}".replace("://a.", "://*.")
    return ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src {img}; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'")


# Swagger UI's page starts it with an inline script (FastAPI's template).
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def console_page(deps: Deps) -> HTMLResponse:
    html = (STATIC_DIR / "index.html").read_text()
    return HTMLResponse(html, headers={"content-security-policy": console_csp(deps.settings)})


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json", title="CAD backend - API",
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png")
    page.headers["content-security-policy"] = DOCS_CSP
    return page


@router.get("/docs/oauth2-redirect", response_class=HTMLResponse, include_in_schema=False)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/api/v1/console/config", response_model=ConsoleConfig, tags=["console"])
async def console_config(deps: Deps) -> ConsoleConfig:
    """Map set-up for the console: external tiles or the road-graph base map, and its bounds."""
    s = deps.settings
    return ConsoleConfig(
        tile_url=s.console_tile_url, tile_attribution=s.console_tile_attribution,
        basemap=deps.render_basemap is not None, bounds=deps.bounds,
        basemap_zoom_bands=BASEMAP_ZOOM_BANDS,
        libraries={v.mount.rsplit("/", 1)[-1]: v.version for v in vendor_dirs()})


@router.get("/api/v1/basemap", response_model=BaseMap, tags=["console"],
            responses={404: {"description": "No road graph is loaded (CAD_GRAPH_PATH unset)."}})
async def basemap(deps: Deps,
                  zoom: Annotated[int, Query(ge=0, le=22, description="Map zoom level")] = 14,
                  ) -> Response:
    """The agency's road graph as simplified GeoJSON for ``zoom`` (cached per zoom band)."""
    if deps.render_basemap is None:
        raise NotFound("no road graph is loaded: the base map needs CAD_GRAPH_PATH")
    body = await deps.render_basemap(zoom)
    # The graph changes only on a rebuild: let the browser keep it for a while.
    return Response(body, media_type="application/json",
                    headers={"cache-control": "private, max-age=300"})


class RevalidatedFiles(StaticFiles):
    """Static files the browser keeps and revalidates (ETag, 304) instead of the API's
    ``no-store``: an MDT on a cellular link reloads the console without fetching Leaflet
    again, and an upgrade is still seen at once."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["cache-control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Mount the console's own files and the vendored libraries, and add the page routes."""
    app.include_router(router)
    app.mount(STATIC_MOUNT, RevalidatedFiles(directory=STATIC_DIR), name="console-static")
    for vendor in vendor_dirs():
        app.mount(vendor.mount, RevalidatedFiles(directory=vendor.path), name=vendor.mount)
