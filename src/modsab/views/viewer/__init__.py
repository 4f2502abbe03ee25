"""``modsab view``: a local web app over a run directory, for runs of any size.

    from modsab.views.viewer import open_run, create_app, serve

    serve("runs/meld-4o", port=8765)          # blocks; Ctrl-C stops it

The instance browser filters, sorts and pages on the server (DuckDB over
``instances.parquet``, :mod:`modsab.views.viewer.table`), so a million instances open as
fast as ten; the filter language is in :mod:`modsab.views.viewer.query`, the routes in
:mod:`modsab.views.viewer.app`. The server binds to 127.0.0.1 only. The static
``report.html`` stays the page to share (above
:data:`modsab.views.report.browser.REPORT_INSTANCE_LIMIT` instances it carries a sample).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

from modsab.contract.errors import InputError
from modsab.views.viewer.run import Run, open_run

__all__ = ["HOST", "Run", "bind", "create_app", "open_run", "serve"]

#: The only address the viewer listens on.
HOST = "127.0.0.1"


def create_app(run: Run, **options):
    from modsab.views.viewer.app import create_app as _create

    return _create(run, **options)


def bind(port: int, host: str = HOST) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); InputError when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port}: {error.strerror or error}",
            hint="pick another --port (0 for any free port)",
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    run_dir: str | Path,
    *,
    port: int = 8765,
    memory: bool | None = None,
    ready: Callable[[str, Run], None] | None = None,
) -> None:
    """Open the run, listen on 127.0.0.1:``port`` and serve until interrupted.

    ``ready(url, run)`` is called once the server answers (default: print the address)."""
    import uvicorn

    run = open_run(run_dir, memory=memory)
    try:
        sock = bind(port)
    except InputError:
        run.close()
        raise
    url = f"http://{HOST}:{sock.getsockname()[1]}/"

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # the address is printed once requests are answered
                (ready or _announce)(url, run)

    config = uvicorn.Config(create_app(run), log_level="warning", access_log=False, lifespan="on")
    Server(config).run(sockets=[sock])


def _announce(url: str, run: Run) -> None:
    print(f"modsab view: {url} ({run.table.n_rows:,} instances; Ctrl-C stops)", file=sys.stderr, flush=True)
