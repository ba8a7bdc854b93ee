"""The dashboard's GET routes: each view is one data function (runtime.dashboard.data)
served twice, as an HTML page from its template and as JSON under /api/."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jinja2
from markupsafe import Markup
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from runtime.dashboard import data

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def settings_of(request: Request):
    return request.app.state.settings


def storage_of(request: Request):
    return request.app.state.storage


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


# -- formatting, for the templates ----------------------------------------------------
def when(stamp) -> str:
    if stamp is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    except (OverflowError, ValueError, OSError):
        return f"{stamp:.0f}"


def seconds(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def as_json(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def script_json(value) -> str:
    """JSON safe inside <script type="application/json">."""
    return Markup(
        orjson.dumps(value).decode().replace("<", "\\u003c").replace(">", "\\u003e"))


TEMPLATES.filters.update(when=when, seconds=seconds, json=as_json, script_json=script_json)


def render(request: Request, template: str, context: dict, status: int = 200) -> Response:
    settings = settings_of(request)
    page = TEMPLATES.get_template(template).render(
        **context, request=request, csrf=settings.csrf.token, read_only=settings.read_only,
        show_args=settings.show_args, path=request.url.path,
        notice=request.query_params.get("done", "")[:200])
    return HTMLResponse(page, status_code=status)


# -- the views ------------------------------------------------------------------------
class View(NamedTuple):
    path: str  # its page; its JSON twin is /api + path (/api/overview for /)
    template: str
    load: Callable  # (request, settings, storage) -> dict


def _overview(request, settings, storage):
    return data.overview(storage, settings.cfg)


def _jobs(request, settings, storage):
    return data.jobs(storage, data.jobs_filters(request.query_params), settings.show_args)


def _job(request, settings, storage):
    return {"job": data.job(storage, _path_id(request), settings.show_args)}


def _failed(request, settings, storage):
    before = data.whole(request.query_params.get("before"), "before")
    return data.failed(storage, before, settings.show_args)


def _batches(request, settings, storage):
    return data.batches(storage, data.whole(request.query_params.get("before"), "before"))


def _batch(request, settings, storage):
    return data.batch(storage, _path_id(request), settings.show_args)


def _schedules(request, settings, storage):
    return data.schedules(storage, settings.cfg)


def _metrics(request, settings, storage):
    return data.metrics(storage, request.query_params.get("range") or "hour")


def _path_id(request: Request) -> int:
    return data.whole(request.path_params["id"], "the id in the address")


VIEWS = (
    View("/", "overview.html", _overview),
    View("/jobs", "jobs.html", _jobs),
    View("/jobs/{id}", "job.html", _job),
    View("/failed", "failed.html", _failed),
    View("/batches", "batches.html", _batches),
    View("/batches/{id}", "batch.html", _batch),
    View("/schedules", "schedules.html", _schedules),
    View("/metrics-charts", "metrics.html", _metrics),
)


def _page(view: View):
    async def page(request: Request) -> Response:
        found = view.load(request, settings_of(request), storage_of(request))
        return render(request, view.template, found)
    return page


def _api(view: View):
    async def api(request: Request) -> Response:
        found = view.load(request, settings_of(request), storage_of(request))
        return Response(orjson.dumps(found, option=orjson.OPT_NON_STR_KEYS),
                        media_type="application/json")
    return api


def routes() -> list[Route]:
    found = []
    for view in VIEWS:
        found.append(Route(view.path, _page(view), methods=["GET", "HEAD"]))
        api = "/api/overview" if view.path == "/" else "/api" + view.path
        found.append(Route(api, _api(view), methods=["GET", "HEAD"]))
    return found
