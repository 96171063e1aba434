"""The real app in headless Chromium: every page renders without an exception; upload works."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest

from .browser import (
    assert_no_exception,
    browser_page,
    require_browser,
    streamlit_server,
    wait_idle,
)

pytestmark = pytest.mark.browser

PAGES = ["", "data"]  # url paths; "" is Home


def _npz(path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, images=rng.integers(0, 256, (20, 12, 12), dtype=np.uint8),
             labels=np.arange(20) % 2, class_names=np.array(["left", "right"]))
    path.write_bytes(buf.getvalue())
    return path


def test_app_in_browser(tmp_path):
    require_browser()
    home = tmp_path / "ws"
    home.mkdir()
    shots = os.environ.get("FISHERLAB_SCREENSHOTS")
    with streamlit_server(home) as url, browser_page() as page:
        for path in PAGES:
            page.goto(f"{url}/{path}")
            wait_idle(page)
            assert_no_exception(page, path or "home")
            page.screenshot(path=str(tmp_path / f"{path or 'home'}.png"), full_page=True)
        # On the Data page: switch to Upload and upload a file.
        page.goto(f"{url}/data")
        wait_idle(page)
        page.get_by_text("Upload", exact=True).click()
        wait_idle(page)
        page.locator('input[type="file"]').set_input_files(str(_npz(tmp_path / "tiny.npz")))
        wait_idle(page)
        assert_no_exception(page, "data upload")
        assert page.get_by_text("Current dataset: tiny").count() == 1
        page.screenshot(path=str(tmp_path / "data-upload.png"), full_page=True)
        if shots:
            for name in ("home", "data"):
                shutil.copy(tmp_path / f"{name}.png", os.path.join(shots, f"{name}.png"))
