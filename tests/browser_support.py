"""Test support: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium: the browser tests'
and the screenshots' one way to open a page.

`scripts/install_browser.sh` installs the two packages and records the outcome in
`STATUS_FILE`; `availability()` reads it, so a test can tell "the package manager was
unreachable" (skip, with that reason) from "it should be here and is not" (fail).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
STATUS_FILE = Path(os.environ.get("NER_BROWSER_STATUS", Path(tempfile.gettempdir()) / "ner-install-browser.status"))
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
         "--hide-scrollbars", "--force-device-scale-factor=1")


def find_binaries() -> tuple[Optional[str], Optional[str]]:
    chromium = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    return chromium, shutil.which(CHROMEDRIVER)


def availability() -> tuple[bool, str]:
    """(usable, why not): usable when selenium, chromium and chromedriver are all here.

    When something is missing, the reason says so and whether the install script found the
    package manager unreachable (its status line starts with `unreachable`)."""
    chromium, driver = find_binaries()
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -r requirements-dev.txt)")
    if not missing:
        return True, ""
    try:
        status = STATUS_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        status = "scripts/install_browser.sh has not run on this machine"
    return False, f"{', '.join(missing)} not installed; install status: {status}"


def apt_unreachable() -> bool:
    """True when the install script recorded that apt could not be reached (or used) here."""
    try:
        return STATUS_FILE.read_text(encoding="utf-8").startswith("unreachable")
    except OSError:
        return False


@contextmanager
def headless_chromium(width: int = 1280, height: int = 1000) -> Iterator["object"]:
    """A Selenium WebDriver on a fresh profile; the profile folder is removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = find_binaries()
    if not chromium or not driver_path:
        raise RuntimeError(availability()[1])
    profile = tempfile.mkdtemp(prefix="ner-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_screenshot(driver, path) -> Path:
    """Resize the window to the page's height, then save a PNG of it."""
    height, chrome = driver.execute_script(
        "return [Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),"
        " window.outerHeight - window.innerHeight]")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(int(height) + int(chrome) + 20, 8000))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path


def keep_screenshot(shot) -> None:
    """Also copy a screenshot into $NER_SCREENSHOTS when set (how docs/screenshots/ is made)."""
    folder = os.environ.get("NER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / Path(shot).name)
