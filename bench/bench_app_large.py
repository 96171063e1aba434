"""The app with 100,000 images, in a real browser: what a person waits for (issue 20).

    python bench/bench_app_large.py [--n 100000] [--workspace DIR] [--screenshot FILE]

Builds (once, cached in ``--workspace``) the built-in faces at 32×32 with N images, saved
to the workspace, and their Fisher vectors under a patch GMM trained on 2,000 of them
(extracted chunk by chunk). Then starts ``streamlit run app/main.py`` on that workspace and
drives headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright):

1. Data page: load the saved dataset → idle;
2. Embeddings page: → idle with the PCA preview drawn (UMAP starts in the background);
3. → the UMAP scatter drawn (WebGL above 5,000 points);
4. colour by an attribute → chart redrawn, idle;
5. another query image for the Fisher-kernel neighbours (a rerun with the 100k-point chart
   on the page) → idle;
6. a rerun with nothing changed (the page's "Rerun" key, R) → idle.

Times are wall-clock from the action to the page settling (no running script, no skeleton,
one quiet second, which is included: subtract 1 s for the work itself).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.browser import browser_page, streamlit_server, wait_idle  # noqa: E402


def build_workspace(home: Path, n: int) -> None:
    """Dataset ``faces<n>`` and its Fisher-vector embedding, if missing."""
    from fisher_core import Workspace, load_builtin
    from fisher_core.workspace import chunked_embedding, train_and_save

    ws = Workspace(home)
    name = f"faces{n}"
    if not ws.exists("datasets", name):
        t0 = time.perf_counter()
        ws.save_dataset(load_builtin("faces", n=n, size=32), name)
        print(f"  rendered and saved {n:,} faces in {time.perf_counter() - t0:.0f} s")
    if not ws.exists("embeddings", f"{name}-fv"):
        train = load_builtin("faces", n=2000, size=32, seed=1)
        run = train_and_save(train, "gmm", config={"n_components": 16, "pca": 24}, epochs=1,
                             workspace=ws, name="gmm", dataset_key=f"workspace:{name}",
                             monitor=False)
        chunked_embedding(ws, f"{name}-fv", ws.dataset_rows(name), "fisher_vector",
                          model=run.model, model_name="gmm", dataset_key=f"workspace:{name}")
        print("  Fisher vectors extracted")


def timed(page, action, *, timeout_s: float = 600.0) -> float:
    t0 = time.perf_counter()
    action()
    wait_idle(page, timeout_s=timeout_s)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workspace", default=None)
    ap.add_argument("--screenshot", default=None, help="PNG of the Embeddings page at the end")
    args = ap.parse_args()
    home = Path(args.workspace or tempfile.mkdtemp(prefix="fisherlab-large-")) / "ws"
    home.mkdir(parents=True, exist_ok=True)
    build_workspace(home, args.n)
    rows = []
    with streamlit_server(home) as url, browser_page(height=1600) as page:
        page.goto(f"{url}/data")
        wait_idle(page)
        page.get_by_text("Workspace", exact=True).click()
        wait_idle(page)
        page.get_by_label("Saved dataset").click()
        page.get_by_role("option", name=f"faces{args.n}").click()
        rows.append(("Data page: load the saved dataset",
                     timed(page, lambda: page.get_by_role("button", name="Load").first.click())))
        rows.append(("Embeddings page → PCA preview drawn (UMAP starts)",
                     timed(page, lambda: page.get_by_text("Embeddings", exact=True)
                           .first.click())))
        t0 = time.perf_counter()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.gtitle')]"
            ".some(t => t.textContent.startsWith('UMAP of'))", timeout=900_000, polling=500)
        wait_idle(page)
        rows.append(("… → UMAP scatter drawn (background job)", time.perf_counter() - t0))
        webgl = page.locator(".js-plotly-plot canvas").count() > 0

        def colour():
            page.get_by_label("Colour by").click()
            page.get_by_role("option", name="smiling").click()
        rows.append(("colour by an attribute → redrawn", timed(page, colour)))

        def query():
            box = page.get_by_label("Query image (index)")
            box.fill(str(args.n // 2 + 123))
            box.press("Enter")
        rows.append(("another neighbour query (rerun with the chart)", timed(page, query)))

        def rerun():
            page.locator("body").press("r")
        rows.append(("rerun, nothing changed", timed(page, rerun)))
        if args.screenshot:
            page.screenshot(path=args.screenshot, full_page=False)
    print(f"\n{args.n:,} images, WebGL scatter: {webgl}\n")
    print("| action | wall s (incl. 1 s of quiet) |\n|---|---:|")
    for what, seconds in rows:
        print(f"| {what} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
