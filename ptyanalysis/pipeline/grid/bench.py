"""The grid runner's own benchmark: busy cells, one after the other and on a LocalCluster (``python -m ptyanalysis.bench``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from .job import GENERIC_JOB
from .run import run_grid
from .spec import spec_from_dict


def _write_work_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("dose = 1000\nview = 'dense'\nsplit = 'train'\nwork_s = 5.0\nkind = 'cpu'",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import time\nt = time.perf_counter()\nx = 0\n"
                                  "if kind == 'sleep':\n    time.sleep(work_s)\n"
                                  "while time.perf_counter() - t < work_s:\n    x += sum(range(2000))\n"
                                  "open('result.txt', 'w').write(str(x))"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def bench_grid(work_s: float = 5.0, n_cells: int = 4, workers: int = 2, kind: str = "cpu", root=None) -> dict:
    """Time a grid of busy cells sequentially and on a LocalCluster.

    Parameters
    ----------
    work_s : float
        Work per cell, seconds.
    kind : str
        ``"cpu"``: a pure-Python loop (needs one free core per worker to
        scale); ``"sleep"``: ``time.sleep`` (measures the runner's concurrency
        alone, meaningful on a machine busy with other work).
    n_cells : int
        Cells (doses x 1 view x 1 split).
    workers : int
        LocalCluster workers of the parallel run.
    root : str or Path, optional
        Scratch folder (default: a temporary one, removed afterwards).

    Returns
    -------
    dict
        ``sequential_s`` (serial backend), ``parallel_s`` (LocalCluster, cluster
        start included), ``ratio`` = parallel / sequential,
        ``overhead_s_mean`` / ``overhead_s_max`` (runner time per cell outside
        papermill, kernel start excluded), ``papermill_s_mean`` (kernel start +
        execution), ``resume_s`` (rerun of the complete grid).
    """
    tmp = Path(root) if root else Path(tempfile.mkdtemp(prefix="ptyanalysis-bench-grid-"))
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        nb = _write_work_notebook(tmp / "work.ipynb")
        spec = spec_from_dict({"hub": str(tmp / "hub"), "notebook": str(nb), "doses": [1000 * (i + 1) for i in range(n_cells)],
                               "views": ["dense"], "splits": ["train"], "parameters": {"work_s": float(work_s), "kind": kind},
                               "outputs": ["result.txt"], "retries": 0}, source="bench_grid")
        seq = run_grid(spec, serial=True, force=True, job=GENERIC_JOB)
        par = run_grid(spec, workers=workers, force=True, job=GENERIC_JOB)
        t = time.perf_counter()
        again = run_grid(spec, workers=workers, job=GENERIC_JOB)
        resume_s = time.perf_counter() - t
        if not (seq.ok and par.ok and again.n_skipped == n_cells):
            raise RuntimeError("the grid benchmark's runs did not all succeed (or the resume re-ran cells); "
                               f"nothing measured:\n{seq.table()}\n{par.table()}\n{again.table()}")
        over = [r.overhead_s for r in seq.results + par.results]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return {"n_cells": n_cells, "work_s": work_s, "kind": kind, "workers": workers, "cpu_count": os.cpu_count(),
                "load_avg_1min": load,
                "sequential_s": round(seq.wall_s, 2), "parallel_s": round(par.wall_s, 2),
                "ratio": round(par.wall_s / seq.wall_s, 3),
                "overhead_s_mean": round(sum(over) / len(over), 3), "overhead_s_max": round(max(over), 3),
                "papermill_s_mean": round(sum(r.papermill_s for r in seq.results) / n_cells, 2),
                "resume_s": round(resume_s, 3)}
    finally:
        if root is None:
            shutil.rmtree(tmp, ignore_errors=True)
