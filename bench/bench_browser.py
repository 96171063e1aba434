"""What a person waits for in the real app: first render, and slider key-press → drawn images.

    python bench/bench_browser.py [--moves 20] [--workspace DIR]

Builds a workspace with four decoded faces spaces (pixels and three Fisher-vector
embeddings, each with a briefly trained decoder: latency depends on the decoder's size, not
on its quality), starts ``streamlit run app/main.py`` on it, and drives headless Chromium
(Debian's ``/usr/bin/chromium`` through Playwright):

1. cold start: from the server answering to the Home page's first content, and to idle;
2. Interpolate and Manipulate: focus the slider, press an arrow key, and time (in the
   browser's own clock) until every decoded image of the fragment has a new source and has
   loaded. ``--moves`` presses per page, after two warm-up presses; median, p90 and max.

Target (issue 15): ≤ 200 ms for a slider move with 4 spaces on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.browser import browser_page, streamlit_server, wait_idle  # noqa: E402

KEY = "builtin:faces"
CHANGED = """([before]) => {
  const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
  const now = imgs.map(i => i.getAttribute('src'));
  const fresh = now.filter(s => !before.includes(s));
  return fresh.length >= %d && imgs.every(i => i.complete) ? performance.now() : false;
}"""


def build_workspace(home: Path) -> None:
    """Four faces embeddings with decoders, as the app's pages expect them."""
    from fisher_core import Workspace, load_builtin
    from fisher_core.embeddings import fisher_vector_embedding, pixel_embedding
    from fisher_core.workspace import train_embedding_decoder

    ws, ds = Workspace(home), load_builtin("faces")
    ws.save_dataset(ds, "faces")
    spaces = {"faces-pixels": pixel_embedding(ds, dataset_key=KEY)}
    for k in (8, 16, 32):
        emb, _ = fisher_vector_embedding(ds, n_components=k, pca=16, dataset_key=KEY)
        spaces[f"faces-fv-k{k}"] = emb
    for name, emb in spaces.items():
        ws.save_embedding(emb, name)
        train_embedding_decoder(ws, name, ds, epochs=1, max_seconds=20)
        print(f"  {name}: {emb.dim} dims, decoder trained", flush=True)


def slider_latency(page, url: str, path: str, label: str, n_images: int, moves: int
                   ) -> list[float]:
    page.goto(f"{url}/{path}")
    wait_idle(page)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=label) \
        .get_by_role("slider").first
    thumb.focus()
    times = []
    for k in range(moves + 2):
        before = page.eval_on_selector_all('[data-testid="stImage"] img',
                                           "els => els.map(e => e.getAttribute('src'))")
        t0 = page.evaluate("performance.now()")
        thumb.press("ArrowLeft" if k % 2 else "ArrowRight")
        t1 = page.wait_for_function(CHANGED % n_images, arg=[before], polling="raf",
                                    timeout=30_000).json_value()
        if k >= 2:  # the first two presses warm caches up
            times.append(t1 - t0)
        time.sleep(0.3)
    return times


def cold_start(home: Path) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    with streamlit_server(home) as url, browser_page() as page:
        answered = time.perf_counter() - t0
        t1 = time.perf_counter()
        page.goto(url)
        page.wait_for_selector('[data-testid="stMarkdown"]', timeout=120_000)
        first = time.perf_counter() - t1
        wait_idle(page)
        return answered, first, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--workspace", default=None)
    args = ap.parse_args()
    home = Path(args.workspace or tempfile.mkdtemp(prefix="fisherlab-bench-")) / "ws"
    if not (home / "decoders").is_dir():
        print("building the workspace (four decoded faces spaces)…", flush=True)
        home.mkdir(parents=True, exist_ok=True)
        build_workspace(home)
    answered, first, idle = cold_start(home)
    with streamlit_server(home) as url, browser_page() as page:
        page.goto(f"{url}/data")  # load the faces in this session (the spaces' dataset)
        wait_idle(page)
        rows = []
        for path, label, n in [("interpolate", "α (0 = A", 4), ("manipulate", "Strength of", 16)]:
            t = slider_latency(page, url, path, label, n, args.moves)
            q = statistics.quantiles(t, n=10)
            rows.append((path, statistics.median(t), q[-1], max(t), len(t)))
    print("\n| what | median | p90 | max | n |\n|---|---:|---:|---:|---:|")
    print(f"| server answering → Home's first content (cold process) | {first * 1000:.0f} ms "
          f"| | | 1 |")
    print(f"| server answering → Home idle (cold process) | {idle * 1000:.0f} ms | | | 1 |")
    for path, med, p90, mx, n in rows:
        what = "4 spaces" if path == "interpolate" else "4 sources × 4 spaces"
        print(f"| {path} slider, key press → {what} drawn "
              f"| {med:.0f} ms | {p90:.0f} ms | {mx:.0f} ms | {n} |")
    print(f"\n(server start to answering: {answered:.1f} s)")


if __name__ == "__main__":
    main()
