"""The web dashboard (`jobrt dashboard`): Horizon's pages over jobrt's durable storage.

    app.py      the ASGI application: routes, error pages, the token guard
    pages.py    GET views: one data function each, served as HTML and as JSON under /api/
    actions.py  POST actions (retry, cancel, forget, batch cancel/retry), CSRF-checked
    data.py     what each page shows, from storage's cheap verbs (never a scan of jobs)
    auth.py     the token (HTTP Basic or Bearer), CSRF tokens, the loopback rule
    templates/, static/   Jinja2 pages; CSS, JS and SVG charts shipped in the package

Needs the `dashboard` extra: starlette, uvicorn, jinja2.
"""
