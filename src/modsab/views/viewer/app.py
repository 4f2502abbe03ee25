"""The viewer's web app (Starlette): one page and a JSON API over a run directory.

Routes (all ``GET``):

- ``/``: the page (HTML shell, the summary as a JSON block, the script and stylesheets
  from ``/assets/``); a strict Content-Security-Policy (``default-src 'none'``, scripts
  and styles from this server only) on every response;
- ``/api/summary``: ``diagnosis.json``, the run's config, columns, agents, labels,
  datasets, roles, notes;
- ``/api/instances?filter=&sort=&page=&size=``: one page of instances, filtered and
  sorted on the server (``filter``: the language in :mod:`modsab.views.viewer.query`;
  ``sort``: a column, ``-column`` for descending, repeatable; ``page`` from 1; ``size``
  up to 500); a filter or sort the viewer cannot run is a 400 with the reason;
- ``/api/instance?id=ID`` (or ``/api/instance/ID``): one instance's row, descriptors and
  raw answers.

JSON goes through the report's :func:`~modsab.views.report.browser.json_for_script`
(``<``, ``>``, ``&`` escaped), the page's texts through :func:`html.escape`, and the
script sets every text from data with ``textContent``. Only loopback host names are
accepted (no DNS rebinding onto the run's data).
"""

from __future__ import annotations

import contextlib
import logging
from html import escape
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modsab.core.audit import ROLE_NAMES
from modsab.views.report.browser import FILTER_CONTROLS, json_for_script
from modsab.views.viewer.query import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, QueryError, page_window
from modsab.views.viewer.run import Run

#: Host names the app answers to (the server binds to 127.0.0.1 only).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
#: Files under ``/assets/``: name -> (package, file, media type).
ASSETS = {
    "viewer.js": ("modsab.views.viewer", "viewer.js", "text/javascript; charset=utf-8"),
    "viewer.css": ("modsab.views.viewer", "viewer.css", "text/css; charset=utf-8"),
    "report.css": ("modsab.views.report", "report.css", "text/css; charset=utf-8"),
}

log = logging.getLogger("modsab.view")


def _json(data: Any, status: int = 200) -> Response:
    return Response(json_for_script(data), status_code=status, media_type="application/json")


