"""The real study end to end on one machine, stage by stage, timed: ``python -m ptyanalysis.gpu_study HUB``.

Prepared for a GPU machine with JAX or PyTorch and no TensorFlow (it runs
anywhere): ``simulate --size study``, ``train`` at the study's own budget
(4,000 optimiser steps per network), the comparison grid and Phase G, each
as ``python -m ptyanalysis ...`` in its own process with a time limit, for
the doses asked (default one, 1e3: four grid cells). It prints each stage's
wall time as it ends and a summary, and writes them as JSON
(``--json``), so the three-dose study's time can be estimated from one
dose's. A stage that fails or runs out of time stops the run (non-zero
exit) with its last output lines.

Examples
--------
``KERAS_BACKEND=jax python -m ptyanalysis.gpu_study /tmp/study --doses 1000 --json study_times.json``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

#: Stages in order: name, ptyanalysis arguments (``{hub}``, ``{doses}`` and ``{grid}`` filled in).
STAGES = (
    ("simulate", ["simulate", "{hub}", "--size", "{size}", "--doses", "{doses}"]),
    ("train", ["train", "{hub}", "--budget", "{size}", "--doses", "{doses}"]),
    ("grid", ["grid", "{grid}", "--quiet"]),
    ("phase-g", ["phase-g", "{hub}"]),
)


def grid_spec(hub: Path, doses) -> dict:
    """The comparison grid of the doses asked on ``hub`` (both views, both splits; the package's own template)."""
    from .pipeline.notebook import template_path

    return {"hub": str(hub), "notebook": str(template_path("00_compare_arms")), "doses": [float(d) for d in doses],
            "views": ["dense", "sparse"], "splits": ["train", "test"],
            "outputs": ["comparison_metrics.csv", "comparison.nc"], "retries": 0}


def stage_commands(hub, doses=(1000.0,), *, size: str = "study", steps: int | None = None,
                   backend: str | None = None) -> list:
    """``[(stage, ptyanalysis arguments)]`` of a run (the grid's spec is written next to the hub by :func:`run_stages`)."""
    hub = Path(hub).resolve()
    fill = {"{hub}": str(hub), "{grid}": str(hub / "gpu_study_grid.yaml"), "{size}": size}
    out = []
    for name, args in STAGES:
        argv = []
        for a in args:
            argv += [f"{d:g}" for d in doses] if a == "{doses}" else [fill.get(a, a)]
        if name == "train" and steps is not None:
            argv += ["--steps", str(int(steps))]
        if backend and name in ("train", "grid"):
            argv += ["--backend", backend]
        out.append((name, argv))
    return out


def run_stages(hub, doses=(1000.0,), *, size: str = "study", steps: int | None = None, timeout_s: float = 1800.0,
               backend: str | None = None, say=print, on_stage=None) -> list:
    """Run the stages; return one row per stage (``stage``, ``seconds``, ``returncode``, ``tail``).

    Parameters
    ----------
    hub : path
        The study hub to make (kept: a later run reuses what is complete).
    doses : sequence of float
    size : str
        Simulation size and training budget preset (``study``; ``ci`` to try the script).
    steps : int, optional
        Optimiser steps per network instead of the preset's (the study's is 4,000).
    timeout_s : float
        Time limit of each stage.
    backend : str, optional
        Keras backend (``--backend``); default the environment's choice.
    say : callable
    on_stage : callable, optional
        Called with the rows so far after each stage (e.g. to save them: a run stopped from outside keeps them).

    Returns
    -------
    list of dict
    """
    import yaml

    hub = Path(hub).resolve()
    hub.mkdir(parents=True, exist_ok=True)
    (hub / "gpu_study_grid.yaml").write_text(yaml.safe_dump(grid_spec(hub, doses)))
    rows = []
    for name, argv in stage_commands(hub, doses, size=size, steps=steps, backend=backend):
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-m", "ptyanalysis", *argv], capture_output=True, text=True,
                               timeout=timeout_s, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            rc, out = r.returncode, (r.stdout + r.stderr)
        except subprocess.TimeoutExpired as exc:
            rc, out = 124, f"{exc.stdout or ''}{exc.stderr or ''}"
            out = out.decode() if isinstance(out, bytes) else out
        dt = time.perf_counter() - t0
        rows.append({"stage": name, "seconds": round(dt, 1), "returncode": rc,
                     "tail": "\n".join(out.strip().splitlines()[-8:])})
        say(f"{name:9s} {dt:8.1f} s  rc {rc}  (ptyanalysis {' '.join(argv)})")
        if on_stage is not None:
            on_stage(rows)
        if rc != 0:
            say(rows[-1]["tail"])
            break
    return rows


def main(argv=None) -> int:
    """Run the study stages and print their times.

    Parameters
    ----------
    argv : list of str, optional
        Default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 when every stage succeeded, 1 otherwise, 2 on bad arguments.
    """
    ap = argparse.ArgumentParser(prog="python -m ptyanalysis.gpu_study", description=__doc__.splitlines()[0])
    ap.add_argument("hub", type=Path, help="study hub to make (reused when complete)")
    ap.add_argument("--doses", type=float, nargs="+", default=[1000.0], help="photons per pattern (default 1000)")
    ap.add_argument("--size", default="study", choices=("ci", "demo", "study"),
                    help="simulation size and training budget (default study)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per network (default: the budget's)")
    ap.add_argument("--dry-run", action="store_true", help="print the stages' commands; run nothing")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds each stage may take (default 1800)")
    ap.add_argument("--backend", default=None, help="Keras backend (default: KERAS_BACKEND, else automatic)")
    ap.add_argument("--json", metavar="PATH", help="also write the stage times as JSON")
    args = ap.parse_args(argv)
    if args.hub.exists() and not args.hub.is_dir():
        print(f"error: {args.hub} exists and is not a folder", file=sys.stderr)
        return 2
    if args.dry_run:
        for name, cmd in stage_commands(args.hub, args.doses, size=args.size, steps=args.steps, backend=args.backend):
            print(f"{name}: python -m ptyanalysis {' '.join(cmd)}")
        return 0
    from .fileutil import write_json

    t0 = time.perf_counter()

    def save(rows, done=False):
        if args.json:
            ok = done and len(rows) == len(STAGES) and all(r["returncode"] == 0 for r in rows)
            write_json(args.json, {"doses": args.doses, "size": args.size, "stages": rows, "finished": done,
                                   "total_s": round(time.perf_counter() - t0, 1), "ok": ok,
                                   "keras_backend": os.environ.get("KERAS_BACKEND")})

    rows = run_stages(args.hub, args.doses, size=args.size, steps=args.steps, timeout_s=args.timeout,
                      backend=args.backend, on_stage=save)
    total = time.perf_counter() - t0
    ok = len(rows) == len(STAGES) and all(r["returncode"] == 0 for r in rows)
    print(f"total {total:.1f} s for {len(args.doses)} dose(s) ({4 * len(args.doses)} grid cells); "
          + ("every stage succeeded" if ok else "FAILED"))
    save(rows, done=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
