"""The real app in headless Chromium: every page renders without an exception; upload works."""

from __future__ import annotations

import io
import os
import shutil
import time

import numpy as np
import pytest

from .browser import (
    assert_no_exception,
    browser_page,
    open_with_builtin,
    require_browser,
    streamlit_server,
    wait_idle,
    wait_text,
)

pytestmark = pytest.mark.browser

PAGES = ["", "data", "train", "embeddings", "classify"]  # url paths; "" is Home


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
        _embeddings_flow(page, url, tmp_path)
        _decoded_space(home)
        _slider_flow(page, url, tmp_path, "interpolate", "α (0 = A")
        _slider_flow(page, url, tmp_path, "manipulate", "Strength of")
        _train_flow(page, url, tmp_path)
        _gmm_flow(page, tmp_path)
        if shots:
            for name in ("home", "data", "embeddings-umap", "embeddings-selection",
                         "interpolate", "manipulate", "train", "train-gmm"):
                shutil.copy(tmp_path / f"{name}.png", os.path.join(shots, f"{name}.png"))


def _lasso(page, box) -> None:
    """Draw a lasso polygon over the middle of a plotly chart's drawing area."""
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    path = [(0.03, 0.03), (0.6, 0.03), (0.6, 0.97), (0.03, 0.97), (0.03, 0.05)]
    page.mouse.move(x0 + w * path[0][0], y0 + h * path[0][1])
    page.mouse.down()
    for fx, fy in path[1:]:
        page.mouse.move(x0 + w * fx, y0 + h * fy, steps=8)
    page.mouse.up()


def _embeddings_flow(page, url, tmp_path) -> None:
    """Faces: compute GMM Fisher vectors, wait for UMAP, lasso-select, see the images."""
    page.goto(f"{url}/embeddings")
    wait_idle(page)
    page.get_by_role("button", name="Compute Fisher vectors").click()
    # The PCA preview comes first; the UMAP view replaces it when the background job ends.
    wait_text(page, "UMAP of", 120)
    wait_idle(page)
    assert_no_exception(page, "embeddings")
    page.screenshot(path=str(tmp_path / "embeddings-umap.png"), full_page=True)
    page.locator('[data-testid="stPlotlyChart"] [data-title="Lasso Select"]').first.click()
    chart = page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first
    _lasso(page, chart.bounding_box())
    wait_text(page, "selected (first 40 shown)", 60)
    wait_idle(page)
    assert_no_exception(page, "embeddings selection")
    page.screenshot(path=str(tmp_path / "embeddings-selection.png"), full_page=True)


def _set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def _train_flow(page, url, tmp_path) -> None:
    """Digits: train a small PixelCNN for two epochs; the run view and saved list update."""
    open_with_builtin(page, url, "digits", "Train")
    for label, value in [("feature maps", 8), ("Epochs", 1)]:
        _set_number(page, label, value)
    page.get_by_role("button", name="Train", exact=True).click()
    wait_text(page, "Saved model digits-pixelcnn", 300)
    wait_idle(page)
    assert_no_exception(page, "train")
    assert page.get_by_text("samples at its last epoch").count() == 1
    page.screenshot(path=str(tmp_path / "train.png"), full_page=True)


def _gmm_flow(page, tmp_path) -> None:
    """Digits (still current after the train flow): fit a patch GMM by EM, then choose K."""
    page.get_by_label("Model family").click()
    page.get_by_role("option", name="gmm", exact=True).click()
    wait_idle(page)
    assert page.get_by_text("fitted by EM, not by gradient steps").count() == 1
    _set_number(page, "GMM components K", 8)
    page.get_by_role("button", name="Fit", exact=True).click()
    wait_text(page, "Saved model digits-gmm", 300)
    wait_idle(page)
    page.get_by_text("Choose K: held-out log-likelihood and BIC").click()
    page.get_by_role("button", name="Run the sweep").click()
    wait_text(page, "Best K:", 300)
    wait_idle(page)
    assert_no_exception(page, "gmm")
    page.screenshot(path=str(tmp_path / "train-gmm.png"), full_page=True)


def _decoded_space(home) -> None:
    """Give the running app a decoded space: faces pixels and a quickly trained decoder."""
    from fisher_core import Workspace, load_builtin
    from fisher_core.embeddings import pixel_embedding
    from fisher_core.workspace import train_embedding_decoder

    ws, ds = Workspace(home), load_builtin("faces")
    ws.save_embedding(pixel_embedding(ds, dataset_key="builtin:faces"), "faces-pixels")
    train_embedding_decoder(ws, "faces-pixels", ds, epochs=1, max_seconds=15, hidden=32,
                            base_channels=8)


def _image_sources(page) -> list[str]:
    imgs = page.locator('[data-testid="stImage"] img')
    return [imgs.nth(i).get_attribute("src") for i in range(imgs.count())]


