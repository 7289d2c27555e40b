"""Jupyter kernels the grid reuses across cells, and the peak memory of each cell.

papermill starts a fresh kernel for every notebook, so every cell of the
grid paid for a kernel start, the ``import tensorflow`` and the loading of
its models. Here each grid worker keeps **one kernel alive** and runs its
cells in it one after the other (:class:`KernelPool`):

* before each notebook the kernel's namespace is cleared (``%reset -f``),
  its working directory set to the cell's folder and its execution counter
  reset, so a notebook sees what a fresh kernel would give it, except the
  imported modules and what they hold, e.g. the comparison job's model cache
  (:func:`ptyanalysis.pipeline.modelcache.shared_model_cache`): a model is
  loaded once per worker and reused by every cell that needs it;
* a failed attempt (an exception, a dead kernel, a timeout) discards the
  kernel: the retry, and the next cell, get a fresh one;
* the kernel's own standard output and error (TensorFlow's C++ start-up
  lines, ipykernel's log) go to a file under ``HUB/analysis/logs/kernels/``,
  never to the terminal; what the notebook prints goes to the cell's
  ``run.log`` as before;
* the peak resident memory of every cell is measured on the kernel process
  (Linux: the kernel's ``VmHWM`` high-water mark, reset before each cell
  through ``/proc/<pid>/clear_refs``; elsewhere: sampled every 0.2 s).

On Dask every worker holds its pool in a worker plugin
(:class:`KernelPoolPlugin`, registered by the grid and removed at its end,
which shuts the kernels down); ``--serial`` uses one pool in the calling
process. A kernel dies with its worker: ipykernel exits when its parent
process changes (``JPY_PARENT_PID``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from ..provenance import utc_now
from .notebook import KERNEL_ENV, kernel_arguments

#: papermill engine name of the kernel-reusing engine.
ENGINE_NAME = "ptyanalysis-reuse"
#: Dask worker plugin name.
PLUGIN_NAME = "ptyanalysis-kernels"

# Run in a reused kernel before each notebook (silently: no history, no counter increment).
_PREAMBLE = """\
get_ipython().run_line_magic('reset', '-f')
import os as _pty_os, sys as _pty_sys
_pty_os.chdir({cwd!r})
_pty_os.environ.update({env!r})
if 'matplotlib.pyplot' in _pty_sys.modules:
    _pty_sys.modules['matplotlib.pyplot'].close('all')
del _pty_os, _pty_sys
get_ipython().execution_count = 1
"""


def register_engine() -> str:
    """Register (once) the papermill engine that runs a notebook on a given kernel manager.

    papermill's own engine accepts a ``km`` but leaves the kernel client's
    channels open after each notebook; this one closes them, and keeps the
    kernel alive.

    Returns
    -------
    str
        The engine name (:data:`ENGINE_NAME`), for ``papermill.execute_notebook(engine_name=...)``.
    """
    from papermill.engines import NBClientEngine, papermill_engines

    if papermill_engines._engines.get(ENGINE_NAME) is None:
        papermill_engines.register(ENGINE_NAME, _ReuseEngine.make(NBClientEngine))
    return ENGINE_NAME


class _ReuseEngine:
    @staticmethod
    def make(base):
        class ReuseKernelEngine(base):
            @classmethod
            def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                         stderr_file=None, start_timeout=60, execution_timeout=None, km=None,
                                         **kwargs):
                import logging

                from papermill.clientwrap import PapermillNotebookClient

                for k in ("input_path", "timeout", "startup_timeout"):
                    kwargs.pop(k, None)
                client = PapermillNotebookClient(
                    nb_man, km=km, timeout=execution_timeout, startup_timeout=start_timeout,
                    kernel_name=kernel_name, log=logging.getLogger("papermill"), log_output=log_output,
                    stdout_file=stdout_file, stderr_file=stderr_file, **kwargs)
                try:
                    return client.execute()
                finally:
                    if client.kc is not None:
                        client.kc.stop_channels()

        return ReuseKernelEngine


def _run_sync(coro_fn, *args, **kwargs):
    from jupyter_core.utils import run_sync

    return run_sync(coro_fn)(*args, **kwargs)


# --------------------------------------------------------------------------- memory


def _vm_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Current resident memory of a process, bytes (None when it cannot be read)."""
    kib = _vm_kib(pid, "VmRSS")
    if kib is not None:
        return kib * 1024
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:  # noqa: BLE001 - gone, or not permitted: unknown
        return None


