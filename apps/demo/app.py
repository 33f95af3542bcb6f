"""The demo's web app (FastAPI): the page, `POST /api/predict`, `GET /healthz`; every error is JSON.

`POST /api/predict` takes `{"text": "..."}` and answers `{"text", "entities", "html", "ms"}`: the
same entities as `python -m apps.predict` and the same markup as its `--html` page
(`apps.render.marked_html`). Requests are checked before any model work:

- a body over `max_body_bytes` -> 413; not JSON, nested too deep, no string `text`, a `text` that
  is not valid Unicode (a lone surrogate such as `"\\ud800"`) -> 400;
- a `text` over `max_chars` characters -> 413;
- a Host header that is not one of `allowed_hosts` -> 421 (a page on another site that has its
  name resolve to 127.0.0.1, "DNS rebinding", must not reach the model).

Errors are `{"error": "<one sentence>"}`. OpenAPI: `/openapi.json`, `/docs`.
"""
from __future__ import annotations

import asyncio
import html
import logging
import time
from pathlib import Path
from typing import Iterable

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import UserError
from ..render import ENTITY_CSS, marked_html
from .scheduler import FairScheduler

PAGE = Path(__file__).with_name("page.html")
MAX_CHARS = 100_000  # characters of one request: a long article, ~10 s of CPU time, not a book
MAX_BODY_BYTES = 1_000_000  # room for MAX_CHARS of any script, or escaped as \\uXXXX in good part
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger("demo")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: StrictStr

    @field_validator("text")
    @classmethod
    def _valid_unicode(cls, text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"not valid Unicode (a lone surrogate at character {err.start})") from None
        return text


class EntityOut(BaseModel):
    start: int
    end: int
    type: str
    score: float
    text: str


class PredictResponse(BaseModel):
    text: str
    entities: list[EntityOut]
    html: str
    ms: float


def render_page(description: str) -> str:
    page = PAGE.read_text(encoding="utf-8")
    return page.replace("/*ENTITY_CSS*/", ENTITY_CSS).replace("/*MODEL*/", html.escape(description))


def host_name(header: str) -> str:
    """`Host` header -> the name without the port, lower-case (`[::1]:80` -> `::1`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets a JSON 413, before it is read (by its
    Content-Length) or as soon as the bytes received pass the limit (a chunked body)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"a request body of at most {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await _error(413, f"expected {too_large}, got {int(declared)}")(scope, receive, send)
        received = 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # FastAPI passes an HTTPException from the body read on as it is
                raise StarletteHTTPException(413, f"expected {too_large}")
            return message

        await self.app(scope, receive_limited, send)


def build_app(scheduler: FairScheduler, description: str, allowed_hosts: Iterable[str] | None = LOOPBACK_HOSTS,
              max_chars: int = MAX_CHARS, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The app around `scheduler` (which runs the model). `allowed_hosts=None` allows any Host."""
    page = render_page(description)
    allowed = None if allowed_hosts is None else {host_name(h) for h in allowed_hosts}
    app = FastAPI(title="NER demo", summary="Named entities in your text")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.middleware("http")
    async def check_host(request: Request, call_next):
        name = host_name(request.headers.get("host", ""))
        if allowed is not None and name not in allowed:
            return _error(421, f"host {name or '(none)'!r} is not served here (allowed: {', '.join(sorted(allowed))};"
                               " see --allow-host)")
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if isinstance(exc.__cause__, RecursionError):
            message = "the JSON body is nested too deeply"
        elif isinstance(exc.__cause__, UnicodeDecodeError):
            message = "the body is not UTF-8 JSON"
        elif exc.status_code == 404:
            message = f"no such page: {request.url.path}"
        return _error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        # Only where and what: the offending input may be huge, or not encodable at all.
        problems = [f"not JSON ({e.get('ctx', {}).get('error', e.get('msg'))})" if e.get("type") == "json_invalid"
                    else f"{'.'.join(str(part) for part in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                    for e in exc.errors()]
        return _error(400, 'expected {"text": "..."}; ' + "; ".join(problems))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        if isinstance(exc, UserError):  # the model or its files, not the request
            return _error(500, str(exc))
        log.error("request %s failed: %r", request.url.path, exc)
        return _error(500, f"internal error: {type(exc).__name__}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/index.html", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    async def healthz() -> dict:
        """`ok`, and how many requests are waiting for or using the model."""
        return {"ok": True, "pending": scheduler.pending()}

    @app.post("/api/predict", response_model=PredictResponse,
              responses={400: {"description": "not a valid request"}, 413: {"description": "too long"},
                         421: {"description": "Host not allowed"}})
    async def predict(body: PredictRequest):
        """The entities of `text`, and the text as HTML with each entity marked."""
        if len(body.text) > max_chars:
            raise HTTPException(413, f"text of {len(body.text)} characters: at most {max_chars} per request")
        started = time.perf_counter()
        future = scheduler.submit(body.text)
        try:
            found = await asyncio.wrap_future(future)
        finally:
            future.cancel()  # a request that is gone (or done) needs no more chunks
        return {"text": body.text, "entities": [e.to_dict() for e in found], "html": marked_html(body.text, found),
                "ms": (time.perf_counter() - started) * 1000.0}

    return app
