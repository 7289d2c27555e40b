"""The grid's orchestrator log (``HUB/analysis/logs/grid_<UTC time>.log``) and its progress over the cells."""

from __future__ import annotations

import sys
from pathlib import Path

from ... import hub as _hub
from ...provenance import utc_now
from .cell import CellResult


class _Log:
    """Append-only orchestrator log (one file per run), echoed to stdout when ``echo``.

    While a progress bar is shown, echoed lines go through ``tqdm.write`` so
    they do not break it.
    """

    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo
        self.bar = None
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        line = f"{utc_now()} {msg}"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self.echo:
            if self.bar is not None:
                self.bar.write(line)
            else:
                print(line, flush=True)


class _Progress:
    """Progress over the cells to run: a tqdm bar on a terminal, ``[k/n]`` in every cell's log line otherwise."""

    def __init__(self, total: int, log: _Log, stream=None):
        self.total, self.done, self.log = total, 0, log
        stream = stream if stream is not None else sys.stdout
        self.bar = None
        if log.echo and total and hasattr(stream, "isatty") and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", desc="grid", file=stream, dynamic_ncols=True)
            log.bar = self.bar

    def cell(self, label: str, r: CellResult) -> None:
        self.done += 1
        self.log(f"[{self.done}/{self.total}] {label}: {r.status} after {r.attempts} attempt(s)"
                 + (f" ({r.lost_attempts} lost with a worker)" if r.lost_attempts else "")
                 + f", {r.elapsed_s:.1f} s"
                 + (f", peak {r.peak_rss_bytes / 2**20:.0f} MiB" if r.peak_rss_bytes else "")
                 + (f" - {r.error_name}: {r.error_value}" if r.error_name else ""))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{label} {r.status}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.log.bar = None


def _log_path(hub: Path) -> Path:
    logdir = _hub.logs_dir(hub)
    stamp = utc_now().replace("-", "").replace(":", "")
    p = logdir / f"grid_{stamp}.log"
    i = 1
    while p.exists():
        p = logdir / f"grid_{stamp}_{i}.log"
        i += 1
    return p
