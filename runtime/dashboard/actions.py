"""The dashboard's actions: each a POST carrying the CSRF token (form field `csrf`, or the
X-CSRF-Token header), refused in read-only mode. A form posted from a page is answered
with a redirect back to a page that says what was done; under /api/ with JSON.

    POST /jobs/ID/retry       a failed job back to its queue
    POST /jobs/ID/cancel      a pending job never runs; a running one is killed
    POST /failed/retry        the failed jobs whose ids the form lists (`ids`, repeated)
    POST /failed/ID/forget    a failed job deleted
    POST /batches/ID/cancel   a batch's pending members cancelled (running ones finish)
    POST /batches/ID/retry    a batch's failed members back to their queues
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, quote

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from runtime.dashboard import data
from runtime.dashboard.pages import settings_of, storage_of, wants_json

MAX_FORM = 64 * 1024  # bytes of a form or JSON body
MAX_IDS = 1000  # ids one "retry selected" takes


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def _form(request: Request) -> dict[str, list[str]]:
    """The posted fields (urlencoded form or a JSON object), each as a list of strings."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise Refused(413, "the request body is too large")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            found = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            raise data.BadQuery("the body is not JSON") from None
        if not isinstance(found, dict):
            raise data.BadQuery("the body must be a JSON object")
        return {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in found.items()}
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_IDS + 10)
    except (UnicodeDecodeError, ValueError):
        raise data.BadQuery("the form is not valid urlencoded UTF-8") from None


def _action(work):
    """A POST handler: read-only and CSRF checks, then `work(request, form, storage, now)`
    -> (message, page to go back to, JSON document)."""
    async def handler(request: Request) -> Response:
        settings = settings_of(request)
        try:
            if settings.read_only:
                raise Refused(403, "this dashboard is read-only (--read-only)")
            form = await _form(request)
            given = request.headers.get("x-csrf-token") or (form.get("csrf") or [None])[0]
            if not settings.csrf.check(given):
                raise Refused(403, "missing or wrong CSRF token: reload the page and try again")
            message, back, document = work(request, form, storage_of(request), time.time())
        except Refused as exc:
            from runtime.dashboard.app import error
            return error(request, exc.status, str(exc))
        if wants_json(request):
            return JSONResponse({"message": message, **document})
        return RedirectResponse(f"{back}?done={quote(message)}", status_code=303)
    return handler


def _id(request: Request) -> int:
    return data.whole(request.path_params["id"], "the id in the address")


def retry_job(request, form, storage, now):
    job_id = _id(request)
    record = storage.get(job_id)
    if record is None:
        raise data.Missing(f"no job {job_id}")
    if record.state != "failed":
        raise Refused(409, f"job {job_id} is {record.state}: only failed jobs are retried")
    count = storage.retry_failed([job_id], now)
    if count:
        storage.notify()
    message = f"job {job_id} is back in queue {record.queue}" if count else \
        f"job {job_id} stays failed: a live job holds its unique key"
    return message, f"/jobs/{job_id}", {"retried": count}


def cancel_job(request, form, storage, now):
    job_id = _id(request)
    before = storage.cancel(job_id, now)
    if before is None:
        raise data.Missing(f"no job {job_id}")
    if before == "running":
        storage.notify()  # its supervisor kills it at once on this host
    message = {"pending": f"job {job_id} cancelled: it will never run",
               "running": f"job {job_id} is being cancelled: its worker is killed"}.get(
        before, f"job {job_id} had ended ({before}); left as it is")
    return message, f"/jobs/{job_id}", {"was": before}


def retry_selected(request, form, storage, now):
    ids = [data.whole(text, "each id") for text in form.get("ids", [])[:MAX_IDS + 1]]
    ids = [i for i in ids if i is not None]
    if not ids:
        raise data.BadQuery("choose at least one failed job to retry")
    if len(ids) > MAX_IDS:
        raise data.BadQuery(f"at most {MAX_IDS} jobs at once")
    count = storage.retry_failed(ids, now)
    if count:
        storage.notify()
    return f"{count} of {len(ids)} failed jobs put back in their queues", "/failed", {"retried": count}


def forget_job(request, form, storage, now):
    job_id = _id(request)
    if not storage.forget(job_id):
        raise Refused(409, f"job {job_id} is not in the failed-jobs store")
    return f"job {job_id} forgotten", "/failed", {"forgotten": job_id}


def cancel_batch(request, form, storage, now):
    batch_id = _id(request)
    cancelled = storage.batch_cancel(batch_id, now)
    if cancelled is None:
        raise data.Missing(f"no batch {batch_id}")
    if cancelled:
        storage.notify()
    message = (f"batch {batch_id}: its pending members are cancelled; running ones finish"
               if cancelled else f"batch {batch_id} had finished; left as it is")
    return message, f"/batches/{batch_id}", {"cancelled": cancelled}


def retry_batch(request, form, storage, now):
    batch_id = _id(request)
    record = storage.batch(batch_id)
    if record is None:
        raise data.Missing(f"no batch {batch_id}")
    count = storage.retry_failed(list(record.failed_job_ids), now) if record.failed_job_ids else 0
    if count:
        storage.notify()
    return (f"batch {batch_id}: {count} failed member{'s' * (count != 1)} put back",
            f"/batches/{batch_id}", {"retried": count})


ACTIONS = (("/jobs/{id}/retry", retry_job), ("/jobs/{id}/cancel", cancel_job),
           ("/failed/retry", retry_selected), ("/failed/{id}/forget", forget_job),
           ("/batches/{id}/cancel", cancel_batch), ("/batches/{id}/retry", retry_batch))


def routes() -> list[Route]:
    found = []
    for path, work in ACTIONS:
        found.append(Route(path, _action(work), methods=["POST"]))
        found.append(Route("/api" + path, _action(work), methods=["POST"]))
    return found
