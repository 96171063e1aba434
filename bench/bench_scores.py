"""Per-example Fisher scores: FisherLab against its peers, measured in one run.

Model: the default ``PixelCNN`` (faces 32×32 grey, discrete), batch 256. Every row computes
the per-example gradients ∇θ log p(x_i) of one batch; the reference is a single batched
forward + backward of ``log_prob(x).sum()`` (the practical limit: per-example work cannot be
cheaper than the batch gradient). Rounds are interleaved (each round runs every method once
on the same batch) and the ratio is the median over rounds of ``t_reference / t_method``.
Times are CPU seconds of this process (``time.process_time``) with one thread by default, so
that other processes on a shared machine do not distort them; ``--threads N --clock wall``
measures wall-clock time with N threads instead.

Memory: a fresh subprocess per N runs ``fisher_scores`` (sparse, 512) on N examples (and, for
comparison, plain batched forward + backward passes over the same N) while a thread samples
the resident set size (``/proc/self/statm``) every 2 ms; the peak minus the RSS just before
the call is reported next to the size of the (N × 512) float32 output. The children run
with ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed tensors leave the RSS (it then tracks
live memory rather than the allocator's cache). Flat in N means streaming; the level is one
batch's activations, as for the reference.

Run::

    .venv/bin/python bench/bench_scores.py            # full
    .venv/bin/python bench/bench_scores.py --quick    # fewer rounds, smaller N
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fisher_core.fisher import FisherScorer, fisher_scores  # noqa: E402
from fisher_core.fisher.projection import KronProjection, ParamBlock, SparseProjection  # noqa: E402

BATCH = 256


# ---- models and data ---------------------------------------------------------------------------


def default_pixelcnn() -> nn.Module:
    from fisher_core.models import PixelCNN, PixelCNNConfig

    return PixelCNN(PixelCNNConfig())


class MaskedConv2d(nn.Conv2d):
    """Masked convolution (mask applied in forward), as in many PixelCNN implementations."""

    def __init__(self, cin: int, cout: int, k: int, mask_type: str):
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        c = k // 2
        mask[:, :, c, c + (mask_type == "B") :] = 0
        mask[:, :, c + 1 :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class MaskedPixelCNN(nn.Module):
    """Stand-in: 7×7 type-A masked conv, 3×3 type-B residual layers, 4-level softmax."""

    def __init__(self, ch: int = 32, layers: int = 4, levels: int = 4):
        super().__init__()
        self.levels = levels
        self.inp = MaskedConv2d(1, ch, 7, "A")
        self.hidden = nn.ModuleList(MaskedConv2d(ch, ch, 3, "B") for _ in range(layers))
        self.out = nn.Conv2d(ch, levels, 1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        level = torch.round(x.clamp(0, 1) * (self.levels - 1)).long()  # (B, 1, H, W)
        h = F.relu(self.inp(level.float() * (2.0 / (self.levels - 1)) - 1))
        for layer in self.hidden:
            h = h + F.relu(layer(h))
        logp = F.log_softmax(self.out(h), 1)  # (B, L, H, W)
        return logp.gather(1, level).sum((1, 2, 3))


def faces(n: int) -> torch.Tensor:
    try:
        from fisher_core.data import load_builtin

        return torch.from_numpy(load_builtin("faces", n=n, seed=0).images)
    except Exception:  # dataset layer unavailable: random binary-ish 32×32 images
        g = torch.Generator().manual_seed(0)
        return (torch.rand(n, 1, 32, 32, generator=g) > 0.5).float()


# ---- methods --------------------------------------------------------------------------------


class _LogProb(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.log_prob(x)


def methods(model: nn.Module, x: torch.Tensor, loop_n: int) -> dict[str, Callable]:
    """name -> callable computing per-example gradients of batch x (or 'n/a (reason)')."""
    params = [p for p in model.parameters() if p.requires_grad]
    out: dict[str, Callable | str] = {}

    def reference():
        torch.autograd.grad(model.log_prob(x).sum(), params)

    out["forward+backward of log_prob(x).sum() (reference)"] = reference
    for label, kw in (("sparse 512", dict(dim=512, projection="sparse")),
                      ("kron 512", dict(dim=512, projection="kron")),
                      ("gaussian 512", dict(dim=512, projection="gaussian")),
                      ("exact (unprojected)", dict(dim=None, projection=None))):
        scorer = FisherScorer(model, batch_size=x.shape[0], **kw).fit(x[:4])
        out[f"FisherLab {label}"] = lambda s=scorer: s.transform(x)
    wrapper = _LogProb(model)
    theta = {f"model.{n}": p.detach() for n, p in model.named_parameters()}
    per_ex = vmap(grad(lambda p, xi: functional_call(wrapper, p, (xi[None],)).sum()),
                  in_dims=(None, 0))
    out["torch.func vmap(grad), exact"] = lambda: per_ex(theta, x)
    out["Opacus GradSampleModule, exact"] = _opacus(model, x)
    out["BackPACK BatchGrad, exact"] = _backpack(model, x)

    def loop():
        for i in range(loop_n):
            torch.autograd.grad(model.log_prob(x[i : i + 1]).sum(), params)

    out[f"Python loop ({loop_n} examples, extrapolated)"] = loop
    return out


def _opacus(model: nn.Module, x: torch.Tensor) -> Callable | str:
    try:
        from opacus import GradSampleModule
    except ImportError as exc:
        return f"n/a (opacus not installed: {exc})"
    clone = copy.deepcopy(model)
    try:
        gsm = GradSampleModule(clone, batch_first=True, loss_reduction="sum")
    except Exception as exc:  # unsupported layers
        return f"n/a ({type(exc).__name__}: {str(exc)[:60]})"

    def run():
        gsm.zero_grad(set_to_none=True)
        clone.log_prob(x).sum().backward()
        return [p.grad_sample for p in clone.parameters()]

    return _checked(run, "Opacus")


def _backpack(model: nn.Module, x: torch.Tensor) -> Callable | str:
    try:
        from backpack import backpack, extend
        from backpack.extensions import BatchGrad
    except ImportError as exc:
        return f"n/a (backpack not installed: {exc})"
    clone = extend(copy.deepcopy(model))
    odd = [type(m).__name__ for m in clone.modules()
           if type(m) not in (nn.Conv2d, nn.Linear) and any(True for _ in m.parameters(False))]
    if odd:
        return f"n/a (BackPACK matches layer classes exactly; {odd[0]} is not one)"

    def run():
        clone.zero_grad(set_to_none=True)
        with backpack(BatchGrad()):
            clone.log_prob(x).sum().backward()
        return [p.grad_batch for p in clone.parameters()]

    return _checked(run, "BackPACK")


_EXACT: dict[str, np.ndarray] = {}


def _checked(run: Callable, name: str) -> Callable | str:
    """Run once and compare with FisherLab's exact scores; 'n/a' if it fails or disagrees."""
    try:
        got = torch.cat([g.reshape(g.shape[0], -1) for g in run()], 1).numpy()
    except Exception as exc:
        return f"n/a ({type(exc).__name__}: {str(exc)[:70]})"
    ref = _EXACT.get("ref")
    if ref is not None:
        err = np.abs(got - ref).max() / (np.abs(ref).max() + 1e-12)
        if err > 1e-3:
            return f"n/a ({name} ran but disagrees with autograd: rel. error {err:.1e})"
    return run


