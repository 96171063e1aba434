"""Benchmark: memory and time against the number of images (issue 20).

    python bench/bench_scale.py                      # everything (about 15 min on 2 cores)
    python bench/bench_scale.py --part rss --sizes 10000,30000,100000
    python bench/bench_scale.py --part umap --umap-sizes 1000,3000,10000,30000,100000
    python bench/bench_scale.py --part import --import-size 100000

Every measurement runs in a fresh Python process (``--child``), so its peak RSS
(``VmHWM``) is its own; the table gives it with the process's RSS right after its imports
(the floor), and the growth between the smallest and the largest N.

- ``rss``: chunked extraction into the workspace (:func:`fisher_core.workspace.chunked_embedding`,
  2,048 images a chunk) of N 32×32 grey images — Fisher scores of a small PixelCNN (sparse
  projection 512, centred, diagonal FIM: two passes over the parts) and Fisher vectors of a
  trained patch GMM (K = 16, PCA-24 patches). Target: peak RSS grows ≤ 10 % from 10k to 100k.
- ``umap``: :func:`fisher_core.explore.reduce.umap_embed` (the app's settings: PCA to 50, 15
  neighbours, 200 epochs) of the first N rows of the 100k Fisher-score embedding; numba's
  compilation is done first on a tiny problem and not counted. Figure: ``--figure``.
- ``import``: a zip of N PNG images of 32×32 streamed into the workspace
  (:func:`fisher_core.workspace.import_dataset`, what ``fisherlab data import`` does), and
  the in-memory way for comparison (:func:`fisher_core.data.load_file`, then
  ``Workspace.save_dataset``); the same for a float32 ``.npy`` of the same images (converted
  in two passes: a scan, then the conversion; stored as uint8, their values being 8-bit).

The images are the built-in faces (3,000 rendered, then each drawn at random with a one-pixel
shift and noise, quantised to 8 bits). Data, models and zips are cached in ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MiB: VmRSS and VmHWM, which start
    afresh at exec (``ru_maxrss`` would carry the parent's peak over)."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def _images(n: int, seed: int = 0) -> np.ndarray:
    from fisher_core.data import load_builtin

    base = load_builtin("faces", n=3000, size=32).images  # (3000, 1, 32, 32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, 1, 32, 32), dtype=np.float32)
    for s in range(0, n, 10_000):
        k = min(n, s + 10_000) - s
        pick = base[rng.integers(len(base), size=k)]
        shift = rng.integers(-1, 2, size=2)
        pick = np.roll(pick, tuple(shift), axis=(2, 3))
        noisy = pick + rng.normal(scale=0.02, size=pick.shape).astype(np.float32)
        out[s:s + k] = np.round(np.clip(noisy, 0, 1) * 255) / 255
    return out


def setup(workdir: Path, sizes: list[int], import_size: int | None) -> None:
    """Datasets d<N>, models px (PixelCNN) and gmm (patch GMM), and the zip, if missing."""
    import torch

    from fisher_core.data import ImageDataset
    from fisher_core.workspace import Workspace, train_and_save

    ws = Workspace(workdir / "ws")
    for n in sizes:
        if not ws.exists("datasets", f"d{n}"):
            ws.save_dataset(ImageDataset(_images(n), name=f"faces-{n}"), f"d{n}")
    train = ImageDataset(_images(2000, seed=1), name="faces-train")
    torch.manual_seed(0)
    if not ws.exists("models", "px"):
        train_and_save(train, "pixelcnn", config={"hidden": 16, "n_blocks": 2,
                                                  "head_hidden": 16},
                       epochs=1, workspace=ws, name="px", dataset_key="faces", monitor=False)
    if not ws.exists("models", "gmm"):
        train_and_save(train, "gmm", config={"n_components": 16, "pca": 24}, epochs=1,
                       workspace=ws, name="gmm", dataset_key="faces", monitor=False)
    if import_size:
        path = workdir / f"faces-{import_size}.zip"
        if not path.exists():
            _write_zip(path, _images(import_size, seed=2))
        path = workdir / f"faces-{import_size}.npy"
        if not path.exists():
            np.save(path.with_suffix(".tmp.npy"), _images(import_size, seed=2))
            path.with_suffix(".tmp.npy").replace(path)


def _write_zip(path: Path, images: np.ndarray) -> None:
    import io
    import zipfile

    from PIL import Image

    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for i, im in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray(np.round(im[0] * 255).astype(np.uint8)).save(buf, format="PNG")
            z.writestr(f"faces/{i:06d}.png", buf.getvalue())
    tmp.replace(path)


# a float32 .npy of 100k 32×32 images is 400 MB, above the 200 MB default of max_bytes
_LIMITS = {"max_bytes": 1 << 31, "max_uncompressed_bytes": 1 << 31}


def child(task: str, n: int, workdir: Path) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    from fisher_core.workspace import Workspace, chunked_embedding, load_saved_model

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    ws = Workspace(workdir / "ws")
    floor = _rss_mib()[0]
    if task in ("scores", "fv"):
        name = {"scores": "px", "fv": "gmm"}[task]
        model = load_saved_model(ws, name)[0]
        kind = {"scores": "fisher_scores", "fv": "fisher_vector"}[task]
        rows = ws.dataset_rows(f"d{n}")
        t0 = time.perf_counter()
        emb = chunked_embedding(ws, f"{task}{n}", rows, kind, model=model, model_name=name,
                                options={"dim": 512} if task == "scores" else {},
                                chunk_rows=2048, dataset_key=f"workspace:d{n}")
        seconds, dim = time.perf_counter() - t0, emb.dim
    elif task == "umap":
        from fisher_core.explore.reduce import umap_embed, warmup_umap

        warmup_umap()
        source = ws.load_embedding(os.environ.get("BENCH_UMAP_SOURCE", "scores100000"))
        x = np.array(source.vectors[:n])
        floor = _rss_mib()[0]
        t0 = time.perf_counter()
        umap_embed(x)
        seconds, dim = time.perf_counter() - t0, x.shape[1]
    elif task in ("import", "import-npy"):  # streamed: what `fisherlab data import` does
        from fisher_core.workspace import import_dataset

        path = workdir / f"faces-{n}.{'npy' if task == 'import-npy' else 'zip'}"
        t0 = time.perf_counter()
        entry = import_dataset(ws, path, f"imported{n}", **_LIMITS)
        seconds, dim = time.perf_counter() - t0, int(np.prod(entry.meta["summary"]["shape"]))
    elif task in ("import-memory", "import-npy-memory"):  # load_file, then save_dataset
        from fisher_core.data import load_file

        path = workdir / f"faces-{n}.{'npy' if task == 'import-npy-memory' else 'zip'}"
        t0 = time.perf_counter()
        ds = load_file(str(path), **_LIMITS)
        ws.save_dataset(ds, f"imported{n}")
        seconds, dim = time.perf_counter() - t0, int(np.prod(ds.shape))
    else:
        raise SystemExit(f"unknown task {task!r}")
    return {"task": task, "n": n, "seconds": seconds, "floor_mib": floor,
            "peak_mib": _rss_mib()[1], "dim": dim}


def run_child(task: str, n: int, workdir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", task, str(n),
                          "--workdir", str(workdir)], capture_output=True, text=True,
                         check=False, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    if out.returncode != 0:
        raise SystemExit(f"child {task} {n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", default="all", choices=["all", "rss", "umap", "import"])
    p.add_argument("--sizes", default="10000,30000,100000")
    p.add_argument("--umap-sizes", default="1000,3000,10000,30000,100000")
    p.add_argument("--import-size", type=int, default=100_000)
    p.add_argument("--workdir", default="/tmp/fisherlab-bench-scale")
    p.add_argument("--figure", default="assets/umap_scaling.png")
    p.add_argument("--child", nargs=2, metavar=("TASK", "N"))
    args = p.parse_args()
    workdir = Path(args.workdir)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), workdir)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    umap_sizes = [int(s) for s in args.umap_sizes.split(",")]
    parts = ["rss", "umap", "import"] if args.part == "all" else [args.part]
    setup(workdir, sorted(set(sizes + ([max(umap_sizes)] if "umap" in parts else []))),
          args.import_size if "import" in parts else None)
    rows = []
    if "rss" in parts:
        for task in ("fv", "scores"):
            for n in sizes:
                rows.append(run_child(task, n, workdir))
                print(json.dumps(rows[-1]), flush=True)
    if "umap" in parts:
        if "rss" not in parts or max(umap_sizes) not in sizes:
            run_child("scores", max(umap_sizes), workdir)  # the source embedding
        for n in umap_sizes:
            rows.append(run_child("umap", n, workdir))
            print(json.dumps(rows[-1]), flush=True)
    if "import" in parts:
        for task in ("import", "import-memory", "import-npy", "import-npy-memory"):
            rows.append(run_child(task, args.import_size, workdir))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| task | N | seconds | RSS after imports (MiB) | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    label = {"fv": "Fisher vectors (patch GMM K=16), chunked", "umap": "UMAP (app settings)",
             "scores": "Fisher scores (PixelCNN, sparse 512), chunked",
             "import": "import a zip of 32×32 PNGs, streamed (fisherlab data import)",
             "import-memory": "the same, in memory (load_file, then save_dataset)",
             "import-npy": "import a float32 .npy of the same images, streamed (two passes)",
             "import-npy-memory": "the same, in memory (load_file, then save_dataset)"}
    for r in rows:
        print(f"| {label[r['task']]} | {r['n']:,} | {r['seconds']:.1f} | {r['floor_mib']:.0f} "
              f"| {r['peak_mib']:.0f} |")
    for task in ("fv", "scores", "umap"):
        mine = sorted((r for r in rows if r["task"] == task), key=lambda r: r["n"])
        if len(mine) > 1:
            a, b = mine[0], mine[-1]
            print(f"\n{label[task]}: peak RSS {a['peak_mib']:.0f} MiB at N = {a['n']:,} → "
                  f"{b['peak_mib']:.0f} MiB at {b['n']:,} "
                  f"({100 * (b['peak_mib'] / a['peak_mib'] - 1):+.1f} %)")
    umap_rows = [dict(r, task="UMAP") for r in rows if r["task"] == "umap"]
    if umap_rows and args.figure:
        from fisher_core.cli.cmd_umap import png_bytes
        from fisher_core.plots import scaling_figure

        fig = scaling_figure(umap_rows, title="UMAP of Fisher scores (512 dims): time and "
                                              "memory against N, 2 cores")
        Path(args.figure).write_bytes(png_bytes(fig, width=900))
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
