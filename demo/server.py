"""The demo: a static page and one JSON endpoint on the standard library's http.server.

    python -m demo [--model_dir DIR] [--backend onnxrt|torch] [--onnx X.onnx] [--host 127.0.0.1] [--port 7860]

`GET /` is the page (demo/page.html: a text box, the highlighted text, a table of entities).
`POST /api/predict` takes `{"text": "..."}` and answers `{"text", "entities", "html", "ms"}`: the
same entities as `python -m infer.predict` and the same markup as its `--html` page
(`infer.render.marked_html`). The model is loaded once, before the address is printed; requests
are served on threads and the model runs one request at a time. `--port 0` picks a free port.
"""
from __future__ import annotations

import html
import json
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

from common.errors import UserError, handle_errors
from common.paths import DEFAULT_MODEL_DIR

PAGE = Path(__file__).with_name("page.html")
MAX_BODY = 1_000_000  # bytes of one request: a long article, not a book
DEFAULT_PORT = 7860  # Gradio's, so the seed's users find it where they expect


def render_page(description: str) -> bytes:
    from infer.render import ENTITY_CSS

    page = PAGE.read_text(encoding="utf-8")
    return page.replace("/*ENTITY_CSS*/", ENTITY_CSS).replace("/*MODEL*/", html.escape(description)).encode("utf-8")


class DemoApp:
    """What the handler calls: the page bytes and a thread-safe `predict(text) -> dict`."""

    def __init__(self, predictor, description: str):
        self.predictor = predictor
        self.page = render_page(description)
        self._lock = threading.Lock()

    def predict(self, text: str) -> dict:
        from infer.render import marked_html

        started = time.perf_counter()
        with self._lock:
            prediction = self.predictor.predict([text])[0]
        out = prediction.to_dict()
        out["html"] = marked_html(prediction.text, prediction.entities)
        out["ms"] = (time.perf_counter() - started) * 1000.0
        return out


class Handler(BaseHTTPRequestHandler):
    server_version = "ner-demo/1"
    app: DemoApp  # set on the subclass that `make_server` builds

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.app.page, "text/html; charset=utf-8")
        elif path == "/healthz":
            self._json(HTTPStatus.OK, {"ok": True})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

    def do_POST(self):  # noqa: N802
        if self.path.split("?", 1)[0] != "/api/predict":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._json(HTTPStatus.BAD_REQUEST if length <= 0 else HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"error": f"expected a JSON body of 1 to {MAX_BODY} bytes"})
            return
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
            text = body["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            self._json(HTTPStatus.BAD_REQUEST, {"error": 'expected {"text": "..."}'})
            return
        try:
            self._json(HTTPStatus.OK, self.app.predict(text))
        except UserError as err:
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(err)})

    def _json(self, status, obj) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _send(self, status, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                verbose: bool = False) -> ThreadingHTTPServer:
    handler = type("DemoHandler", (Handler,), {"app": app})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err}); try another --port") from None
    server.daemon_threads = True
    server.verbose = verbose
    return server


@click.command(name="demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model_dir", "--model-dir", "model_dir", type=click.Path(path_type=Path), default=DEFAULT_MODEL_DIR,
              show_default=True, help="Token-classification checkpoint folder.")
@click.option("--backend", type=click.Choice(["onnxrt", "torch"]), default="onnxrt", show_default=True)
@click.option("--onnx", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="ONNX file (exported there first if missing) [default: <model_dir>/.onnx-cache/].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port (0: any free one).")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads [default: physical cores].")
@click.option("--verbose", is_flag=True, help="Log every request.")
@handle_errors
def main(model_dir, backend, onnx, host, port, threads, verbose):
    """Serve a page where you type text and see its named entities."""
    from infer.predict import Predictor, _quiet_transformers

    _quiet_transformers()
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    predictor = Predictor(model_dir, backend=backend, onnx=onnx, threads=threads, log=log).activate()
    predictor.predict(["warm up ."])  # the first run builds kernels; do not make the first visitor wait
    description = f"{Path(model_dir).resolve().name} · {backend}"
    server = make_server(DemoApp(predictor, description), host, port, verbose)
    url = f"http://{host}:{server.server_address[1]}/"
    click.echo(f"NER demo on {url} (Ctrl-C to stop)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        predictor.close()
