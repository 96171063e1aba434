"""Drive the real app: `streamlit run` + headless Debian Chromium through playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# url -> (server process, its log): what `wait_text` reports when the app does not answer.
_SERVERS: dict[str, tuple[subprocess.Popen, Path]] = {}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def require_browser() -> None:
    """Skip when Chromium is missing, unless FISHERLAB_BROWSER=required (CI): then fail."""
    if shutil.which(CHROMIUM) is None or not os.path.exists(CHROMIUM):
        if os.environ.get("FISHERLAB_BROWSER") == "required":
            pytest.fail("FISHERLAB_BROWSER=required but /usr/bin/chromium is missing")
        pytest.skip("Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(home: Path) -> Iterator[str]:
    """Start the app on a free port of 127.0.0.1 and yield its URL."""
    port = _free_port()
    env = {**os.environ, "FISHERLAB_HOME": str(home)}
    log_path = home.parent / "streamlit.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    # -X faulthandler: a SIGABRT from `wait_text` prints every thread's stack into the log
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "streamlit", "run", "app/main.py",
         "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("streamlit did not start: "
                                   + (home.parent / "streamlit.log").read_text()[-2000:])
            time.sleep(0.5)
        _SERVERS[url] = (proc, log_path)
        yield url
    finally:
        _SERVERS.pop(url, None)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1500):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def wait_idle(page, timeout_s: float = 120.0) -> None:
    """Wait until the script has finished and the page has settled (no skeletons, no status
    widget) for one second."""
    page.wait_for_selector('[data-testid="stApp"]')
    deadline = time.time() + timeout_s
    quiet_since = None
    while time.time() < deadline:
        state = page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state")
        busy = state != "notRunning" \
            or page.locator('[data-testid="stStatusWidget"]').count() > 0 \
            or page.locator('[data-testid="stSkeleton"]').count() > 0 \
            or page.locator('[data-testid="stAppSkeleton"]').count() > 0
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 1.0:
            page.wait_for_load_state("networkidle")
            return
        time.sleep(0.2)
    raise TimeoutError(f"the app did not become idle (script state {state!r})")


def wait_text(page, text: str, timeout_s: float) -> None:
    """Wait until ``text`` is visible; on a timeout fail with what the page shows, the app's
    log and the stack of every server thread (so a hang in CI can be read, not guessed)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(text).first.wait_for(timeout=timeout_s * 1000)
        return
    except PlaywrightTimeout:
        pass
    shown = page.locator('[data-testid="stApp"]').inner_text(timeout=10_000)[-3000:]
    origin = "/".join(page.url.split("/")[:3])
    stacks = "(server not found)"
    if origin in _SERVERS:
        proc, log_path = _SERVERS[origin]
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        stacks = log_path.read_text(errors="replace")[-12000:]
    pytest.fail(f"{text!r} did not appear within {timeout_s:.0f} s.\n--- the page shows:\n"
                f"{shown}\n--- the app's log and thread stacks:\n{stacks}", pytrace=False)


def assert_no_exception(page, where: str) -> None:
    n = page.locator('[data-testid="stException"]').count()
    assert n == 0, f"{where}: {page.locator('[data-testid=stException]').first.inner_text()}"


def open_with_builtin(page, url: str, dataset: str, sidebar_page: str) -> None:
    """Load built-in ``dataset`` on the Data page, then open ``sidebar_page`` by its link
    (a click keeps the session, so the loaded dataset stays current)."""
    page.goto(f"{url}/data")
    wait_idle(page)
    page.get_by_label("Dataset", exact=True).click()
    page.get_by_role("option", name=dataset).click()
    page.get_by_role("button", name="Load").first.click()
    wait_idle(page)
    page.get_by_text(sidebar_page, exact=True).first.click()
    wait_idle(page)
