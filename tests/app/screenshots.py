"""README screenshots of the app on a workspace with trained models and decoders.

    .venv/bin/python bench/eval_faces.py --workspace /tmp/evalws      # trained spaces
    .venv/bin/python bench/eval_afv.py --workspace /tmp/evalws        # AFV, D-pool, ...
    .venv/bin/python -m tests.app.screenshots /tmp/evalws assets/

Starts the app on a copy of the workspace (nothing in it is changed) in headless Chromium
and saves full-page PNGs of the Interpolate, Manipulate, Classify and Metrics pages. Not a
test (pytest does not collect it); the browser test checks that the same pages work.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from .browser import (
    assert_no_exception,
    browser_page,
    open_with_builtin,
    streamlit_server,
    wait_idle,
)

# The four spaces of the README's evaluation, drawn side by side.
SPACES = ["faces-pixelcnn-fisher-sparse512", "faces-pixelcnn-act-none",
          "faces-pixelcnn-act-mean", "faces-pixels"]


# Streamlit scrolls inside the page, so a full-page shot is only as tall as the viewport.
HEIGHTS = {"interpolate": 1900, "manipulate": 2600, "classify": 1600, "metrics": 4200}


def _copy_workspace(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    for folder in (dst / "decoders").iterdir():
        if folder.name not in SPACES:
            shutil.rmtree(folder)
    for folder in (dst / "embeddings").iterdir():  # the ablation's variants
        if folder.name.startswith("faces-pixelcnn-fisher") and folder.name not in SPACES:
            shutil.rmtree(folder)


def main(src: str, out: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        _copy_workspace(Path(src), home)
        with streamlit_server(home) as url, browser_page(width=1400, height=2200) as page:
            for name, height in HEIGHTS.items():
                page.set_viewport_size({"width": 1400, "height": height})
                page.goto(f"{url}/{name}")
                wait_idle(page)
                assert_no_exception(page, name)
                if name == "interpolate":
                    thumb = page.locator('[data-testid="stSlider"]').filter(
                        has_text="α (0 = A").get_by_role("slider").first
                    thumb.focus()
                    for _ in range(3):
                        thumb.press("ArrowRight")
                    wait_idle(page)
                page.screenshot(path=str(out_dir / f"{name}.png"), full_page=True)
                print(f"saved {out_dir / name}.png", flush=True)
            _digits_afv_heatmap(page, url, out_dir)


def _digits_afv_heatmap(page, url: str, out_dir: Path) -> None:
    """Digits on the Metrics page, class distances of the AFV embedding (Zhai et al. Fig.)."""
    page.set_viewport_size({"width": 1400, "height": 3000})
    open_with_builtin(page, url, "digits", "Metrics")
    page.get_by_label("Embedding", exact=True).click()
    page.get_by_role("option", name="digits-ebgan-afv").first.click()
    wait_idle(page)
    assert_no_exception(page, "metrics (digits)")
    page.screenshot(path=str(out_dir / "metrics-digits.png"), full_page=True)
    print(f"saved {out_dir / 'metrics-digits.png'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
