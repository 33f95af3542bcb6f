"""The demo page as a user meets it: one command (`python -m apps.demo --port 0`), its JSON endpoint over
real HTTP, and a headless Chromium that types a sentence and finds the highlights.
(Limits, bad requests and fairness: tests/test_demo_server.py.)
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from convert.onnx_cache import ensure_onnx

ROOT = Path(__file__).resolve().parents[1]
EU = "EU rejects German call to boycott British lamb ."
EU_MARKS = [("EU", "ORG"), ("German", "MISC"), ("British", "MISC")]


def post(url: str, body: bytes, content_type: str = "application/json", headers: dict | None = None):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, **(headers or {})},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@contextmanager
def start_demo(model_dir, *args: str):
    """`python -m apps.demo --port 0 ARGS` as a user starts it; yields (URL it prints, its output so far)."""
    ensure_onnx(model_dir)  # exported once (and cached) outside the 60 s start-up wait below
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "apps.demo", "--model_dir", str(model_dir), "--port", "0", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    url, deadline = None, time.monotonic() + 120
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if line.startswith("NER demo on "):
            url = line.split()[3]

    def output() -> str:
        while not lines.empty():
            seen.append(lines.get())
        return "".join(seen)

    try:
        assert url, f"the demo did not start: {output()}"
        yield url, output
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(default_model_dir):
    """The demo on a free port, started as a user starts it."""
    with start_demo(default_model_dir) as (url, output):
        yield url
    assert "Traceback" not in output()


def test_api_predict(served):
    status, body = post(served + "api/predict", json.dumps({"text": EU}).encode())
    assert status == 200
    assert [(e["text"], e["type"]) for e in body["entities"]] == EU_MARKS
    assert all(EU[e["start"]:e["end"]] == e["text"] for e in body["entities"])
    assert body["html"].count('<mark class="entity"') == 3 and body["text"] == EU
    status, body = post(served + "api/predict", json.dumps({"text": "  "}).encode())
    assert status == 200 and body["entities"] == []


def test_api_rejects_bad_requests(served):
    assert post(served + "api/predict", b"not json")[0] == 400
    assert post(served + "api/predict", json.dumps({"txt": EU}).encode())[0] == 400
    assert post(served + "api/predict", json.dumps({"text": 5}).encode())[0] == 400
    assert post(served + "api/other", b"{}")[0] == 404
    with urllib.request.urlopen(served, timeout=10) as response:
        page = response.read().decode("utf-8")
    assert 'id="text"' in page and "mark.entity" in page and "/*ENTITY_CSS*/" not in page


def test_html_escaping(served):
    text = "<b>Paris</b> & <script>alert(1)</script> London"
    status, body = post(served + "api/predict", json.dumps({"text": text}).encode())
    assert status == 200 and "<script>" not in body["html"] and "<b>" not in body["html"]


@pytest.fixture
def demo_process(default_model_dir):
    """`python -m apps.demo --port 0` as a user starts it; yields the URL it prints."""
    with start_demo(default_model_dir) as (url, _):
        yield url


def test_demo_in_a_real_browser(demo_process, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from browser_support import full_page_screenshot, headless_chromium, keep_screenshot

    with headless_chromium(1100, 700) as driver:
        driver.get(demo_process)
        box = driver.find_element(By.ID, "text")
        box.send_keys(EU)
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-done"))
        marks = driver.find_elements(By.CSS_SELECTOR, "#output mark.entity")
        # a mark holds the entity's text, then a <span class="label"> with its type
        found = driver.execute_script("return Array.from(document.querySelectorAll('#output mark.entity'))"
                                      ".map(m => [m.firstChild.textContent, m.querySelector('.label').textContent])")
        assert [tuple(f) for f in found] == EU_MARKS
        assert all(m.is_displayed() and m.size["width"] > 10 for m in marks)
        assert driver.find_element(By.ID, "output").text.replace("\n", " ").startswith("EU")
        rows = driver.find_elements(By.CSS_SELECTOR, "#entity-table tbody tr")
        assert [[td.text for td in r.find_elements(By.TAG_NAME, "td")][:2] for r in rows] == [list(p) for p in EU_MARKS]
        assert driver.find_element(By.ID, "entity-table").is_displayed()
        assert "3 entities" in driver.find_element(By.ID, "status").text
        shot = full_page_screenshot(driver, tmp_path / "demo.png")
        # the same page again with blank text: no marks, no table, no error
        box.clear()
        box.send_keys("   ")
        done = driver.find_element(By.TAG_NAME, "body").get_attribute("data-done")
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-done") != done)
        assert driver.find_elements(By.CSS_SELECTOR, "#output mark.entity") == []
        assert not driver.find_element(By.ID, "entity-table").is_displayed()
        assert "0 entities" in driver.find_element(By.ID, "status").text
    assert shot.stat().st_size > 10_000
    keep_screenshot(shot)
