"""Direct vs generative (conditional PixelCNN) decoders on the built-in faces (issue 17).

    python bench/eval_gendec.py [--workspace DIR] [--decoder direct|pixelcnn|both]

Same model and spaces as ``bench/eval_faces.py`` (reused from the workspace when saved there):
Fisher scores (sparse 512, diagonal FIM), unpooled PixelCNN activations, pixels. Every space
gets one decoder of each kind (cached under ``<workspace>/bench-gendec/``); then

1. interpolation FID: for ``--draws`` independent draws of ``--pairs`` pairs, FID of the
   decoded points at each α against all real faces; reported as peak / end-point ratio
   (max over α, over the mean of α = 0 and 1), end-point FID and peak FID, mean ± std over
   draws;
2. attribute edits: success / preservation at each strength, mean over the 4 attributes × add /
   remove, and the preservation of every space at the strength where the Fisher space's
   success first reaches 95 %.

Targets (issue 17): Fisher ratio ≤ 0.6 × the pixel ratio and below the activation ratio;
end-point FID within 20 % of the pixel decoder's; at the 95 %-success strength, Fisher
preservation ≥ 90 % and above pixels and activations. ``--temperature`` decodes the
pixelcnn decoders by sampling instead of arg-max. Runs single-threaded by default (tiny
convolutions are faster without thread synchronisation on a shared 2-core box).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from eval_faces import KEY, _log, _md, build_spaces

from fisher_core import Workspace, load_builtin
from fisher_core.explore import load_decoder, save_decoder, train_decoder
from fisher_core.metrics.evaluate import attribute_edit_scores, fid_vs_alpha
from fisher_core.models import ModelFileError
from fisher_core.workspace import load_extractor, train_extractor

SHORT = {"faces-pixelcnn-fisher-sparse512": "fisher", "faces-pixelcnn-act-none": "activations",
         "faces-pixels": "pixels"}


def _decoder(ws: Workspace, ds, name: str, kind: str, seconds: float, t0: float):
    folder = Path(ws.root) / "bench-gendec" / f"{name}-{kind}"
    try:
        dec = load_decoder(folder)
        _log(f"reusing decoder {folder.name}", t0)
        return dec
    except ModelFileError:
        pass
    res = train_decoder(ws.load_embedding(name).vectors, ds.images, levels=ds.levels,
                        architecture=kind, epochs=40, max_seconds=seconds)
    save_decoder(res.decoder, folder, metrics=res.metrics)
    _log(f"decoder {folder.name}: epochs {res.train_result.epochs_completed}, "
         f"val_mse {res.metrics['val_mse']:.4f}", t0)
    return res.decoder


def _fid_rows(vectors, dec, ds, extractor, args, t0, label) -> list[dict]:
    rows = []
    for draw in range(args.draws):
        t = time.perf_counter()
        out = fid_vs_alpha(vectors, dec, ds.images, extractor, n_pairs=args.pairs,
                           alphas=args.alphas, seed=draw)
        fid = np.asarray(out["fid"])
        end = (fid[0] + fid[-1]) / 2
        rows.append({"end": end, "peak": fid.max(), "ratio": fid.max() / end,
                     "decode_s_per_100": 100 * (time.perf_counter() - t)
                     / (args.pairs * len(args.alphas))})
        _log(f"{label} draw {draw}: FID {np.round(fid, 1).tolist()}", t0)
    return rows


def _edit_rows(vectors, dec, ds, extractor, args) -> list[dict]:
    rows = []
    for a in range(len(ds.attribute_names)):
        rows += attribute_edit_scores(vectors, ds.attributes, dec, extractor, attribute=a,
                                      strengths=args.strengths, n_sources=args.sources,
                                      attribute_names=ds.attribute_names, seed=0)
    return rows


def _pm(values: pd.Series, fmt: str) -> str:
    return f"{fmt.format(values.mean())} ± {fmt.format(values.std(ddof=1))}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(Path.home() / ".fisherlab"))
    ap.add_argument("--decoder", choices=("direct", "pixelcnn", "both"), default="both")
    ap.add_argument("--epochs", type=int, default=4, help="of the faces PixelCNN, if trained")
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--alphas", type=lambda s: [float(v) for v in s.split(",")],
                    default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--sources", type=int, default=40)
    ap.add_argument("--strengths", type=lambda s: [float(v) for v in s.split(",")],
                    default=[1.0, 2.0, 3.0])
    ap.add_argument("--seconds", type=lambda s: [float(v) for v in s.split(",")],
                    default=[60.0, 150.0], help="training budget: direct, pixelcnn decoders")
    ap.add_argument("--temperature", type=float, default=None,
                    help="decode the pixelcnn decoders at this temperature (default: theirs, 0)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kinds = ["direct", "pixelcnn"] if args.decoder == "both" else [args.decoder]
    t0 = time.perf_counter()
    ws = Workspace(args.workspace)
    ds = load_builtin("faces")
    names = build_spaces(ws, ds, epochs=4, dim=512, t0=t0,
                         which=("fisher", "act-none", "pixels"))
    extractor = load_extractor(ws, KEY)
    if extractor is None:
        extractor, m = train_extractor(ws, ds, KEY)
        _log(f"feature extractor: {m}", t0)
    fid, edits = [], []
    for kind in kinds:
        seconds = dict(zip(("direct", "pixelcnn"), args.seconds, strict=True))[kind]
        for name in names:
            vectors = ws.load_embedding(name).vectors
            dec = _decoder(ws, ds, name, kind, seconds, t0)
            if kind == "pixelcnn" and args.temperature is not None:
                dec.config.temperature = args.temperature  # read by every decode call
            space = SHORT.get(name, name)
            fid += [{"decoder": kind, "space": space, **r}
                    for r in _fid_rows(vectors, dec, ds, extractor, args, t0, f"{kind}/{space}")]
            edits += [{"decoder": kind, "space": space, **r}
                      for r in _edit_rows(vectors, dec, ds, extractor, args)]
            _log(f"{kind}/{space}: edits done", t0)
    fid, edits = pd.DataFrame(fid), pd.DataFrame(edits)
    print(f"\n### Interpolation FID ({args.pairs} pairs × {args.draws} draws, α = "
          f"{args.alphas}; mean ± std over draws)\n")
    table = fid.groupby(["decoder", "space"], sort=False).agg(
        ratio=("ratio", lambda v: _pm(v, "{:.2f}")), end=("end", lambda v: _pm(v, "{:.1f}")),
        peak=("peak", lambda v: _pm(v, "{:.1f}")),
        decode_s_per_100=("decode_s_per_100", "mean"))
    print(_md(table, "{:.2f}"))
    mean = edits.groupby(["decoder", "space", "strength"], sort=False)[
        ["success", "preservation"]].mean()
    print("\n### Attribute edits, mean over 4 attributes × add / remove "
          f"({args.sources} sources each): success / preservation\n")
    cells = (mean["success"].map("{:.0%}".format) + " / "
             + mean["preservation"].map("{:.0%}".format)).unstack("strength")
    print(_md(cells))
    print("\n### Targets\n")
    for kind in kinds:
        r = fid[fid["decoder"] == kind].groupby("space")[["ratio", "end"]].mean()
        m = mean.loc[kind]
        ok = m.loc["fisher"]["success"] >= 0.95
        s95 = ok.idxmax() if ok.any() else None
        if s95 is None:
            edit = (f"Fisher success never reaches 95 % (at most "
                    f"{m.loc['fisher']['success'].max():.0%})")
        else:
            edit = f"Fisher success ≥ 95 % first at strength {s95:g}: preservation " + (
                ", ".join(f"{sp} {m.loc[(sp, s95), 'preservation']:.0%}" for sp in r.index))
        print(f"- {kind}: Fisher ratio {r.loc['fisher', 'ratio']:.2f} vs 0.6 × pixels "
              f"{0.6 * r.loc['pixels', 'ratio']:.2f} and activations "
              f"{r.loc['activations', 'ratio']:.2f}; end-point FID Fisher "
              f"{r.loc['fisher', 'end']:.1f} vs pixels {r.loc['pixels', 'end']:.1f} "
              f"({r.loc['fisher', 'end'] / r.loc['pixels', 'end'] - 1:+.0%}); {edit}")
    _log("done", t0)


if __name__ == "__main__":
    main()
