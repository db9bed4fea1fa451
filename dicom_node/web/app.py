"""The web app wired together, and serving it: inside `slmnode serve` (a uvicorn thread that stops with the
node) or alone as `slmnode web`.

Routes: the pages (pages.py), the API under /api/v1 (api.py), /healthz, /readyz and /metrics here.
Templates and static files ship inside the package: nothing is fetched from elsewhere.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from dicom_node.config import ConfigError, Settings
from dicom_node.store.database import Store
from dicom_node import metrics
from dicom_node.web import api, pages, views
from dicom_node.web.auth import LoginLimiter, LoginRequired, scraper
from dicom_node.web.context import WebContext

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
START_TIMEOUT = 10.0  # seconds uvicorn may take to bind
MACHINE_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json"}  # answered in JSON, as the API is


def make_app(settings: Settings, store: Store, node=None) -> FastAPI:
    """The app on `store`; `node` (dicom_node.node.Node) when this process runs the DICOM service too."""
    app = FastAPI(
        title="slmnode",
        summary="Series description mappings, studies, reports and model versions of an slmnode DICOM node",
        version="1",
    )
    web = WebContext(settings, store, node)
    app.state.web = web
    app.state.limiter = LoginLimiter(settings.web.max_failed_logins, settings.web.lockout_seconds)
    registry = metrics.registry_for(lambda: views.queue_status(store, settings, node))

    @app.exception_handler(StarletteHTTPException)
    async def _error(request: Request, exc: StarletteHTTPException) -> Response:
        """JSON for the API and the health and metrics endpoints, a page for a browser on the pages."""
        if request.url.path.startswith("/api/") or request.url.path in MACHINE_PATHS:
            return await http_exception_handler(request, exc)
        return pages.error_page(request, exc)

    @app.exception_handler(LoginRequired)
    def _to_login(request: Request, _exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """The web server answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "the store or the DICOM service is down"}})
    def readyz() -> Response:
        """The store answers, and the DICOM service listens when this process runs the node."""
        problems = []
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            problems.append(f"store: {type(exc).__name__}")
        if node is not None and node.server is None:
            problems.append("dicom: not listening")
        return JSONResponse({"status": "not ready" if problems else "ready", "problems": problems},
                            status_code=503 if problems else 200)

    @app.get("/metrics", tags=["health"], dependencies=[Depends(scraper)], response_class=Response)
    def scrape() -> Response:
        """Prometheus metrics (text format); any user, by bearer token or HTTP Basic."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _tls_files(settings: Settings) -> dict:
    tls = settings.web.tls
    if bool(tls.certificate) != bool(tls.private_key):
        raise ConfigError("web.tls needs both certificate and private_key (or neither)")
    for key in ("certificate", "private_key"):
        path = getattr(tls, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"web.tls.{key}: {path} not found")
    return {"ssl_certfile": tls.certificate, "ssl_keyfile": tls.private_key} if tls.certificate else {}


def _server(settings: Settings, app: FastAPI):
    import uvicorn

    config = uvicorn.Config(
        app, host=settings.web.bind_address, port=settings.web.port, log_level="warning", access_log=False,
        lifespan="off", **_tls_files(settings),
    )
    return uvicorn.Server(config)


class WebServer:
    """uvicorn in a thread of its own: start() returns once it listens, stop() once it has closed."""

    def __init__(self, settings: Settings, store: Store, node=None):
        self.settings = settings
        self.app = make_app(settings, store, node)
        self.server = _server(settings, self.app)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.web.tls.certificate else "http"
        return f"{scheme}://{self.settings.web.bind_address}:{self.port}"

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self.server.run, name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                web = self.settings.web
                raise OSError(f"the web server could not listen on {web.bind_address}:{web.port} (see the log)")
            time.sleep(0.02)
        log.info("web pages and API on %s", self.url)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)
            self._thread = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()


def run_web(settings: Settings) -> None:
    """`slmnode web`: the pages and the API alone, on the store, until Ctrl-C or SIGTERM (then a clean stop)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    store = Store(settings.store.url, synchronous=settings.store.synchronous)
    try:
        with WebServer(settings, store):
            while not stop.wait(1.0):
                pass
            log.info("slmnode web stopping")
    finally:
        store.close()
