"""The demo server: `apps.demo.app` on uvicorn, with limits on what one client can hold.

    python -m apps.demo [--model_dir DIR] [--backend onnxrt|torch|openvino] [--onnx X.onnx]
                        [--host 127.0.0.1] [--port 7860]

The model is loaded once, before the address is printed (`NER demo on http://HOST:PORT/`);
`--port 0` picks a free port. One worker thread runs the model (`apps.demo.scheduler`); the event loop
only parses, checks and answers. Limits:

- a request must arrive whole within `--request-timeout` seconds of its first byte (a client that
  sends half a request and stalls is disconnected); an idle keep-alive connection is closed after 5 s;
- at most `--max-connections` connections and requests at once (beyond: 503), headers up to 16 KB;
- bodies up to 1 MB and texts up to `--max-chars` characters (413);
- only Host names in the allow-list: the loopback names, `--host` itself, and `--allow-host`
  (any name when listening on all interfaces without `--allow-host`).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path

import click
import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from common.errors import UserError, handle_errors
from common.paths import DEFAULT_MODEL_DIR
from common.quiet import quiet_transformers
from common.cli import CONTEXT_SETTINGS, model_dir_option
from engine.backends import BACKENDS

from ..predict import Predictor
from .app import LOOPBACK_HOSTS, MAX_CHARS, build_app
from .scheduler import FairScheduler

DEFAULT_PORT = 7860  # Gradio's, so the seed's users find it where they expect
REQUEST_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 64
MAX_HEADER_BYTES = 16 * 1024
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for receiving each request whole.

    uvicorn times out idle keep-alive connections, but not a request that stalls halfway (headers
    or body): without this such a client holds its connection, and a request slot, forever."""

    request_timeout_s = REQUEST_TIMEOUT_S

    def connection_made(self, transport) -> None:
        self._read_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_read_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._arm_read_deadline()  # a request has begun (or a pipelined one waits): it must finish
        else:
            self._disarm_read_deadline()

    def connection_lost(self, exc) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def _arm_read_deadline(self) -> None:
        if self._read_deadline is None and not self.transport.is_closing():
            self._read_deadline = self.loop.call_later(self.request_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.logger.info("closing a connection whose request did not arrive in %ss", self.request_timeout_s)
            self.transport.close()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (so the printed port is the real one, and connections queue at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(MAX_CONNECTIONS)
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err}); try another --port or --host") \
            from None
    return sock


def allowed_hosts(host: str, extra: tuple[str, ...]):
    """Host names to answer to; None (any) when listening everywhere and no --allow-host names one."""
    if host in WILDCARD_HOSTS and not extra:
        return None
    return (*LOOPBACK_HOSTS, *([] if host in WILDCARD_HOSTS else [host]), *extra)


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@click.command(name="demo", context_settings=CONTEXT_SETTINGS)
@model_dir_option(default=DEFAULT_MODEL_DIR, help="Token-classification checkpoint folder.")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="onnxrt", show_default=True)
@click.option("--onnx", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="ONNX file (exported there first if missing) [default: <model_dir>/.onnx-cache/].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port (0: any free one).")
@click.option("--allow-host", "--allow_host", "allow_host", multiple=True,
              help="Another Host name to answer to (repeatable); the loopback names and --host always are.")
@click.option("--max-chars", "--max_chars", "max_chars", type=click.IntRange(1), default=MAX_CHARS,
              show_default=True, help="Longest text one request may send.")
@click.option("--request-timeout", "--request_timeout", "request_timeout", type=click.FloatRange(0.1),
              default=REQUEST_TIMEOUT_S, show_default=True, help="Seconds a client has to send a whole request.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads [default: physical cores].")
@click.option("--verbose", is_flag=True, help="Log every request.")
@handle_errors
def main(model_dir, backend, onnx, host, port, allow_host, max_chars, request_timeout, threads, verbose):
    """Serve a page where you type text and see its named entities."""
    quiet_transformers()
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    sock = listen(host, port)
    predictor = Predictor(model_dir, backend=backend, onnx=onnx, threads=threads, log=log).activate()
    scheduler = None
    try:
        predictor.predict(["warm up ."])  # the first run builds kernels; do not make the first visitor wait
        scheduler = FairScheduler(lambda text: predictor.predict([text])[0].entities)
        app = build_app(scheduler, f"{Path(model_dir).resolve().name} · {backend}",
                        allowed_hosts(host, allow_host), max_chars=max_chars)
        protocol = type("DemoH11Protocol", (DeadlineH11Protocol,), {"request_timeout_s": request_timeout})
        config = uvicorn.Config(app, http=protocol, log_level="info" if verbose else "warning", access_log=verbose,
                                timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=MAX_CONNECTIONS,
                                h11_max_incomplete_event_size=MAX_HEADER_BYTES, server_header=False)
        click.echo(f"NER demo on {url_of(host, sock.getsockname()[1])} (Ctrl-C to stop)")
        sys.stdout.flush()
        logging.getLogger("demo").setLevel(logging.INFO)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if scheduler is not None:
            scheduler.close()
        predictor.close()
        sock.close()
