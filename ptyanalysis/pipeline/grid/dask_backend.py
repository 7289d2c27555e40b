"""Running the cells on Dask: a LocalCluster or a running scheduler, the cells placed on their lanes.

Dask and the kernels' module (which imports ``distributed``) are imported
when cells run, so that loading the grid (``ptyanalysis --help``) stays fast.
"""

from __future__ import annotations

import time

from ...errors import PtyAnalysisError
from .cell import CellResult, cell_attempts, run_cell
from .lanes import assign_workers, lane_loads

_UNITS = {"s": " s", "work": " work units"}  # how a lane's load is shown, by :attr:`CellCosts.unit`


def _start_local_cluster(workers: int, memory_per_worker: int | None = None):
    """A LocalCluster of ``workers`` single-threaded worker processes (``MEMORY`` resource when given)."""
    import dask
    from dask.distributed import LocalCluster

    # the workers only wait on kernels: no statistical profiler (it samples every 10 ms)
    kw = {"resources": {"MEMORY": float(memory_per_worker)}} if memory_per_worker else {}
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, **kw)


def _connect(scheduler, workers, plan, cluster_future, log):
    """A client of the scheduler, else of a LocalCluster (started now or by ``cluster_future``): (client, cluster, backend)."""
    from dask.distributed import Client

    cluster = None
    t0 = time.perf_counter()
    if scheduler:
        try:
            client = Client(scheduler, set_as_default=False)  # never leave a (failed) default client behind
        except (OSError, ValueError, TypeError) as exc:  # unreachable, timed out, unknown scheme
            log(f"FAILED: cannot connect to the Dask scheduler {scheduler}: {exc}")
            raise PtyAnalysisError(
                f"--scheduler {scheduler!r}: cannot connect ({type(exc).__name__}: {exc}); start it with "
                "`dask scheduler --host 127.0.0.1 --port 8786` and give its tcp://HOST:PORT, or omit --scheduler "
                "for a LocalCluster") from None
        backend = f"dask scheduler {scheduler}"
    else:
        per_worker = plan.budget_bytes // max(workers, 1) if plan is not None else None
        cluster = cluster_future.result() if cluster_future is not None else _start_local_cluster(workers, per_worker)
        workers = len(cluster.workers)
        client = Client(cluster, set_as_default=False)
        backend = f"dask LocalCluster ({workers} worker(s) x 1 thread)"
    log(f"backend: {backend} (ready in {time.perf_counter() - t0:.1f} s)")
    return client, cluster, backend


def _workers(client, scheduler, plan, log) -> tuple[list, list | None]:
    """The workers' addresses, and their ``MEMORY`` resources when every worker declares one (else None)."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    addresses = sorted(info)
    mem = [w.get("resources", {}).get("MEMORY") for w in info.values()]
    use_resources = bool(addresses) and all(mem) and plan is not None
    if use_resources:
        log(f"memory-aware placement: each cell reserves its estimated peak of the workers' MEMORY resource "
            f"({', '.join(f'{m / 2**30:.1f} GiB' for m in mem)})")
    elif scheduler:
        log("notice: the workers declare no MEMORY resource, so each runs as many cells at once as it has "
            "threads; start them with `--nthreads 1` or `--resources MEMORY=<bytes>` for memory-aware placement")
    return addresses, (mem if use_resources else None)


def _plan_lanes(cells, addresses, costs, log) -> dict:
    """:func:`~.lanes.assign_workers` on the cells' costs, and each worker's planned load in the log."""
    by_label = costs.costs if costs is not None else {}
    where = assign_workers(cells, addresses, by_label)
    if where:
        unit = _UNITS.get(costs.unit) if costs is not None else None
        how = ", ".join(sorted(set(costs.sources.values()))) if costs is not None else "none given"
        log(f"lanes by cost ({how}; a (dose, view) on one worker, longest first onto the least-loaded): "
            + "; ".join(f"{a}: {n} cell(s)" + (f", {load:.0f}{unit}" if unit else "")
                        for a, (n, load) in lane_loads(where, by_label).items()))
    return where


def _submit(client, cells, settings, where, plan, mem) -> dict:
    """Submit every cell, on its lane and in grid order: ``{key: (future, cell)}``."""
    pending = {}
    for i, c in enumerate(cells):
        # grid order first: a worker runs its (dose, view) groups one after the other, so the models a
        # group shares are still in its kernel's cache (Dask otherwise picks any queued cell)
        kw = {"priority": len(cells) - i}
        if c.label in where:
            kw.update(workers=[where[c.label]], allow_other_workers=True)
        if mem is not None:
            kw["resources"] = {"MEMORY": float(min(plan.cell_bytes.get(c.label, plan.max_cell_bytes), max(mem)))}
        f = client.submit(run_cell, c, settings, pure=False,
                          key=f"cell-{c.label.replace('/', '-')}-{time.time_ns()}", **kw)
        pending[f.key] = (f, c)
    return pending


def _collect(client, pending: dict, settings, progress, results: dict) -> None:
    """Each cell's result into ``results`` as it comes in; its future released at once."""
    from dask.distributed import as_completed

    for f in as_completed([f for f, _ in pending.values()], loop=client.loop):
        _, c = pending.pop(f.key)
        try:
            r = f.result()
        except Exception as exc:  # the task failed on every worker it was given (KilledWorker) or similar
            mine = cell_attempts(c, settings.run_id)
            r = CellResult(c.dose, c.view, c.split, "failed", c.output_dir, len(mine), 0.0, 0.0,
                           type(exc).__name__, str(exc),
                           lost_attempts=sum(a.get("status") in ("lost", "running") for a in mine))
        # the result is in (and the cell's files are final): release the future, so that losing the
        # worker that holds it can never make the scheduler compute it again
        f.release()
        del f
        results[c.label] = r
        progress.cell(c.label, r)


def _close(client, cluster, registered: bool, log) -> None:
    from ..kernels import PLUGIN_NAME

    t1 = time.perf_counter()
    if registered and cluster is None:
        try:  # shuts the kernels down on the workers of an external cluster
            client.unregister_worker_plugin(PLUGIN_NAME)
        except Exception as exc:  # noqa: BLE001 - a worker gone meanwhile
            log(f"notice: could not remove the kernel plugin from every worker ({type(exc).__name__}: {exc})")
    client.close()
    if cluster is not None:
        cluster.close()
    log(f"dask client{' and cluster' if cluster is not None else ''} closed in {time.perf_counter() - t1:.1f} s")


def _run_dask(cells, settings, scheduler, workers, log, plan, progress, cluster_future=None, costs=None):
    """Run the cells on Dask: ``({label: CellResult}, backend description)``."""
    from ..kernels import PLUGIN_NAME, KernelPoolPlugin

    client, cluster, backend = _connect(scheduler, workers, plan, cluster_future, log)
    results = {}
    registered = False
    try:
        addresses, mem = _workers(client, scheduler, plan, log)
        client.register_plugin(KernelPoolPlugin(reuse=settings.reuse_kernel), name=PLUGIN_NAME)
        registered = True
        where = _plan_lanes(cells, addresses, costs, log)
        _collect(client, _submit(client, cells, settings, where, plan, mem), settings, progress, results)
    finally:
        _close(client, cluster, registered, log)
    return results, backend
