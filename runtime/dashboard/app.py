"""The dashboard's ASGI application: pages, their /api/ twins, actions, static files.

    browser --GET /jobs--> pages.render(VIEW, data.jobs(storage, ...)) --> HTML
            --GET /api/jobs--> the same data --> JSON
            --POST /jobs/7/retry (csrf)--> actions.retry --> 303 to the page (JSON under /api/)
    Guard (token) wraps it all; errors are pages (or JSON), never tracebacks.

One storage connection, opened at start-up in the event loop's thread, serves every
request in turn: the handlers are coroutines that call storage directly (each call is an
index probe or a short page), so a SQLite connection never crosses threads.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from runtime.dashboard import actions, pages
from runtime.dashboard.auth import Csrf, Guard
from runtime.dashboard.data import BadQuery, Missing
from runtime.dashboard.pages import wants_json
from runtime.errors import StorageError

log = logging.getLogger("jobrt.dashboard")
STATIC = Path(__file__).with_name("static")


class Settings:
    """What the handlers need besides storage: the config, the modes, the CSRF token."""

    def __init__(self, cfg, read_only: bool, show_args: bool, csrf: Csrf):
        self.cfg, self.read_only, self.show_args, self.csrf = cfg, read_only, show_args, csrf


def create_app(cfg, *, read_only: bool = False, token: str = "", storage_factory=None,
               csrf: Csrf | None = None):
    """The dashboard for `cfg` (a runtime.config.load.Config). `storage_factory()` opens the
    storage (default: cfg's, as a client that never creates a database)."""
    if storage_factory is None:
        from runtime.cli.admin import open_client_storage

        storage_factory = lambda: open_client_storage(cfg)  # noqa: E731

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.storage = storage_factory()
        try:
            yield
        finally:
            app.state.storage.close()

    settings = Settings(cfg, read_only, cfg.dashboard_show_args, csrf or Csrf())
    routes = [*pages.routes(), *actions.routes(),
              Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    handlers = {BadQuery: _bad_query, Missing: _missing, StorageError: _storage_error,
                HTTPException: _http_error, Exception: _server_error}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.settings = settings
    return Guard(app, token)


def error(request: Request, status: int, message: str) -> Response:
    if wants_json(request):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    return pages.render(request, "error.html", {"status": status, "message": message},
                        status=status)


async def _bad_query(request: Request, exc: BadQuery) -> Response:
    return error(request, 400, str(exc))


async def _missing(request: Request, exc: Missing) -> Response:
    return error(request, 404, str(exc))


async def _storage_error(request: Request, exc: StorageError) -> Response:
    log.warning("storage: %s", exc)
    return error(request, 503, f"storage unavailable: {exc}")


async def _http_error(request: Request, exc: HTTPException) -> Response:
    messages = {404: "no such page", 405: "this address does not take that method"}
    return error(request, exc.status_code, exc.detail if exc.status_code not in messages
                 else messages[exc.status_code])


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("dashboard: error while serving %s", request.url.path)
    return error(request, 500, "the dashboard failed to serve this; its log says why")


__all__ = ["create_app"]
