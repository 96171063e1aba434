"""Benchmark: what hostile or large uploads cost `load_file` / `load_builtin` (issue 14).

    python bench/bench_uploads.py            # all cases, a few minutes on 2 cores
    python bench/bench_uploads.py --only faces,tiny

Builds each case at its real size in a temporary folder (streamed to disk, never whole in
memory), then loads it in a fresh Python process and prints one Markdown row per case:
the upload's size, the outcome (the loaded shape, or the start of the refusal message), the
wall time of the call, and the call's peak RSS increase: the child imports numpy, PIL and
torch and reads the upload into memory first (as an app holds an upload), then resets the
kernel's high-water mark (/proc/self/clear_refs) and reads VmHWM − VmRSS around the call
(ru_maxrss where clear_refs is not writable). "dataset" is the
size of the float32 images that a load returns (or, when refused, that the limit allows:
the budget the refusal protects); the last column is the peak increase over it.

Cases (the defects of issue 14 at their reported sizes):
1. 30 blank 4096×4096 RGB PNGs in a zip (1.5 MB): refused from the headers; and the same zip
   with ``size=64``, which now loads, one image at a time.
2. A zip of two images and a ~100 MB attributes.csv (~100 KB upload) whose rows name files
   that are not there: refused from the CSV's declared size.
3. An .npz holding 1 GiB of zeros, and a 1 GiB IDX.gz of zeros (1 MB uploads): refused
   from the array headers; the largest accepted array (2·10⁸ uint8 zeros, ~200 KB .npz).
4. 100,000 tiny PNGs in a zip (~20 MB): loads, in time linear in the number of entries.
5. The built-in faces, n = 20,000.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CHUNK = 1 << 24  # bytes of zeros written at a time while building the bombs

CHILD = r"""
import json, os, resource, sys, time
import numpy, PIL.Image, torch  # imported before measuring: the load's cost only
from fisher_core.data import DatasetError, load_builtin, load_file

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None

case = json.loads(sys.argv[1])
if case["kind"] == "file":  # in memory before the baseline, as an app holds an upload
    with open(case["path"], "rb") as fh:
        upload = fh.read()
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    before, hwm = status("VmRSS"), True
except OSError:
    before, hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, False
t = time.perf_counter()
try:
    if case["kind"] == "builtin":
        ds = load_builtin(case["name"], **case["options"])
    else:
        ds = load_file(upload, filename=os.path.basename(case["path"]), **case["options"])
    outcome, dataset = f"loaded {ds.images.shape}", ds.images.nbytes
except DatasetError as exc:
    outcome, dataset = f"refused: {exc}", None
wall = time.perf_counter() - t
after = status("VmHWM") if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"outcome": outcome, "wall": wall, "peak": after - before,
                  "dataset": dataset}))
"""


def _zeros_npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _write_zeros(fh, n: int) -> None:
    zeros = bytes(CHUNK)
    while n > 0:
        fh.write(zeros[:min(n, CHUNK)])
        n -= CHUNK


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def build_png_bomb(path: Path) -> None:
    blank = _png(np.zeros((4096, 4096, 3), np.uint8))  # 48 MiB of RGB each, ~49 KB encoded
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(30):
            zf.writestr(f"blank{i:02d}.png", blank)


def build_csv_bomb(path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8), dtype=np.uint8)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", _png(x[0]))
        zf.writestr("b.png", _png(x[1]))
        with zf.open("attributes.csv", "w", force_zip64=True) as fh:
            fh.write(b"filename,smiling\na.png,1\nb.png,0\n")
            block = b"not-here.png,1\n" * (CHUNK // 15)
            for _ in range(100 * 2**20 // len(block)):
                fh.write(block)


def build_npz_zeros(path: Path, shape: tuple[int, ...]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("images.npy", "w", force_zip64=True) as fh:
        fh.write(_zeros_npy_header(shape))
        _write_zeros(fh, int(np.prod(shape)))


def build_idx_gz_zeros(path: Path, shape: tuple[int, ...]) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape))
        _write_zeros(fh, int(np.prod(shape)))


def build_tiny_pngs(path: Path, n: int = 100_000) -> None:
    pool = [_png(a) for a in np.random.default_rng(1).integers(0, 256, (100, 8, 8),
                                                                   dtype=np.uint8)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            zf.writestr(f"{i:06d}.png", pool[i % len(pool)])


# (key, label, file name, builder or None, load options, dataset bytes the limit allows)
LIMIT_BYTES = 4 * 200_000_000  # the default max_total_values, as float32
CASES = [
    ("png", "30 blank 4096² RGB PNGs (zip)", "png_bomb.zip", build_png_bomb, {}, LIMIT_BYTES),
    ("png64", "same zip, size=64", "png_bomb.zip", build_png_bomb, {"size": 64}, None),
    ("csv", "attributes.csv of ~100 MB (zip)", "csv_bomb.zip", build_csv_bomb, {},
     LIMIT_BYTES),
    ("npz", "1 GiB of zeros (.npz)", "zeros.npz",
     lambda p: build_npz_zeros(p, (16383, 256, 256)), {}, LIMIT_BYTES),
    ("idx", "1 GiB of zeros (IDX.gz)", "zeros-idx3-ubyte.gz",
     lambda p: build_idx_gz_zeros(p, (16383, 256, 256)), {}, LIMIT_BYTES),
    ("largest", "largest accepted: 2·10⁸ zeros (.npz)", "largest.npz",
     lambda p: build_npz_zeros(p, (12500, 128, 125)), {}, None),
    ("tiny", "100,000 tiny PNGs (zip)", "tiny.zip", build_tiny_pngs, {}, None),
    ("faces", "built-in faces, n=20,000", None, None, {"n": 20_000}, None),
]


def run_case(case: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], capture_output=True,
                          text=True, env=env, timeout=600)
    if proc.returncode != 0:
        return {"outcome": f"crashed: {proc.stderr.strip().splitlines()[-1:]}", "wall": 0.0,
                "peak": 0, "dataset": None}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f}" if n >= 1e5 else f"{n / 1e6:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated case keys: " +
                        ",".join(c[0] for c in CASES))
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    print("| case | upload (MB) | outcome | time (s) | peak RSS increase (MB) | dataset (MB) "
          "| peak / dataset |")
    print("|---|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for key, label, fname, build, options, limit in CASES:
            if only and key not in only:
                continue
            if fname is None:
                case, upload = {"kind": "builtin", "name": "faces", "options": options}, "–"
            else:
                path = Path(tmp) / fname
                if not path.exists():
                    build(path)
                case = {"kind": "file", "path": str(path), "options": options}
                upload = _mb(path.stat().st_size)
            r = run_case(case)
            dataset = r["dataset"] or limit
            outcome = r["outcome"] if len(r["outcome"]) <= 90 else r["outcome"][:87] + "..."
            ratio = f"{r['peak'] / dataset:.2f}" if dataset else "–"
            print(f"| {label} | {upload} | {outcome.replace('|', '/')} | {r['wall']:.2f} | "
                  f"{_mb(r['peak'])} | {_mb(dataset) if dataset else '–'} | {ratio} |",
                  flush=True)


if __name__ == "__main__":
    main()