# ---- timing -----------------------------------------------------------------------------------


CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = CLOCK["cpu"]


def measure(model: nn.Module, x: torch.Tensor, rounds: int, loop_n: int) -> list[tuple]:
    torch.manual_seed(0)
    _EXACT["ref"] = fisher_scores(model, x, dim=None, projection=None, batch_size=x.shape[0])
    fns = methods(model, x, loop_n)
    ref_name = next(iter(fns))
    runnable = {k: f for k, f in fns.items() if callable(f)}
    times: dict[str, list[float]] = {k: [] for k in runnable}
    for f in runnable.values():  # warm-up
        f()
    for _ in range(rounds):
        for k, f in runnable.items():
            t0 = _clock()
            f()
            times[k].append(_clock() - t0)
    rows = []
    for k, f in fns.items():
        if not callable(f):
            rows.append((k, None, None, f))
            continue
        scale = x.shape[0] / loop_n if k.startswith("Python loop") else 1.0
        ts = [t * scale for t in times[k]]
        ratio = statistics.median(r / t for r, t in zip(times[ref_name], ts, strict=True))
        rows.append((k, x.shape[0] / statistics.median(ts), ratio, ""))
    return rows


def print_table(title: str, rows: list[tuple]) -> None:
    unit = "examples per CPU-second" if _clock is time.process_time else "examples/s"
    print(f"\n### {title}\n")
    print(f"| method | {unit} | ratio to fwd+bwd |")
    print("| --- | ---: | ---: |")
    for name, thr, ratio, note in rows:
        if thr is None:
            print(f"| {name} | {note} | – |")
        else:
            print(f"| {name} | {thr:,.0f} | {ratio:.2f}× |")


# ---- memory -----------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(n: int, what: str) -> None:
    """Runs in a subprocess: peak RSS growth of fisher_scores (or of the reference) on n."""
    torch.manual_seed(0)
    model = default_pixelcnn()
    x = faces(n)
    params = list(model.parameters())

    def run() -> np.ndarray:
        if what == "fisher":
            return fisher_scores(model, x, dim=512, batch_size=BATCH)
        for s in range(0, n, BATCH):  # the reference: batched forward + backward only
            torch.autograd.grad(model.log_prob(x[s : s + BATCH]).sum(), params)
        return np.zeros((0, 512), np.float32)

    fisher_scores(model, x[:BATCH], dim=512, batch_size=BATCH)  # warm-up: allocator, plan
    torch.autograd.grad(model.log_prob(x[:BATCH]).sum(), params)
    peak, stop = [_rss()], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    before = _rss()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.process_time()
    z = run()
    elapsed = time.process_time() - t0
    stop.set()
    thread.join()
    print(json.dumps({"n": n, "peak_mb": (peak[0] - before) / 2**20,
                      "output_mb": z.nbytes / 2**20, "seconds": elapsed}))