class PeakMemory:
    """Peak resident memory of a process over a ``with`` block.

    Linux: resets the kernel's high-water mark (``echo 5 > /proc/PID/clear_refs``)
    on entry and reads ``VmHWM`` on exit, exact whatever the block does. It
    also samples the resident size every ``interval`` seconds (the only
    source where ``/proc`` is missing or the reset is refused); the result is
    the larger of the two. ``peak`` is None when nothing could be measured.
    """

    def __init__(self, pid: int | None, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.peak: int | None = None
        self.method = "none"
        self._stop = threading.Event()
        self._sampled = 0
        self._hwm_reset = False

    def _sample(self):
        while not self._stop.wait(self.interval):
            r = rss_bytes(self.pid)
            if r is not None:
                self._sampled = max(self._sampled, r)

    def __enter__(self):
        if self.pid is None:
            return self
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self._sampled = rss_bytes(self.pid) or 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.pid is None:
            return False
        self._stop.set()
        self._thread.join()
        hwm = _vm_kib(self.pid, "VmHWM")
        values = [self._sampled] + ([hwm * 1024] if (hwm is not None and self._hwm_reset) else [])
        self.peak = max(values) or None
        self.method = "VmHWM" if (hwm is not None and self._hwm_reset) else ("sampled" if self.peak else "none")
        return False


# --------------------------------------------------------------------------- kernels


@dataclass
class Kernel:
    """A live kernel: its manager, process id and the cells run on it so far."""

    km: object
    name: str
    pid: int | None
    log_path: Path | None
    log_file: object
    started_at: str
    start_s: float
    cells: int = 0

    def alive(self) -> bool:
        """Whether the kernel process is still running."""
        try:
            return bool(_run_sync(self.km.is_alive))
        except Exception:  # noqa: BLE001 - a broken manager is a dead kernel
            return False


class KernelPool:
    """At most one live kernel, reused by the cells a worker runs one after the other.

    Parameters
    ----------
    reuse : bool
        False: every :meth:`acquire` starts a fresh kernel (papermill's behaviour).
    """

    def __init__(self, reuse: bool = True):
        self.reuse = reuse
        self.kernel: Kernel | None = None
        self.started = 0

    def acquire(self, kernel_name: str, cwd, start_timeout: float, log_dir=None,
                env: dict | None = None) -> tuple[Kernel, bool]:
        """A kernel ready to run a notebook in ``cwd``: ``(kernel, reused)``.

        A reused kernel gets the preamble (namespace cleared, ``cwd``, ``env``
        set in its ``os.environ``, execution counter reset); otherwise a fresh
        kernel is started in ``cwd`` with ``MPLBACKEND=Agg`` and ``env`` in its
        environment from the start (e.g.
        :data:`~ptyanalysis.pipeline.notebook.NOTEBOOK_DIR_ENV`, which the
        notebook reads before anything else), its standard streams going to a
        file under ``log_dir`` (or discarded when ``log_dir`` is None).
        """
        env = {str(k): str(v) for k, v in (env or {}).items()}
        k = self.kernel
        if k is not None and (not self.reuse or k.name != kernel_name or not k.alive()):
            self.discard()
            k = None
        if k is not None:
            try:
                self._preamble(k, cwd, start_timeout, env)
                return k, True
            except Exception:  # noqa: BLE001 - a kernel that cannot run the preamble is replaced
                self.discard()
        return self._start(kernel_name, cwd, start_timeout, log_dir, env), False

    def _start(self, kernel_name, cwd, start_timeout, log_dir, env=None) -> Kernel:
        from jupyter_client.manager import AsyncKernelManager

        t0 = time.perf_counter()
        log_path, fh = None, None
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            stamp = utc_now().replace("-", "").replace(":", "")
            log_path = Path(log_dir) / f"kernel_{socket.gethostname()}_{os.getpid()}_{stamp}_{self.started}.log"
            fh = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed with the kernel
        out = fh if fh is not None else open(os.devnull, "wb")  # noqa: SIM115 - closed with the kernel
        km = AsyncKernelManager(kernel_name=kernel_name)
        env = {**KERNEL_ENV, **os.environ, "MPLBACKEND": "Agg", **(env or {})}  # the one runner's kernel settings
        try:
            _run_sync(km.start_kernel, extra_arguments=kernel_arguments(kernel_name), cwd=str(cwd), env=env,
                      stdout=out, stderr=out, stdin=None)
            kc = km.client()
            kc.start_channels()
            try:
                _run_sync(kc.wait_for_ready, timeout=start_timeout)
            finally:
                kc.stop_channels()
        except BaseException:
            with contextlib.suppress(Exception):  # it did not start
                _run_sync(km.shutdown_kernel, now=True)
            out.close()
            raise
        pid = getattr(getattr(km, "provisioner", None), "pid", None)
        self.started += 1
        self.kernel = Kernel(km, kernel_name, pid, log_path, out, utc_now(), time.perf_counter() - t0)
        return self.kernel

    def _preamble(self, k: Kernel, cwd, timeout: float, env=None) -> None:
        async def run():
            kc = k.km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=timeout)
                reply = await kc.execute_interactive(_PREAMBLE.format(cwd=str(cwd), env=dict(env or {})), silent=True,
                                                     store_history=False, timeout=timeout,
                                                     output_hook=lambda msg: None)
            finally:
                kc.stop_channels()
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"kernel preamble failed: {reply['content'].get('ename')}: "
                                   f"{reply['content'].get('evalue')}")

        _run_sync(run)

    def discard(self) -> None:
        """Shut the kernel down (if any); the next :meth:`acquire` starts a fresh one."""
        k, self.kernel = self.kernel, None
        if k is None:
            return
        with contextlib.suppress(Exception):  # already dead
            _run_sync(k.km.shutdown_kernel, now=True)
        with contextlib.suppress(Exception):
            k.log_file.close()

    close = discard


class KernelPoolPlugin(WorkerPlugin):
    """Dask worker plugin: one :class:`KernelPool` per worker, closed when the plugin is removed."""

    name = PLUGIN_NAME

    def __init__(self, reuse: bool = True):
        self.reuse = reuse
        self.pool = None

    def setup(self, worker):
        self.pool = KernelPool(reuse=self.reuse)

    def teardown(self, worker):
        if self.pool is not None:
            self.pool.close()


def worker_pool() -> KernelPool | None:
    """The calling Dask worker's pool (None outside a worker, or when the plugin is not registered)."""
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return None
    plugin = w.plugins.get(PLUGIN_NAME)
    return getattr(plugin, "pool", None)


def host_info() -> dict:
    """Where the calling code runs: host, process id and (on a Dask worker) the worker's address."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "worker": None}
    try:
        from distributed import get_worker

        info["worker"] = get_worker().address
    except (ImportError, ValueError):
        pass
    return info

