"""The demo server's limits, over real HTTP against `python -m apps.demo --port 0` started here: bad bodies
are a JSON 400, oversize ones a JSON 413, a foreign Host header is refused, a half-sent request is
dropped, and a small request is answered while a maximum-size one is still being worked on.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
import urllib.request

import pytest

from test_demo import EU, EU_MARKS, post, start_demo

MAX_CHARS = 20_000  # the server's --max-chars here: a maximum-size request takes seconds, not minutes
REQUEST_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(default_model_dir):
    with start_demo(default_model_dir, "--max-chars", str(MAX_CHARS), "--request-timeout", str(REQUEST_TIMEOUT_S)) \
            as (url, output):
        yield url, output
    assert "Traceback" not in output()


@pytest.fixture(scope="module")
def url(server):
    return server[0]


def healthy(url: str) -> dict:
    with urllib.request.urlopen(url + "healthz", timeout=30) as response:
        return json.loads(response.read())


def raw_request(url: str, data: bytes) -> bytes:
    """Send `data` on a fresh connection and return all the server sends back until it closes."""
    address = urllib.parse.urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def json_post(body: bytes, length: int | None = None) -> bytes:
    return (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % (len(body) if length is None else length)) + body


@pytest.mark.parametrize("body, problem", [
    (b"not json", "not JSON"),
    (b'{"txt": "EU"}', "text"),
    (b'{"text": 5}', "text"),
    (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"text": "Obama \\ud800"}', "lone surrogate"),
    (b'{"text": "Obama \xff"}', "not UTF-8"),
])
def test_bad_bodies_are_a_json_400(url, body, problem):
    """Each gets an answer (not a dropped connection), and the server goes on serving."""
    status, reply = post(url + "api/predict", body)
    assert status == 400 and problem in reply["error"], reply
    assert healthy(url)["ok"]


def test_too_long_texts_and_bodies_are_a_json_413(url):
    status, reply = post(url + "api/predict", json.dumps({"text": "Paris " * (MAX_CHARS // 6 + 1)}).encode())
    assert status == 413 and str(MAX_CHARS) in reply["error"]
    status, reply = post(url + "api/predict", b'{"text": "' + b"a" * 1_100_000 + b'"}')
    assert status == 413 and "bytes" in reply["error"]
    # chunked, with no Content-Length to go by: cut off once the bytes received pass the limit
    chunk = b"a" * 100_000
    body = b'{"text": "' + chunk * 11 + b'"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[i:i + 100_000] for i in
                                                                         range(0, len(body), 100_000))) + b"0\r\n\r\n"
    head = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
    reply = raw_request(url, head + chunked)
    assert reply.startswith(b"HTTP/1.1 413") and b'"error"' in reply


def test_host_header_not_in_the_allow_list_is_refused(url):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 must not reach the model."""
    port = urllib.parse.urlsplit(url).port
    status, reply = post(url + "api/predict", json.dumps({"text": EU}).encode(), headers={"Host": "evil.example"})
    assert status in (400, 403, 421) and "evil.example" in reply["error"]
    status, reply = post(url + "api/predict", json.dumps({"text": EU}).encode(), headers={"Host": f"localhost:{port}"})
    assert status == 200 and [(e["text"], e["type"]) for e in reply["entities"]] == EU_MARKS


def test_half_sent_requests_are_dropped_and_hold_nothing(url):
    address = urllib.parse.urlsplit(url)
    stalled = []
    for at in range(30):  # half the headers, or all of them and half the body
        sock = socket.create_connection((address.hostname, address.port), timeout=60)
        sock.sendall(json_post(b'{"text": "EU', length=100) if at % 2 else b"POST /api/predict HTTP/1.1\r\nHost: 127")
        stalled.append(sock)
    try:
        # meanwhile a whole request is answered at once
        status, reply = post(url + "api/predict", json.dumps({"text": EU}).encode())
        assert status == 200 and len(reply["entities"]) == 3
        for sock in stalled:  # and each stalled one is closed by the server (b"" or a reset), not left open
            try:
                leftover = sock.recv(65536)
            except ConnectionResetError:
                leftover = b""
            assert leftover == b"" or leftover.startswith(b"HTTP/1.1 4"), leftover
    finally:
        for sock in stalled:
            sock.close()


def test_small_request_is_not_stuck_behind_a_maximum_size_one(url, conll_sentences):
    sentences = [" ".join(s.words) for s in conll_sentences]
    big_text = ""
    while len(big_text) < MAX_CHARS - 300:
        big_text += sentences[len(big_text) % len(sentences)] + " "
    big_text = big_text[:MAX_CHARS]
    big_reply: dict = {}

    def send_big():
        big_reply["status"], big_reply["body"] = post(url + "api/predict", json.dumps({"text": big_text}).encode())

    big = threading.Thread(target=send_big)
    big.start()
    try:
        deadline = time.monotonic() + 60
        while healthy(url)["pending"] == 0 and big.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert big.is_alive(), "the big request finished before the small one was even sent"
        status, reply = post(url + "api/predict", json.dumps({"text": EU}).encode())
        small_done_while_big_running = big.is_alive()
        assert status == 200 and [(e["text"], e["type"]) for e in reply["entities"]] == EU_MARKS
    finally:
        big.join(timeout=300)
    assert small_done_while_big_running, "the small request waited for the whole big one"
    assert big_reply["status"] == 200 and big_reply["body"]["text"] == big_text
    entities = big_reply["body"]["entities"]
    assert len(entities) > 100 and all(big_text[e["start"]:e["end"]] == e["text"] for e in entities)
    assert all(a["end"] <= b["start"] for a, b in zip(entities, entities[1:]))