def memory_rows(ns: list[int], threads: int) -> None:
    print("\n### Peak memory (RSS growth during the call, sampled every 2 ms), batch 256\n")
    print("| run | N | peak RSS growth (MB) | output (MB) | growth − output (MB) |"
          " examples per CPU-second |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    runs = [("reference", "forward+backward only (reference)", ns[0])]
    runs += [("fisher", "fisher_scores sparse 512", n) for n in ns]
    for what, label, n in runs:
        # glibc then maps every large block separately and returns it on free, so the RSS
        # follows the live memory instead of what the allocator keeps cached.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="0")
        res = subprocess.run([sys.executable, __file__, "--memory-child", str(n), what,
                              "--threads", str(threads)],
                             capture_output=True, text=True, check=True, env=env)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"| {label} | {n:,} | {r['peak_mb']:.1f} | {r['output_mb']:.1f} | "
              f"{r['peak_mb'] - r['output_mb']:.1f} | {n / r['seconds']:,.0f} |")


def projection_memory() -> None:
    # A 10⁷-parameter conv net: four 512×512×3×3 convolutions and a 568×1024 linear head.
    blocks = [ParamBlock(f"l{i}.weight", (512, 512, 3, 3)) for i in range(4)]
    blocks += [ParamBlock(f"l{i}.bias", (512,)) for i in range(4)]
    blocks += [ParamBlock("head.weight", (568, 1024))]
    n = sum(b.numel for b in blocks)
    print(f"\n### Projection memory for a {n / 1e6:.2f}M-parameter model (dim 512)\n")
    print("| projection | stored bytes (MB) | build time (s) |")
    print("| --- | ---: | ---: |")
    for cls in (SparseProjection, KronProjection):
        t0 = time.perf_counter()
        p = cls(blocks, 512, seed=0)
        print(f"| {cls.kind} | {p.nbytes / 2**20:.1f} | {time.perf_counter() - t0:.2f} |")
    print("| gaussian | 0 (regenerated per chunk; dense would be "
          f"{n * 512 * 4 / 2**30:.1f} GB) | – |")


def device_rows(device: str, batches: list[int], rounds: int) -> None:
    """Issue 19's GPU row: ``fisher_scores`` (sparse 512, per-example) against one batched
    forward + backward of the same model on ``device``, wall clock with synchronisation,
    best of ``rounds``; target ≥ 0.8×."""
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = default_pixelcnn().to(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"\n### fisher_scores on {device} ({name})\n")
    print("| batch | batched backward (examples/s) | fisher_scores sparse 512 (examples/s) "
          "| ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for b in batches:
        x = faces(b).to(dev)

        def backward(x=x) -> None:
            model.zero_grad(set_to_none=True)
            model.log_prob(x).sum().backward()

        def scores(x=x, b=b) -> None:
            fisher_scores(model, x, dim=512, projection="sparse", batch_size=b, output="torch")

        best = {}
        for what, fn in (("backward", backward), ("scores", scores)):
            fn()  # warm-up (kernels, the projection)
            times = []
            for _ in range(rounds):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - t0)
            best[what] = b / min(times)
        print(f"| {b} | {best['backward']:,.0f} | {best['scores']:,.0f} | "
              f"{best['scores'] / best['backward']:.2f}× |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu",
                    help="cpu (the peer table below) or cuda: the GPU row of issue 19 only")
    ap.add_argument("--quick", action="store_true", help="2 rounds, N = 512 / 2,048")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="cpu",
                    help="cpu: process CPU time (default); wall: wall-clock time")
    ap.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global _clock
    _clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(int(args.memory_child[0]), args.memory_child[1])
        return
    if args.device != "cpu":
        device_rows(args.device, [256, 1024], 3 if args.quick else 5)
        return
    warnings.filterwarnings("ignore", module="backpack")
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    rounds = 2 if args.quick else 3
    x = faces(BATCH)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.clock} clock, "
          f"batch {BATCH}, {rounds} interleaved rounds (median)")
    model = default_pixelcnn()
    n_params = sum(p.numel() for p in model.parameters())
    print_table(f"Default PixelCNN ({n_params:,} parameters), faces 32×32",
                measure(model, x, rounds, loop_n=16))
    if not args.quick:
        torch.manual_seed(0)
        stand_in = MaskedPixelCNN()
        n_params = sum(p.numel() for p in stand_in.parameters())
        print_table(f"Masked-conv PixelCNN stand-in ({n_params:,} parameters, weight·mask in "
                    "forward)", measure(stand_in, x, 2, loop_n=16))
    memory_rows([512, 2048] if args.quick else [2000, 8000], args.threads)
    projection_memory()


if __name__ == "__main__":
    main()
