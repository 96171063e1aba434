"""Several processes saving, reading and deleting in one workspace at once (stress harness).

Every actor (worker processes, and the calling process when ``in_process``) runs the same
seeded loop for ``seconds``: save the shared dataset entry or its own one, read any of them,
list the workspace, now and then delete its own entry and save it again. Afterwards the
workspace must hold exactly what ``CURRENT`` names: no temporary or stray version folder.

``tests/workspace/test_concurrency.py`` runs it for a few seconds; for the numbers run, from
the repository root::

    .venv/bin/python -m tests.workspace.stress --seconds 10 --workers 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHARED = "shared"
N_EXAMPLES = 10


def _names(n_actors: int) -> list[str]:
    return [SHARED] + [f"own-{i}" for i in range(n_actors)]


def actor_loop(root: str, actor: int, n_actors: int, seconds: float, seed: int) -> dict[str, Any]:
    """One actor's seeded loop; returns its counts and the first few errors."""
    import numpy as np

    from fisher_core.data import load_builtin
    from fisher_core.workspace import EntryError, Workspace

    ws = Workspace(root)
    ds = load_builtin("digits").subset(slice(0, 5))
    rng = np.random.default_rng([seed, actor])
    names, own = _names(n_actors), f"own-{actor}"
    counts: Counter[str] = Counter()
    examples: list[str] = []

    def fail(kind: str, what: str) -> None:
        counts[kind] += 1
        if len(examples) < N_EXAMPLES:
            examples.append(what)

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        u = rng.random()
        name = names[int(rng.integers(len(names)))]
        try:
            if u < 0.35:
                target = SHARED if rng.random() < 0.5 else own
                n = int(rng.integers(1, 6))
                ws.save_dataset(ds.subset(slice(0, n)), target)
                counts["saves"] += 1
            elif u < 0.85:
                back = ws.load_dataset(name)
                if not 1 <= len(back) <= 5 or back.labels.shape != (len(back),):
                    fail("errors", f"read {name}: inconsistent dataset of {len(back)} rows")
                counts["reads"] += 1
            elif u < 0.97:
                problems = ws.problems("datasets")
                if problems:
                    fail("errors", f"problems: {problems}")
                counts["lists"] += 1
            else:
                ws.delete("datasets", own)  # only this actor writes `own`: nothing to refuse
                counts["deletes"] += 1
                ws.save_dataset(ds, own)
                counts["saves"] += 1
        except EntryError as exc:
            msg = str(exc)
            if "no dataset named" in msg and name != SHARED:
                counts["missing"] += 1  # read between another actor's delete and re-save
            else:
                fail("corrupt" if "corrupt" in msg else "errors", f"{name}: {msg}")
        except Exception as exc:  # any other failure is a defect: report it, keep going
            fail("errors", f"{name}: {type(exc).__name__}: {exc}")
    return {"counts": dict(counts), "examples": examples}


def leftovers(root: str | Path) -> list[str]:
    """What should not be in the workspace once every writer has stopped.

    Temporary folders, versions ``CURRENT`` does not name, unreadable entries, trash.
    """
    from fisher_core.workspace import KINDS, EntryError, Workspace

    out: list[str] = []
    for kind in KINDS:  # the files as the writers left them, before anything tidies up
        base = Path(root) / kind
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if folder.name.startswith(".trash-"):
                out.append(f"{kind}/{folder.name}")
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                live = (folder / "CURRENT").read_text().strip()
            except OSError as exc:
                out.append(f"{kind}/{folder.name}: {exc}")
                continue
            out += [f"{kind}/{folder.name}/{p.name}" for p in sorted(folder.iterdir())
                    if p.name not in ("CURRENT", live)]
            if not (folder / live).is_dir():
                out.append(f"{kind}/{folder.name}: CURRENT names missing {live}")
    ws = Workspace(root)
    for kind in KINDS:
        out += [f"{kind}: {name}: {msg}" for name, msg in ws.problems(kind)]
    for name in ws.names("datasets"):
        try:
            ws.load_dataset(name)
        except EntryError as exc:
            out.append(f"load {name}: {exc}")
    return out


def run(root: str | Path, *, workers: int = 2, seconds: float = 3.0, seed: int = 0,
        in_process: bool = True) -> dict[str, Any]:
    """Run ``workers`` processes (and this one when ``in_process``) against ``root``.

    Returns the summed counts, the first errors of each actor and :func:`leftovers`.
    """
    from fisher_core.data import load_builtin
    from fisher_core.workspace import Workspace

    root = str(root)
    n_actors = workers + int(in_process)
    ws = Workspace(root)
    for name in _names(n_actors):  # every name exists before the race starts
        ws.save_dataset(load_builtin("digits").subset(slice(0, 5)), name)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.workspace.stress", "--worker", str(i), "--root", root,
         "--actors", str(n_actors), "--seconds", str(seconds), "--seed", str(seed)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(int(in_process), n_actors)]
    results = []
    try:
        for p in procs:  # imports done everywhere before the clock starts
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"worker did not start: {line!r} {p.stderr.read()[-2000:]}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        if in_process:
            results.append(actor_loop(root, 0, n_actors, seconds, seed))
        for p in procs:
            out, err = p.communicate(timeout=seconds + 120)
            if p.returncode != 0:
                results.append({"counts": {"errors": 1},
                                "examples": [f"worker exit {p.returncode}: {err[-2000:]}"]})
            else:
                results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    total: Counter[str] = Counter()
    for r in results:
        total.update(r["counts"])
    return {"counts": {k: total.get(k, 0) for k in
                       ("saves", "reads", "lists", "deletes", "missing", "errors", "corrupt")},
            "actors": n_actors, "seconds": seconds,
            "examples": [e for r in results for e in r["examples"]],
            "leftovers": leftovers(root)}


def main(argv: list[str] | None = None) -> None:
    """Command line: run the stress test (or, with ``--worker``, be one of its workers)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="workspace folder (default: a new temporary one)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--actors", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        import fisher_core.workspace  # noqa: F401  (import before saying ready)

        print("ready", flush=True)
        sys.stdin.readline()
        result = actor_loop(args.root, args.worker, args.actors, args.seconds, args.seed)
        print(json.dumps(result), flush=True)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fisherlab-stress-") as tmp:
        result = run(args.root or tmp, workers=args.workers, seconds=args.seconds,
                     seed=args.seed)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
