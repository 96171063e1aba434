"""Training-set-size sweep (issue 18; Zhai et al. 2019): does the Fisher monitor see a model
memorise a small training set?

    python bench/eval_size_sweep.py [--dataset digits|faces] [--families pixelcnn,ebgan,vae,gmm]
                                    [--sizes 30,100,300,1000] [--steps 300] [--seeds 0,1]
                                    [--out bench/results_eval_size_sweep.md]
                                    [--figure assets/size_sweep.png]

For each family and seed, :func:`fisher_core.workspace.training_size_sweep` trains the
family's default model on nested subsets of the built-in dataset (a fixed 20 % held out), the
same number of optimisation steps for every size and the last weights kept, and evaluates
the Fisher monitor once at the end of each run: the Fisher distance between the model's own
samples and 64 training images (``train FD``) or 64 held-out images (``held-out FD``), and the
ratio held-out / train (1 = no memorisation visible to the scores). Prints one markdown table
per family (mean over seeds, the spread as ± one standard deviation), writes them to ``--out``
and the figure of the first family's first seed to ``--figure`` (PNG; needs kaleido, which
the dev install has). About 1 min per family and seed for the digits on one CPU thread.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fisher_core.data import load_builtin
from fisher_core.plots import size_sweep_figure
from fisher_core.workspace import training_size_sweep


def _row(n: int, runs: list[dict]) -> str:
    def stat(key: str) -> str:
        v = np.array([r[key] for r in runs], dtype=float)
        return f"{v.mean():.2f} ± {v.std():.2f}" if len(v) > 1 else f"{v[0]:.2f}"

    ratio = np.array([r["heldout_fd"] / r["train_fd"] for r in runs])
    nll = [r["val_nll"] for r in runs if r["val_nll"] is not None]
    return (f"| {n:,} | {stat('train_fd')} | {stat('heldout_fd')} | "
            f"{ratio.mean():.2f} ± {ratio.std():.2f} | {stat('heldout_fsim')} | "
            + (f"{np.mean(nll):.1f}" if nll else "–")
            + f" | {np.mean([r['seconds'] for r in runs]):.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits", choices=["digits", "faces"])
    p.add_argument("--families", default="pixelcnn,ebgan,vae,gmm")
    p.add_argument("--sizes", default="30,100,300,1000")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default="bench/results_eval_size_sweep.md")
    p.add_argument("--figure", default="assets/size_sweep.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = load_builtin(args.dataset)
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [f"# Training-set-size sweep on the built-in {args.dataset} "
             f"({args.steps} steps per run, seeds {args.seeds})", "",
             "`python bench/eval_size_sweep.py " + " ".join(
                 f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()) + "`", ""]
    t0 = time.perf_counter()
    figure_rows = None
    for family in args.families.split(","):
        per_seed = [training_size_sweep(ds, family, sizes, steps=args.steps, seed=s)
                    for s in seeds]
        figure_rows = figure_rows or (family, per_seed[0])
        lines += [f"## {family}", "",
                  "| training images | train FD | held-out FD | held-out / train | "
                  "held-out FSim | val NLL (nats) | s / run |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [_row(n, [runs[i] for runs in per_seed]) for i, n in enumerate(sizes)]
        lines.append("")
        print("\n".join(lines[-len(sizes) - 4:]), flush=True)
        print(f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    if args.figure and figure_rows is not None:
        family, rows = figure_rows
        fig = size_sweep_figure(rows, f"{family} on {args.dataset}: Fisher monitor at the end "
                                      f"of {args.steps} steps")
        try:
            fig.write_image(args.figure, width=1000, height=380, scale=1.5)
            print(f"wrote {args.figure}")
        except Exception as exc:  # kaleido or its browser missing: the table still stands
            print(f"figure not written ({exc})")


if __name__ == "__main__":
    main()