def _slider_flow(page, url, tmp_path, name: str, slider_label: str) -> None:
    """Move the page's main slider with the keyboard; the decoded images must change."""
    page.goto(f"{url}/{name}")
    wait_idle(page)
    assert_no_exception(page, name)
    before = _image_sources(page)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=slider_label) \
        .get_by_role("slider").first
    thumb.focus()
    for _ in range(6):
        thumb.press("ArrowLeft")
    wait_idle(page)
    assert_no_exception(page, f"{name} slider")
    after = _image_sources(page)
    assert len(after) == len(before) and after != before, f"{name}: nothing changed"
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def test_work_is_never_lost_in_browser(tmp_path):
    """Issue 15, each defect reproduced as a person meets it: the family switch, the stale
    save name, a reload, the flat-grey decoder, and a UMAP click choosing an end point."""
    require_browser()
    home = tmp_path / "ws"
    home.mkdir()
    with streamlit_server(home) as url, browser_page() as page:
        # The save box follows the loaded dataset (it used to keep the previous name).
        open_with_builtin(page, url, "digits", "Data")
        assert page.get_by_label("Name").input_value() == "digits"
        # A reload keeps the dataset (it used to fall back to the faces).
        page.reload()
        wait_idle(page)
        assert page.get_by_text("Current dataset: digits").count() == 1
        assert "dataset=builtin" in page.url
        # Switching the model family starts from that family's defaults and name.
        page.get_by_text("Train", exact=True).first.click()
        wait_idle(page)
        _set_number(page, "Epochs", 1)
        page.get_by_label("Model family").click()
        page.get_by_role("option", name="vae", exact=True).click()
        wait_idle(page)
        assert page.get_by_label("Save as").input_value() == "digits-vae"
        assert page.get_by_label("Epochs", exact=True).input_value() == "9"
        assert_no_exception(page, "train family switch")
        # A decoder that learned nothing is flagged where it is used.
        _grey_decoder(home)
        page.get_by_text("Interpolate", exact=True).first.click()
        wait_idle(page)
        assert page.get_by_text("trained for no complete epoch").count() >= 1
        assert_no_exception(page, "interpolate with a weak decoder")
        page.screenshot(path=str(tmp_path / "weak-decoder.png"), full_page=True)
        # Clicking a UMAP point hands it to Interpolate as image A.
        page.get_by_text("Embeddings", exact=True).first.click()
        wait_idle(page)
        page.get_by_text("Compute a new embedding").click()  # folded: an embedding exists
        page.get_by_role("button", name="Compute Fisher vectors").click()
        wait_text(page, "UMAP of", 120)
        wait_idle(page)
        point = page.locator('[data-testid="stPlotlyChart"] .scatterlayer path.point').nth(40)
        box = point.bounding_box()
        page.mouse.move(box["x"] - 10, box["y"] - 10)  # plotly clicks the hovered point
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
        page.mouse.down()
        page.mouse.up()
        page.get_by_role("button", name="As A", exact=True).wait_for(timeout=60_000)
        wait_idle(page)
        clicked = page.get_by_text("Picked #").first.inner_text()
        index = int(clicked.split("#")[1].split(" ")[0])
        page.get_by_role("button", name="As A", exact=True).click()
        wait_idle(page)
        page.get_by_text("Interpolate", exact=True).first.click()
        wait_idle(page)
        assert page.get_by_label("Image A (index)").input_value() == str(index)
        assert_no_exception(page, "interpolate after a click")


def _grey_decoder(home) -> None:
    """A decoder of the digits' pixels stopped by its time cap before one epoch."""
    from fisher_core import Workspace, load_builtin
    from fisher_core.embeddings import pixel_embedding
    from fisher_core.workspace import train_embedding_decoder

    ws, ds = Workspace(home), load_builtin("digits")
    ws.save_embedding(pixel_embedding(ds, dataset_key="builtin:digits"), "digits-pixels")
    train_embedding_decoder(ws, "digits-pixels", ds, epochs=1, max_seconds=1e-9, hidden=16,
                            base_channels=4)


def test_training_survives_a_server_restart(tmp_path):
    """Issue 15: a killed server lost the running training job. Its checkpoints now live in
    the workspace; after a restart the Train page offers to resume it, and it finishes."""
    require_browser()
    home = tmp_path / "ws"
    home.mkdir()
    ckpt = home / "checkpoints" / "digits-pixelcnn" / "checkpoint.json"
    with streamlit_server(home) as url, browser_page() as page:
        open_with_builtin(page, url, "digits", "Train")
        for label, value in [("feature maps", 8), ("Epochs", 12)]:  # outlasts the restart
            _set_number(page, label, value)
        page.get_by_role("button", name="Train", exact=True).click()
        deadline = time.time() + 240
        while not ckpt.exists():  # the first epoch is checkpointed
            assert time.time() < deadline, "no checkpoint after 240 s"
            time.sleep(0.5)
    # the server is gone mid-run; a new one opens the same workspace
    with streamlit_server(home) as url, browser_page() as page:
        open_with_builtin(page, url, "digits", "Train")
        assert page.get_by_text("Interrupted runs").count() == 1
        page.screenshot(path=str(tmp_path / "resume.png"), full_page=True)
        page.get_by_role("button", name="Resume").click()
        wait_text(page, "Saved model digits-pixelcnn", 400)
        wait_idle(page)
        assert_no_exception(page, "resumed training")
        assert page.get_by_text("Interrupted runs").count() == 0
    assert not ckpt.parent.exists()
