"""Does the Fisher space's behaviour depend on the PixelCNN's size or the decoder's? (issue 17)

    python bench/eval_scale.py [--workspace DIR] [--part all|default|large] [--out FILE]

Yan, Ho & Abbeel (2019) say their results hold independent of the generative model's
architecture and of the decoder's size. An ablation on the built-in faces, with the pieces of
``bench/eval_faces.py`` and ``bench/eval_gendec.py``:

- PixelCNNs: ``default`` — the faces PixelCNN of ``eval_faces`` (default config, 4 epochs,
  ``models/faces-pixelcnn`` of the workspace) — and ``large`` — ``--large-config`` trained for
  up to ``--large-epochs`` within ``--large-seconds`` (``models/faces-pixelcnn`` of the
  sub-workspace ``<workspace>/scale-large``, so ``build_spaces`` serves both);
- spaces per PixelCNN: Fisher scores (sparse projection 512, diagonal FIM, centred) and unpooled
  activations; the pixel space once;
- direct decoders of two sizes per space: ``default`` (:class:`DecoderConfig` defaults, hidden
  256, base_channels 64) and ``small`` (hidden 128, base_channels 32), ``--seconds`` each;
- metrics per (PixelCNN, decoder, space): interpolation peak / end-point FID ratio and end-point
  FID, mean ± std over ``--draws`` draws of ``--pairs`` pairs, and the ratio over the pixel
  space's with the same decoder and the same pairs (:func:`interpolation_ratios`); attribute
  edits (4 attributes × add / remove, ``--sources`` sources) → the weakest strength whose mean
  success reaches 95 % and the preservation there, plus the strength-3 values
  (:func:`edit_operating_points`).

Models, embeddings, decoders and each unit's metric rows are cached in the workspace
(``<workspace>/bench-scale/``), so a rerun only prints. ``--part default`` and ``--part large``
compute disjoint halves (pixels go with ``default``) and can run side by side, one per core;
``--part all`` then assembles the table. Single-threaded by default.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from eval_faces import KEY, _log, _md, build_spaces
from eval_gendec import _pm
from threadpoolctl import threadpool_limits

from fisher_core import Workspace, load_builtin
from fisher_core.explore import load_decoder, save_decoder, train_decoder
from fisher_core.metrics import edit_operating_points, interpolation_ratios
from fisher_core.metrics.evaluate import attribute_edit_scores, fid_vs_alpha
from fisher_core.models import ModelFileError
from fisher_core.utils.io import atomic_write_json, read_json
from fisher_core.workspace import (
    EntryError,
    load_extractor,
    load_saved_model,
    train_and_save,
    train_extractor,
)

DECODERS = {"default": {}, "small": {"hidden": 128, "base_channels": 32}}
SPACE_KEYS = {"fisher": "fisher", "activations": "act-none", "pixels": "pixels"}


def _pixelcnn_workspace(ws: Workspace, ds, part: str, args, t0: float) -> tuple[Workspace, float]:
    """The workspace holding PixelCNN ``part`` as ``models/faces-pixelcnn`` (trained if
    missing) and its held-out bits/dim (best epoch)."""
    if part == "default":
        sub = ws
    else:
        sub = Workspace(Path(ws.root) / "scale-large")
        try:
            load_saved_model(sub, "faces-pixelcnn")
        except EntryError:
            _log(f"training the large PixelCNN {args.large_config}", t0)
            run = train_and_save(ds, "pixelcnn", config=args.large_config,
                                 epochs=args.large_epochs, max_seconds=args.large_seconds,
                                 workspace=sub, name="faces-pixelcnn", dataset_key=KEY)
            _log(f"trained large PixelCNN: {run.metrics}", t0)
    spaces = ("fisher", "act-none", "pixels") if part == "default" else ("fisher", "act-none")
    build_spaces(sub, ds, epochs=args.epochs, dim=512, t0=t0, which=spaces)
    model, history = load_saved_model(sub, "faces-pixelcnn")
    bpd = min(history.get("epoch_bits_per_dim") or [float("nan")])
    _log(f"PixelCNN {part}: {sum(p.numel() for p in model.parameters()):,} parameters, "
         f"{len(history.get('epoch_bits_per_dim', []))} epochs, held-out {bpd:.3f} bits/dim", t0)
    return sub, bpd


def _embedding_name(space: str) -> str:
    return {"fisher": "faces-pixelcnn-fisher-sparse512", "activations": "faces-pixelcnn-act-none",
            "pixels": "faces-pixels"}[space]


def _unit(ws: Workspace, sub: Workspace, ds, pixelcnn: str, size: str, space: str,
          extractor, args, t0: float) -> dict:
    """Train (or reuse) one decoder and score it; the rows are cached as JSON."""
    label = f"pixels-{size}" if space == "pixels" else f"{pixelcnn}-{space}-{size}"
    cache = Path(ws.root) / "bench-scale" / "results" / f"{label}.json"
    if cache.exists():
        return read_json(cache)
    t = time.perf_counter()
    vectors = sub.load_embedding(_embedding_name(space)).vectors
    folder = Path(ws.root) / "bench-scale" / "decoders" / label
    try:
        dec, val_mse = load_decoder(folder), None
    except ModelFileError:
        res = train_decoder(vectors, ds.images, levels=ds.levels, architecture="direct",
                            epochs=40, max_seconds=args.seconds, **DECODERS[size])
        dec, val_mse = res.decoder, res.metrics["val_mse"]
        save_decoder(dec, folder, metrics=res.metrics)
        _log(f"decoder {label}: epochs {res.train_result.epochs_completed}, "
             f"val_mse {val_mse:.4f}", t0)
    out = fid_vs_alpha(vectors, dec, ds.images, extractor, n_pairs=args.pairs,
                       alphas=args.alphas, seed=0, repeats=args.draws)
    _log(f"{label}: FID {np.round(out['fid'], 1).tolist()}", t0)
    edits = []
    for a in range(len(ds.attribute_names)):
        edits += attribute_edit_scores(vectors, ds.attributes, dec, extractor, attribute=a,
                                       strengths=args.strengths, n_sources=args.sources,
                                       attribute_names=ds.attribute_names, seed=0)
    result = {"label": label, "alphas": out["alphas"], "fid_draws": out["fid_draws"],
              "edits": edits, "val_mse": val_mse, "seconds": time.perf_counter() - t}
    atomic_write_json(cache, result)
    _log(f"{label}: edits done", t0)
    return result


def _summarise(units: dict, bpd: dict, draws: int) -> pd.DataFrame:
    """One row per (PixelCNN, decoder, space) from the cached units."""
    rows = []
    for size in DECODERS:
        px = units.get(("—", size, "pixels"))
        for pixelcnn in ("—", *bpd):
            for space in ("fisher", "activations", "pixels"):
                unit = units.get((pixelcnn, size, space))
                if unit is None or (space == "pixels") != (pixelcnn == "—"):
                    continue
                group = [unit] + ([px] if px is not None and px is not unit else [])
                per_draw = []
                for d in range(draws):
                    fid_rows = [{"space": u["label"], "kind": "pixels" if u is px else "x",
                                 "alpha": a, "fid": f[d]}
                                for u in group for a, f in zip(u["alphas"], np.transpose(
                                    u["fid_draws"]), strict=True)]
                    per_draw.append(interpolation_ratios(fid_rows)[0])
                draw_df = pd.DataFrame(per_draw)
                edit = edit_operating_points([{**r, "space": unit["label"]}
                                              for r in unit["edits"]])[0]
                vs_px = draw_df["ratio_vs_reference"]
                rows.append({
                    "pixelcnn": pixelcnn if pixelcnn == "—" else
                    f"{pixelcnn} ({bpd[pixelcnn]:.3f} b/d)",
                    "decoder": size, "space": space,
                    "ratio": _pm(draw_df["ratio"], "{:.2f}"),
                    "ratio ÷ pixels": "—" if space == "pixels" or vs_px.isna().any()
                    else _pm(vs_px.astype(float), "{:.2f}"),
                    "end FID": _pm(draw_df["endpoint_fid"], "{:.0f}"),
                    "peak FID": _pm(draw_df["peak_fid"], "{:.0f}"),
                    "val_mse": "—" if unit["val_mse"] is None else f"{unit['val_mse']:.4f}",
                    "s@95%": "never" if edit["strength"] is None else f"{edit['strength']:g}",
                    "pres@95%": "—" if edit["preservation"] is None
                    else f"{edit['preservation']:.0%}",
                    "succ / pres @3": "—" if edit["fixed_success"] is None
                    else f"{edit['fixed_success']:.0%} / {edit['fixed_preservation']:.0%}",
                })
    return pd.DataFrame(rows).set_index(["pixelcnn", "decoder", "space"])


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(Path.home() / ".fisherlab"))
    ap.add_argument("--part", choices=("all", "default", "large"), default="all")
    ap.add_argument("--epochs", type=int, default=4, help="of the default PixelCNN, if trained")
    ap.add_argument("--large-config", type=json.loads, default={"hidden": 32, "n_blocks": 7},
                    help="PixelCNNConfig fields of the large PixelCNN, as JSON")
    ap.add_argument("--large-epochs", type=int, default=15)
    ap.add_argument("--large-seconds", type=float, default=480.0)
    ap.add_argument("--seconds", type=float, default=60.0, help="budget of each decoder")
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--alphas", type=_floats, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--sources", type=int, default=40)
    ap.add_argument("--strengths", type=_floats, default=[1.0, 2.0, 3.0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ws = Workspace(args.workspace)
    ds = load_builtin("faces")
    parts = ("default", "large") if args.part == "all" else (args.part,)
    units, bpd, extractor = {}, {}, None
    with threadpool_limits(args.threads):
        for part in parts:
            sub, bpd[part] = _pixelcnn_workspace(ws, ds, part, args, t0)
            if extractor is None:
                extractor = load_extractor(ws, KEY)
            if extractor is None:
                extractor, m = train_extractor(ws, ds, KEY)
                _log(f"feature extractor: {m}", t0)
            for size in DECODERS:
                for space in ("fisher", "activations", "pixels"):
                    if space == "pixels" and part != "default":
                        continue
                    key = ("—" if space == "pixels" else part, size, space)
                    units[key] = _unit(ws, sub, ds, part, size, space, extractor, args, t0)
    table = _summarise(units, bpd, args.draws)
    title = (f"Interpolation ({args.pairs} pairs × {args.draws} draws, α = {args.alphas}; "
             f"mean ± std over draws) and edits (4 attributes × add / remove, {args.sources} "
             f"sources, strengths {args.strengths})")
    print(f"\n### {title}\n")
    print(_md(table))
    seconds = sum(u["seconds"] for u in units.values())
    _log(f"done; decoders + scoring of these units took {seconds:.0f} s when computed", t0)
    if args.out:
        Path(args.out).write_text(
            f"<!-- python {' '.join(sys.argv)} -->\n\n### {title}\n\n{_md(table)}\n",
            encoding="utf-8")


if __name__ == "__main__":
    main()