class _SecurityHeaders:
    """Pure ASGI middleware: the security headers on every HTTP response."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode("latin-1") not in SECURITY_HEADERS]
                headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def summary(run: Run) -> dict[str, Any]:
    table = run.table
    d = run.diagnosis
    labels = d.get("labels") if isinstance(d.get("labels"), list) else None
    return {
        "run": run.name,
        "directory": str(run.directory),
        "n_instances": table.n_rows,
        "engine": table.engine,
        "columns": [{"name": c.name, "kind": c.kind} for c in table.schema.columns],
        "agents": table.schema.agents,
        "fused_agents": d.get("fused_agents") if isinstance(d.get("fused_agents"), list) else None,
        "labels": [str(x) for x in labels] if labels else table.distinct("gold"),
        # diagnosis.json names the datasets (by_dataset) and labels: no scan of the table for them
        "datasets": sorted(d["by_dataset"]) if isinstance(d.get("by_dataset"), dict) else table.distinct("dataset"),
        "roles": ROLE_NAMES.tolist(),
        "diagnosis": d,
        "config": run.config,
        "notes": run.notes,
        "has": {"descriptors": table.descriptors is not None, "raw": bool(run.stores)},
        "page_size": DEFAULT_PAGE_SIZE,
        "max_page_size": MAX_PAGE_SIZE,
    }


def page_html(run: Run, data: dict[str, Any]) -> str:
    title = f"modsab view: {run.name}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/assets/report.css"><link rel="stylesheet" href="/assets/viewer.css">'
        "</head><body>"
        f"<header><h1>{escape(title)}</h1><p>{run.table.n_rows:,} instances · {escape(str(run.directory))}"
        ' · <span id="engine"></span></p></header>'
        '<nav><a href="#summary">Summary</a><a href="#instances">Instances</a></nav><main>'
        '<section id="summary"><h2>Summary</h2><div id="summary-body"></div></section>'
        f"{_BROWSER}</main>"
        f'<script type="application/json" id="summary-data">{json_for_script(data)}</script>'
        '<script src="/assets/viewer.js"></script></body></html>\n'
    )


_BROWSER = """<section id="instances"><h2>Instances</h2>
<div class="filters">
""" + FILTER_CONTROLS + """<label>sort by<select id="f-sort"><option value="">dataset order</option></select></label>
<label>order<select id="f-dir"><option value="">ascending</option><option value="-">descending</option></select></label>
<label>rows<select id="f-size"><option>25</option><option selected>50</option><option>100</option>
<option>200</option></select></label>
</div>
<div class="filters"><label class="wide">filter expression (and-ed with the choices above)
<input id="f-expr" type="search" spellcheck="false"
placeholder="e.g. audio.role = successful_sabotage and audio.confidence >= 0.9"></label></div>
<p class="note">Filter: <code id="f-effective"></code></p>
<p id="ib-error" class="error" role="alert" hidden></p>
<div class="pager"><button id="ib-first" type="button">&#171; first</button>
<button id="ib-prev" type="button">&#8249; prev</button><span id="ib-page"></span>
<button id="ib-next" type="button">next &#8250;</button><button id="ib-last" type="button">last &#187;</button>
<strong id="ib-count" data-count=""></strong><span id="ib-time" class="note"></span></div>
<p class="note">Filters, sorting and paging run on the server over every instance. Click a row for the
agents' answers (top label, confidence, quality, role), the fused ranking, raw answers and descriptors.</p>
<table id="ib-table" data-state="loading"><thead><tr><th>instance</th><th>dataset</th><th>gold</th>
<th>fused top-1</th><th>gold rank</th><th>agents (top label, confidence)</th></tr></thead>
<tbody id="ib-body"></tbody></table>
</section>"""


def create_app(run: Run, *, hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> Starlette:
    """The ASGI app over an opened run (closed when the app shuts down)."""

    def index(request: Request) -> Response:
        return Response(page_html(run, summary(run)), media_type="text/html; charset=utf-8")

    def asset(request: Request) -> Response:
        entry = ASSETS.get(request.path_params["name"])
        if entry is None:
            raise HTTPException(404, "no such asset")
        package, name, media = entry
        body = resources.files(package).joinpath("assets", name).read_text(encoding="utf-8")
        return Response(body, media_type=media)

    def api_summary(request: Request) -> Response:
        return _json(summary(run))

    def api_instances(request: Request) -> Response:
        query = request.query_params
        page, size = page_window(query.get("page"), query.get("size"))
        sort = [s for s in query.getlist("sort") if s]
        rows, total, seconds = run.table.page(query.get("filter"), sort, page, size)
        return _json(
            {
                "total": total,
                "n_instances": run.table.n_rows,
                "page": page,
                "size": size,
                "pages": max(1, -(-total // size)),
                "rows": rows,
                "engine": run.table.engine,
                "seconds": round(seconds, 4),
            }
        )

    def api_instance(request: Request) -> Response:
        instance_id = request.path_params.get("instance_id") or request.query_params.get("id")
        if not instance_id:
            raise QueryError("give an instance id: /api/instance?id=ID")
        row = run.table.instance(instance_id)
        if row is None:
            return _json({"error": f"no instance {instance_id!r}"}, 404)
        return _json(
            {"row": row, "descriptors": run.table.descriptors_of(instance_id), "raw": run.raw_answers(instance_id)}
        )

    async def bad_query(request: Request, error: Exception) -> Response:
        return _json({"error": str(error)}, 400)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return _json({"error": error.detail}, error.status_code)

    async def server_error(request: Request, error: Exception) -> Response:
        log.exception("request %s failed", request.url.path)
        return _json({"error": f"internal error: {type(error).__name__}"}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        run.close()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/assets/{name}", asset),
            Route("/api/summary", api_summary),
            Route("/api/instances", api_instances),
            Route("/api/instance", api_instance),
            Route("/api/instance/{instance_id:path}", api_instance),
        ],
        middleware=[Middleware(_SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))],
        exception_handlers={QueryError: bad_query, HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
