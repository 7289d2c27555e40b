"""Today's PtychoPINN study outputs (its grid-lines study runners) read as Phase G jobs.

PtychoPINN's current study runners (``scripts/studies/grid_lines_compare_wrapper.py``,
which runs ``ptycho/workflows/grid_lines_workflow.py`` for its TensorFlow rows and
``scripts/studies/grid_lines_torch_runner.py`` for its PyTorch rows; read at commit
712c23f) write one **study folder** per run::

    STUDY/
      invocation.json          the wrapper's argv, parsed_args (N, gridsize, nphotons, ...),
                               extra.git_commit, then status ("completed" | "failed"), exit_code, error
      metrics.json             {model_id: {mae|mse|psnr|ssim|ms_ssim|frc50|frc1over7: [amplitude, phase],
                                           frc: [amplitude curve, phase curve]}}  (or {"error": ...})
      metrics_by_model.json    {model_id: {reference_shape, metrics: {...the same...}}}
      metrics_table.csv        model_id, model_label, N, <metric>_amp, <metric>_phase
      model_manifest.json      {benchmark_status, claim_boundary, rows: [{model_id, model_label, N,
                                epoch_budget, final_completed_epoch, final_train_loss, validation_loss,
                                runtime_summary: {train_wall_time_sec, inference_time_sec}, ...}]}
      recons/<label>/recon.npz YY_pred (complex 2-D), amp, phase; label = model_id, "gt" = ground truth
      runs/<model_id>/         invocation.json (status, exit_code), config.json (``grid_lines_config`` for the
                               TensorFlow rows, ``torch_runner_config`` for the PyTorch rows), history.json,
                               metrics.json (the same metric dict), stdout.log, stderr.log, model.pt
      lightning_logs/version_<N>/metrics.csv   the PyTorch rows' Lightning CSV logs (the runner trains with
                               the study folder as output_dir: one version per row, shared), checkpoints/
      datasets/N<N>/gs<g>/{train,test}.npz, visuals/*.png

Supported: such a folder, or a folder holding several of them (a sweep: found up to
:data:`MAX_DEPTH` levels down). Each study folder is **one Phase G job**: dose =
``nphotons``, view = ``N<N>-gs<gridsize>`` (a grid-lines scan has no dense/sparse
subsample), split = ``test`` (the runners score the test split only). Metrics come
from ``metrics.json``, else ``metrics_by_model.json``, else ``runs/<id>/metrics.json``,
else ``metrics_table.csv``, per model, in that order; ``computation_time_s`` from
``model_manifest.json`` (inference time). When ``metrics.json`` was written by
``grid_lines_workflow`` alone (``json.dumps(default=str)``) float32 numbers and FRC
curves are strings: they are parsed, and the output says so.

Not supported: ``compare_models.py`` folders (already the hub layout, read by
:func:`~ptyanalysis.phase_g.collect.collect_jobs`), the paper-benchmark bundles'
extra manifests (``paper_benchmark_manifest.json``, ``metric_schema.json``: not
needed, not checked), MLflow or TensorBoard logs, PtychoViT's HDF5 outputs.

Model ids map to arms through :data:`MODEL_ARMS` (``pinn`` -> PtychoPINN,
``baseline`` -> Baseline, ``gt`` -> ground truth); with no ``pinn`` (``baseline``)
row, a single ``pinn_*`` (``supervised_*``) row takes the arm, with a note; any
other mapping is explicit (``arms={"PtychoPINN": "pinn_ffno"}``, ``phase-g --arm``).
The grid-lines runners have no iterative arm: PtyChi is reported missing.

:func:`import_studies` writes each job in the hub layout that the rest of Phase G
reads (``analysis/dose_<D>/<view>/test/comparison_metrics.csv``,
``reconstructions.npz``, ``*_frc_curves.csv``, :data:`SOURCE_FILE`, and
``analysis/comparison_manifest.json``), so the report, the notebook and ``verify``
need nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import RECONSTRUCTION_PREFIXES, dose_label
from ..errors import PtyAnalysisError, did_you_mean
from ..fileutil import write_json, write_npz, write_text
from ..phase_g.schema import FILES, FRC_COLUMNS, METRICS_COLUMNS

#: PtychoPINN metric key (``ptycho.evaluation.eval_reconstruction``) -> (our metric, what it is).
#: Both tools use the same convention (docs/formats.md#metric-conventions), so the numbers are copied as they are.
METRIC_MAP = {
    "mae": ("mae", "mean absolute error; amplitude rescaled to the ground truth's mean, phase plane-removed, radians"),
    "mse": ("mse", "mean squared error; same preprocessing as mae"),
    "psnr": ("psnr", "PSNR in dB with a peak of 255 (PtychoPINN's convention)"),
    "ssim": ("ssim", "SSIM, scikit-image defaults; phase on (phi + pi) / 2 pi"),
    "ms_ssim": ("ms_ssim", "MS-SSIM, 5 levels, amplitude pre-smoothed (sigma 1)"),
    "frc50": ("frc50", "first FRC ring below 0.5, ring-index units (PtychoPINN 'frequency_bin')"),
    "frc1over7": ("frc1over7", "first FRC ring below 1/7, ring-index units"),
    "frc": (None, "FRC curves [amplitude, phase] per ring -> <prefix>_frc_curves.csv"),
}
#: ``model_manifest.json`` row field -> our scalar metric.
RUNTIME_MAP = {"inference_time_sec": "computation_time_s"}
#: Keys of a metric dict that are not metrics (skipped without a note).
NON_METRIC_KEYS = ("reference_shape", "label", "metrics_scaled")
#: PtychoPINN model id (``recons/<label>``, ``runs/<model_id>``) -> canonical arm.
MODEL_ARMS = {"pinn": "PtychoPINN", "baseline": "Baseline", "gt": "GroundTruth"}
#: Model-id prefixes that may stand in for an arm when its own id is absent (one such model only).
ARM_FALLBACK_PREFIXES = {"PtychoPINN": "pinn_", "Baseline": "supervised_"}
#: The split the grid-lines runners score.
SPLIT = "test"
#: How deep below the given root study folders are searched for.
MAX_DEPTH = 3
#: Folders never searched for studies (a study's own sub-folders and the hub's analysis).
SKIP_DIRS = frozenset({"analysis", "recons", "runs", "datasets", "visuals", "lightning_logs", "checkpoints",
                       "data", "logs", "__pycache__", ".git"})
#: File written into each imported job folder: where its numbers come from.
SOURCE_FILE = "ptychopinn_study_source.json"
#: ``made_by`` of the manifest and source files this module writes.
MADE_BY = "ptyanalysis.phase_g.ptychopinn_study (import of a PtychoPINN grid-lines study folder)"


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class StudyModel:
    """One model row of a PtychoPINN study folder.

    Attributes
    ----------
    model_id : str
        PtychoPINN's id (``pinn``, ``baseline``, ``pinn_ffno``, ...).
    arm : str or None
        The canonical arm it is reported as; ``None``: not reported (listed in the notes).
    label : str or None
        Its ``model_label`` (``model_manifest.json`` / ``metrics_table.csv``).
    metrics : tuple of dict
        Phase G rows ``{model, metric, amplitude, phase}`` / ``{model, metric, value}`` (model = the arm).
    metrics_source : str or None
        The file the metrics come from (study-relative).
    frc : dict or None
        ``{"amplitude": ndarray, "phase": ndarray}`` FRC curves.
    recon : Path or None
        ``recons/<model_id>/recon.npz``.
    run_dir : Path or None
        ``runs/<model_id>``.
    histories : tuple of Path
        Training histories found for it (``history.json``, Lightning ``metrics.csv``).
    status : str or None
        Its run's ``invocation.json`` status.
    error : str or None
        Why it has no metrics (an ``{"error": ...}`` entry or a failed run).
    """

    model_id: str
    arm: str | None
    label: str | None = None
    metrics: tuple = ()
    metrics_source: str | None = None
    frc: dict | None = None
    recon: Path | None = None
    run_dir: Path | None = None
    histories: tuple = ()
    status: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class PtychoPINNStudy:
    """One PtychoPINN study folder as one Phase G job.

    Attributes
    ----------
    root : Path
        The study folder.
    dose : int
        ``nphotons``.
    view : str
        ``N<N>-gs<gridsize>``.
    split : str
        ``"test"``.
    status : str
        ``"success"`` or ``"failed"`` (the wrapper's ``invocation.json``).
    error : str or None
    models : tuple of StudyModel
    ground_truth : Path or None
        ``recons/gt/recon.npz``.
    invocation : dict
        ``{script, argv, git_commit, status, exit_code, finished_at_utc}`` (what is there).
    notes : tuple of str
        What was accepted loosely, skipped or inferred.
    """

    root: Path
    dose: int
    view: str
    split: str
    status: str
    error: str | None = None
    models: tuple = ()
    ground_truth: Path | None = None
    invocation: dict = field(default_factory=dict)
    notes: tuple = ()

    def arm_model(self, arm: str) -> StudyModel | None:
        """The model reported as ``arm``, or None."""
        return next((m for m in self.models if m.arm == arm), None)


@dataclass(frozen=True)
class StudyImport:
    """What :func:`import_studies` wrote.

    Attributes
    ----------
    hub : Path
        Where the jobs were written (``HUB/analysis/...``).
    studies : tuple of PtychoPINNStudy
    job_dirs : tuple of Path
    notes : tuple of str
        Every study's notes, prefixed by its folder.
    """

    hub: Path
    studies: tuple = ()
    job_dirs: tuple = ()
    notes: tuple = ()


# --------------------------------------------------------------------------- helpers


def _rel(path, root) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _load_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PtyAnalysisError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise PtyAnalysisError(f"{path}: invalid JSON ({exc}); expected {what} as PtychoPINN's study runner "
                               "writes it; rerun the study or remove the damaged file") from None


def _dict_or_none(path: Path, what: str) -> dict | None:
    if not path.is_file():
        return None
    data = _load_json(path, what)
    if not isinstance(data, dict):
        raise PtyAnalysisError(f"{path}: expected a JSON object ({what}), got {type(data).__name__}")
    return data


def _value(v, path, key: str, loose: list):
    """A metric number: a JSON number, null, or (loosely) a numeric string; non-finite -> None."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise PtyAnalysisError(f"{path}: key {key!r}: expected a number, got {v!r}")
    if isinstance(v, (int, float)):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            raise PtyAnalysisError(f"{path}: key {key!r}: expected a number, got the string {v!r}; "
                                   "regenerate the metrics with the study runner") from None
        loose.append(key)
    else:
        raise PtyAnalysisError(f"{path}: key {key!r}: expected a number, got {type(v).__name__} {v!r}")
    return f if math.isfinite(f) else None


def _curve(v, path, key: str, notes: list):
    """One FRC curve: a list of numbers, or (loosely) numpy's printed array ``"[1. 0.9 ...]"``."""
    if v is None:
        return None
    if isinstance(v, list):
        try:
            return np.array([np.nan if e is None else float(e) for e in v], dtype=float)
        except (TypeError, ValueError):
            raise PtyAnalysisError(f"{path}: key {key!r}: expected a list of numbers (an FRC curve)") from None
    if isinstance(v, str):
        if "..." in v:
            notes.append(f"{key}: the FRC curve was stored as numpy's abbreviated text ('...'); curve skipped")
            return None
        try:
            arr = np.array([float(t) for t in v.replace("[", " ").replace("]", " ").replace(",", " ").split()])
        except ValueError:
            notes.append(f"{key}: the FRC curve is a string that is not a list of numbers; curve skipped")
            return None
        notes.append(f"{key}: the FRC curve was stored as text (json default=str); parsed")
        return arr
    raise PtyAnalysisError(f"{path}: key {key!r}: expected an FRC curve (list of numbers), got {type(v).__name__}")


def metric_rows(payload: dict, arm: str, path, prefix: str = "") -> tuple[list, dict | None, list]:
    """Phase G rows from one PtychoPINN metric dict (``eval_reconstruction``'s output as JSON).

    Parameters
    ----------
    payload : dict
        ``{mae: [amplitude, phase], ..., frc: [curve, curve]}``.
    arm : str
        The arm the rows are for.
    path : Path
        The file (for messages).
    prefix : str
        Key path of ``payload`` in the file (for messages), e.g. ``"pinn."``.

    Returns
    -------
    rows : list of dict
    frc : dict or None
    notes : list of str

    Raises
    ------
    PtyAnalysisError
        A metric that is not a pair of numbers.
    """
    rows, notes, loose = [], [], []
    frc = None
    for key, v in payload.items():
        if key in NON_METRIC_KEYS:
            continue
        if key not in METRIC_MAP:
            notes.append(f"{path.name}: {prefix}{key}: not a metric Phase G knows; skipped")
            continue
        ours = METRIC_MAP[key][0]
        if ours is None:  # the FRC curves
            if v is None:
                continue
            if not isinstance(v, list) or len(v) != 2:
                raise PtyAnalysisError(f"{path}: key {prefix + key!r}: expected [amplitude curve, phase curve]")
            a = _curve(v[0], path, f"{prefix}{key}[0]", notes)
            p = _curve(v[1], path, f"{prefix}{key}[1]", notes)
            if a is not None and p is not None:
                if len(a) != len(p):
                    notes.append(f"{path.name}: {prefix}{key}: amplitude and phase curves differ in length "
                                 f"({len(a)} vs {len(p)}); curves skipped")
                else:
                    frc = {"amplitude": a, "phase": p}
            continue
        if not isinstance(v, list) or len(v) != 2:
            raise PtyAnalysisError(f"{path}: key {prefix + key!r}: expected [amplitude, phase] (two numbers), got "
                                   f"{json.dumps(v)[:80]}; regenerate the metrics with the study runner")
        rows.append({"model": arm, "metric": ours,
                     "amplitude": _value(v[0], path, f"{prefix}{key}[0]", loose),
                     "phase": _value(v[1], path, f"{prefix}{key}[1]", loose)})
    if loose:
        notes.append(f"{path.name}: {len(loose)} metric value(s) stored as strings (e.g. {loose[0]}); read as numbers")
    return rows, frc, notes


def _table_rows(path: Path, loose_notes: list) -> dict:
    """``metrics_table.csv`` -> ``{model_id: ({metric: [amp, phase]}, label, N)}``."""
    out = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "model_id" not in (reader.fieldnames or ()):
            raise PtyAnalysisError(f"{path}: no 'model_id' column; expected PtychoPINN's metrics_table.csv "
                                   "(model_id, model_label, N, <metric>_amp, <metric>_phase)")
        for row in reader:
            mid = (row.get("model_id") or "").strip()
            payload = {}
            for key in METRIC_MAP:
                a, p = row.get(f"{key}_amp"), row.get(f"{key}_phase")
                if a is None and p is None:
                    continue
                payload[key] = [(a or "").strip() or None, (p or "").strip() or None]
            out[mid] = (payload, (row.get("model_label") or "").strip() or None, (row.get("N") or "").strip())
    return out


def _recon_image(path: Path, notes: list) -> np.ndarray:
    """The complex 2-D image of a ``recon.npz`` (``YY_pred``; else ``amp``/``phase``, with a note)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "YY_pred" in files:
                img = np.asarray(z["YY_pred"])
            elif {"amp", "phase"} <= files:
                img = np.asarray(z["amp"]) * np.exp(1j * np.asarray(z["phase"]))
                notes.append(f"{path.name}: no YY_pred; built from amp and phase")
            else:
                raise PtyAnalysisError(f"{path}: no 'YY_pred' (nor 'amp' and 'phase'); expected PtychoPINN's "
                                       f"save_recon_artifact output, found {', '.join(sorted(files)) or 'nothing'}")
    except (OSError, ValueError, EOFError) as exc:
        raise PtyAnalysisError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    img = np.squeeze(img)
    if img.ndim > 2:
        notes.append(f"{path.name}: YY_pred has shape {img.shape}; the first image taken (as PtychoPINN's "
                     "save_recon_artifact does)")
        img = img.reshape((-1,) + img.shape[-2:])[0]
    if img.ndim != 2:
        raise PtyAnalysisError(f"{path}: key 'YY_pred': expected a 2-D complex image, got shape {img.shape}")
    return img.astype(np.complex64)


def _first(*pairs):
    """The first (value, source) whose value is not None."""
    for v, src in pairs:
        if v is not None:
            return v, src
    return None, None


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


# --------------------------------------------------------------------------- finding


def is_study_dir(path) -> bool:
    """True when ``path`` looks like a PtychoPINN grid-lines study folder.

    It must have ``metrics.json``, ``metrics_by_model.json`` or ``metrics_table.csv`` beside
    ``recons/`` or ``runs/``, or a ``runs/<id>/`` with ``metrics.json`` or ``invocation.json``.
    """
    p = Path(path)
    if not p.is_dir():
        return False
    has_metrics = any((p / f).is_file() for f in ("metrics.json", "metrics_by_model.json", "metrics_table.csv"))
    if has_metrics and ((p / "recons").is_dir() or (p / "runs").is_dir()):
        return True
    runs = p / "runs"
    return runs.is_dir() and any((r / "metrics.json").is_file() or (r / "invocation.json").is_file()
                                 for r in runs.iterdir() if r.is_dir())


def find_studies(root, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Every PtychoPINN study folder at or below ``root`` (not inside another one).

    Parameters
    ----------
    root : str or Path
    max_depth : int
        Levels below ``root`` searched.

    Returns
    -------
    list of Path
        Sorted.
    """
    root = Path(root)
    found = []

    def walk(d: Path, depth: int):
        if is_study_dir(d):
            found.append(d)
            return
        if depth >= max_depth:
            return
        try:
            subs = sorted(s for s in d.iterdir() if s.is_dir() and s.name not in SKIP_DIRS and not s.name.startswith("."))
        except OSError:
            return
        for s in subs:
            walk(s, depth + 1)

    if root.is_dir():
        walk(root, 0)
    return found


# --------------------------------------------------------------------------- reading


def _arm_table(model_ids, arms: dict | None, notes: list) -> dict:
    """``{model_id: arm}`` for every model id (``None``: not reported)."""
    ids = [m for m in model_ids if m != "gt"]
    explicit = {}
    for arm, mid in (arms or {}).items():
        if arm not in ("PtychoPINN", "Baseline", "PtyChi"):
            raise PtyAnalysisError(f"arms: unknown arm {arm!r}; expected PtychoPINN, Baseline or PtyChi"
                                       + did_you_mean(arm, ("PtychoPINN", "Baseline", "PtyChi")))
        explicit[mid] = arm
    table = {}
    taken = set(explicit.values())
    for mid in ids:
        if mid in explicit:
            table[mid] = explicit[mid]
        elif mid in MODEL_ARMS and MODEL_ARMS[mid] not in taken:
            table[mid] = MODEL_ARMS[mid]
        else:
            table[mid] = None
    for arm, prefix in ARM_FALLBACK_PREFIXES.items():
        if arm in table.values():
            continue
        cands = [m for m in ids if table.get(m) is None and m.startswith(prefix)]
        if len(cands) == 1:
            table[cands[0]] = arm
            notes.append(f"model {cands[0]!r} reported as the {arm} arm (no {'pinn' if arm == 'PtychoPINN' else 'baseline'!r} "
                         "row; pass arms= / --arm to choose another)")
    unmapped = [m for m in ids if table.get(m) is None]
    if unmapped:
        notes.append(f"model(s) not reported as an arm: {', '.join(unmapped)} (Phase G compares PtychoPINN, Baseline and "
                     "PtyChi; choose with arms= / --arm ARM=MODEL_ID)")
    return table


def read_study(path, arms: dict | None = None, dose: float | None = None) -> PtychoPINNStudy:
    """Read one PtychoPINN study folder (the layout of the module docstring).

    Parameters
    ----------
    path : str or Path
        The study folder.
    arms : dict, optional
        ``{arm: model_id}`` overriding :data:`MODEL_ARMS`.
    dose : float, optional
        Photons per pattern, instead of the recorded ``nphotons`` (needed when the folder records none).

    Returns
    -------
    PtychoPINNStudy

    Raises
    ------
    PtyAnalysisError
        Not a study folder, malformed files (the file and key are named), or no dose.
    """
    root = Path(path)
    if not is_study_dir(root):
        raise PtyAnalysisError(f"{root}: not a PtychoPINN study folder (expected metrics.json, metrics_by_model.json "
                               "or metrics_table.csv beside recons/ or runs/, as grid_lines_compare_wrapper writes)")
    notes: list = []
    inv_path = root / "invocation.json"
    inv = _dict_or_none(inv_path, "the wrapper's invocation record") or {}
    if not inv:
        notes.append("no invocation.json: the run's status, argv and commit are unknown")
    run_dirs = {r.name: r for r in sorted((root / "runs").iterdir()) if r.is_dir()} if (root / "runs").is_dir() else {}
    run_inv = {mid: _dict_or_none(r / "invocation.json", "a run's invocation record") or {} for mid, r in run_dirs.items()}
    run_cfg = {mid: _dict_or_none(r / "config.json", "a run's config") or {} for mid, r in run_dirs.items()}
    manifest = _dict_or_none(root / "model_manifest.json", "the model manifest") or {}
    mrows = manifest.get("rows") if isinstance(manifest.get("rows"), list) else []
    mrows = {str(r.get("model_id")): r for r in mrows if isinstance(r, dict) and r.get("model_id")}

    # dose, N, gridsize: the wrapper's parsed args first, then the runs' records
    pa = inv.get("parsed_args") if isinstance(inv.get("parsed_args"), dict) else {}
    cand_dose = [(pa.get("nphotons"), "invocation.json parsed_args.nphotons")]
    cand_n = [(pa.get("N"), "invocation.json parsed_args.N")]
    cand_g = [(pa.get("gridsize"), "invocation.json parsed_args.gridsize")]
    for mid in run_dirs:
        c, i = run_cfg[mid], run_inv[mid]
        for src, d in ((f"runs/{mid}/config.json", c), (f"runs/{mid}/invocation.json", i.get("parsed_args"))):
            cand_dose += [(_get(d, "grid_lines_config", "nphotons"), f"{src} grid_lines_config.nphotons"),
                          (_get(d, "nphotons"), f"{src} nphotons"),
                          (_get(d, "torch_runner_config", "nphotons"), f"{src} torch_runner_config.nphotons")]
            cand_n += [(_get(d, "grid_lines_config", "N"), f"{src} grid_lines_config.N"),
                       (_get(d, "torch_runner_config", "N"), f"{src} torch_runner_config.N"), (_get(d, "N"), f"{src} N")]
            cand_g += [(_get(d, "grid_lines_config", "gridsize"), f"{src} grid_lines_config.gridsize"),
                       (_get(d, "torch_runner_config", "gridsize"), f"{src} torch_runner_config.gridsize"),
                       (_get(d, "gridsize"), f"{src} gridsize")]
    cand_n += [(r.get("N"), "model_manifest.json rows[].N") for r in mrows.values()]
    if dose is not None:
        d_val, d_src = dose, "the dose given"
    else:
        d_val, d_src = _first(*cand_dose)
    if d_val is None:
        raise PtyAnalysisError(f"{root}: no dose: none of invocation.json parsed_args.nphotons, runs/<id>/config.json "
                               "grid_lines_config.nphotons or nphotons is there; pass the photons per pattern "
                               "(dose= / phase-g --dose)")
    try:
        d = float(d_val)
        dose_label(d)
    except (TypeError, ValueError, PtyAnalysisError):
        raise PtyAnalysisError(f"{root}: {d_src}: expected a positive whole number of photons, got {d_val!r}") from None
    n_val, _ = _first(*cand_n)
    g_val, _ = _first(*cand_g)
    try:
        view = f"N{int(n_val)}-gs{int(g_val)}" if n_val is not None and g_val is not None else "grid"
    except (TypeError, ValueError):
        view = "grid"
    if view == "grid":
        notes.append("N or gridsize not recorded: view named 'grid'")
    notes.append(f"dose {int(d)} from {d_src}; view {view!r} (a grid-lines scan); split 'test' (the runner scores "
                 "the test split only)")

    # status
    status, error = "success", None
    st, code = inv.get("status"), inv.get("exit_code")
    if st == "failed" or (code is not None and code != 0):
        status = "failed"
        error = f"PtychoPINN's study runner {st or 'exited'} (exit code {code}): {inv.get('error') or 'no error text'}"
    elif inv and st is None:
        notes.append("invocation.json has no status: the run may not have finished (read as it is)")

    # metrics per model, in order of precedence
    sources: dict = {}
    m_json = _dict_or_none(root / "metrics.json", "{model_id: metrics}")
    if m_json is not None:
        for mid, v in m_json.items():
            sources.setdefault(mid, ("metrics.json", v, f"{mid}."))
    mbm = _dict_or_none(root / "metrics_by_model.json", "{model_id: {reference_shape, metrics}}")
    if mbm is not None:
        for mid, v in mbm.items():
            if isinstance(v, dict) and isinstance(v.get("metrics"), dict):
                sources.setdefault(mid, ("metrics_by_model.json", v["metrics"], f"{mid}.metrics."))
    for mid, r in run_dirs.items():
        rm = _dict_or_none(r / "metrics.json", "the run's metrics")
        if rm is not None:
            sources.setdefault(mid, (f"runs/{mid}/metrics.json", rm, ""))
    labels: dict = {mid: r.get("model_label") for mid, r in mrows.items()}
    table_path = root / "metrics_table.csv"
    if table_path.is_file():
        for mid, (payload, label, _n) in _table_rows(table_path, notes).items():
            labels.setdefault(mid, label)
            sources.setdefault(mid, ("metrics_table.csv", payload, f"{mid}."))
    recon_dirs = {r.name: r / "recon.npz" for r in sorted((root / "recons").iterdir())
                  if (r / "recon.npz").is_file()} if (root / "recons").is_dir() else {}
    model_ids = list(dict.fromkeys([*sources, *recon_dirs, *run_dirs]))
    table = _arm_table(model_ids, arms, notes)

    from ..training_history import find_training_histories

    # The torch runner trains with the study folder as Lightning's output_dir: STUDY/lightning_logs/version_<N>
    # is shared by every PyTorch row (one version per training). It is matched to a model only when one row ran
    # on PyTorch; each row's own runs/<id>/history.json (the same losses per epoch) is judged in any case.
    torch_ids = [mid for mid in run_dirs if "torch_runner_config" in run_cfg[mid]
                 or str(run_inv[mid].get("script", "")).endswith("grid_lines_torch_runner.py")]
    shared_logs = [p for p in find_training_histories(root)[0] if p.name == "metrics.csv"]
    n_versions = len(list((root / "lightning_logs").glob("version_*/metrics.csv")))
    if shared_logs and len(torch_ids) == 1:
        notes.append(f"{_rel(shared_logs[0], root)} matched to {torch_ids[0]!r} (the only PyTorch row)"
                     + (f"; {n_versions - 1} older version(s) not read" if n_versions > 1 else ""))
    elif shared_logs:
        notes.append(f"lightning_logs/ holds {n_versions} version(s) shared by the PyTorch rows "
                     f"({', '.join(torch_ids) or 'none found in runs/'}): not matched to a model; each row's "
                     "runs/<id>/history.json is judged instead")

    models = []
    for mid in [m for m in model_ids if m != "gt"]:
        arm = table.get(mid)
        rows, frc, err, src = [], None, None, None
        if mid in sources:
            src, payload, prefix = sources[mid]
            fpath = root / src
            if not isinstance(payload, dict):
                raise PtyAnalysisError(f"{fpath}: key {mid!r}: expected a metrics object, got {type(payload).__name__}")
            if "error" in payload and not any(k in payload for k in METRIC_MAP):
                err = f"{src}: {payload['error']}"
            else:
                rows, frc, n = metric_rows(payload, arm or mid, fpath, prefix)
                notes += n
        mrow = mrows.get(mid, {})
        for key, ours in RUNTIME_MAP.items():
            t = _get(mrow, "runtime_summary", key)
            if t is not None and rows:
                tv = _value(t, root / "model_manifest.json", f"rows[{mid}].runtime_summary.{key}", [])
                rows.append({"model": arm or mid, "metric": ours, "value": tv})
        rinv = run_inv.get(mid, {})
        rst, rcode = rinv.get("status"), rinv.get("exit_code")
        if rst == "failed" or (rcode is not None and rcode != 0):
            err = f"runs/{mid}/invocation.json: status {rst}, exit code {rcode}: {rinv.get('error') or 'no error text'}"
            rows, frc = [], None
        hist: list = []
        for place in ([run_dirs[mid]] if mid in run_dirs else []) + [root / mid]:
            found, hn = find_training_histories(place)
            hist += found
            notes += hn
        if shared_logs and torch_ids == [mid]:
            hist += shared_logs
        if not rows and err is None:
            err = "no metrics for it in metrics.json, metrics_by_model.json, runs/<id>/metrics.json or metrics_table.csv"
        models.append(StudyModel(mid, arm, labels.get(mid) or _get(run_cfg.get(mid), "model_label"), tuple(rows), src,
                                 frc, recon_dirs.get(mid), run_dirs.get(mid), tuple(dict.fromkeys(hist)), rst, err))
    notes += [f"{m.arm} ({m.model_id}): {m.error}" for m in models if m.arm and m.error]
    if not any(m.arm == "PtyChi" for m in models):
        notes.append("no PtyChi arm: the grid-lines runners run no iterative reconstruction")
    if m_json is not None and "gt" in m_json:
        notes.append("metrics.json has a 'gt' entry; skipped (the ground truth is the reference)")
    invocation = {k: inv.get(k) for k in ("script", "argv", "command", "status", "exit_code", "finished_at_utc",
                                         "timestamp_utc", "error") if k in inv}
    invocation["git_commit"] = _get(inv, "extra", "git_commit")
    if status == "success" and not any(m.metrics for m in models if m.arm):
        status, error = "failed", error or "no metrics for any arm (" + "; ".join(
            f"{m.model_id}: {m.error}" for m in models if m.error) + ")"
    return PtychoPINNStudy(root, int(d), view, SPLIT, status, error, tuple(models), recon_dirs.get("gt"),
                           invocation, tuple(dict.fromkeys(notes)))


def read_studies(root, arms: dict | None = None, dose: float | None = None) -> list[PtychoPINNStudy]:
    """Every study folder at or below ``root`` (:func:`find_studies`), read.

    Parameters
    ----------
    root : str or Path
    arms : dict, optional
        See :func:`read_study`.
    dose : float, optional
        See :func:`read_study` (used for every study without ``nphotons``).

    Returns
    -------
    list of PtychoPINNStudy

    Raises
    ------
    PtyAnalysisError
        No study folder, or two studies that would be the same job (dose, view, split).
    """
    dirs = find_studies(root)
    if not dirs:
        raise PtyAnalysisError(f"{root}: no PtychoPINN study folder found (searched {MAX_DEPTH} levels for "
                               "metrics.json / runs/ / recons/ as grid_lines_compare_wrapper writes them)")
    studies = [read_study(d, arms=arms, dose=dose) for d in dirs]
    seen: dict = {}
    for s in studies:
        key = (s.dose, s.view, s.split)
        if key in seen:
            raise PtyAnalysisError(
                f"{seen[key].root} and {s.root} are the same Phase G job ({dose_label(s.dose)}/{s.view}/{s.split}); "
                "Phase G reports one result per dose x view x split: point it at a folder holding only one of them")
        seen[key] = s
    return studies


# --------------------------------------------------------------------------- writing the hub layout


def _metrics_csv(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(METRICS_COLUMNS)

    def cell(v):
        return "" if v is None else repr(float(v))

    for r in rows:
        if "value" in r:
            w.writerow([r["model"], r["metric"], "", "", cell(r["value"])])
        else:
            w.writerow([r["model"], r["metric"], cell(r["amplitude"]), cell(r["phase"]), ""])
    return buf.getvalue()


def _frc_csv(arm: str, frc: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FRC_COLUMNS)
    for i, (a, p) in enumerate(zip(frc["amplitude"], frc["phase"])):
        w.writerow([arm, i, "" if not np.isfinite(a) else repr(float(a)), "" if not np.isfinite(p) else repr(float(p))])
    return buf.getvalue()




def write_study_job(study: PtychoPINNStudy, hub) -> Path:
    """Write one study as a Phase G job folder of ``hub``.

    Parameters
    ----------
    study : PtychoPINNStudy
    hub : str or Path
        The hub (usually the folder the studies were found in).

    Returns
    -------
    Path
        ``HUB/analysis/dose_<D>/<view>/test``, holding ``comparison_metrics.csv`` (successful
        studies), ``reconstructions.npz`` (study layout), ``<prefix>_frc_curves.csv`` and
        :data:`SOURCE_FILE`.
    """
    hub = Path(hub)
    job = _hub.analysis_dir(hub, study.dose, study.view, study.split)
    job.mkdir(parents=True, exist_ok=True)
    for old in ("comparison_metrics.csv", "reconstructions.npz"):
        (job / old).unlink(missing_ok=True)
    for old in job.glob("*_frc_curves.csv"):
        old.unlink()
    notes = list(study.notes)
    arms = [m for m in study.models if m.arm]
    if study.status == "success":
        rows = [r for m in arms for r in m.metrics]
        write_text(job / "comparison_metrics.csv", _metrics_csv(rows))
        for m in arms:
            if m.frc is not None:
                write_text(job / f"{RECONSTRUCTION_PREFIXES[m.arm]}_frc_curves.csv", _frc_csv(m.arm, m.frc))
        arrays = {}
        for arm, path in [(m.arm, m.recon) for m in arms] + [("GroundTruth", study.ground_truth)]:
            if path is None:
                continue
            img = _recon_image(path, notes)
            pre = RECONSTRUCTION_PREFIXES[arm]
            arrays.update({f"{pre}_complex": img, f"{pre}_amplitude": np.abs(img).astype(np.float32),
                           f"{pre}_phase": np.angle(img).astype(np.float32)})
        if arrays:
            write_npz(job / "reconstructions.npz", arrays)
        else:
            notes.append("no recons/<label>/recon.npz: no reconstructions to show or check")
    source = {
        "made_by": MADE_BY,
        "study_dir": _rel(study.root, hub),
        "dose": study.dose, "view": study.view, "split": study.split, "status": study.status, "error": study.error,
        "invocation": study.invocation,
        "ground_truth": _rel(study.ground_truth, hub) if study.ground_truth else None,
        "models": {m.model_id: {"arm": m.arm, "label": m.label, "metrics_source": m.metrics_source,
                                "recon": _rel(m.recon, hub) if m.recon else None,
                                "run_dir": _rel(m.run_dir, hub) if m.run_dir else None,
                                "training_histories": [_rel(h, hub) for h in m.histories],
                                "status": m.status, "error": m.error} for m in study.models},
        "metric_map": {k: {"ours": v[0], "meaning": v[1]} for k, v in METRIC_MAP.items()},
        "runtime_map": dict(RUNTIME_MAP),
        "notes": notes,
    }
    write_json(job / SOURCE_FILE, source)
    return job


def training_histories(job_dir, hub) -> dict:
    """``{arm: [Path]}``: the training histories an imported job's :data:`SOURCE_FILE` names (empty if none).

    Parameters
    ----------
    job_dir : str or Path
        A job folder.
    hub : str or Path
        The hub the recorded paths are relative to.

    Returns
    -------
    dict
    """
    path = Path(job_dir) / SOURCE_FILE
    if not path.is_file():
        return {}
    try:
        data = _load_json(path, "the import record")
    except PtyAnalysisError:
        return {}
    out: dict = {}
    for m in (data.get("models") or {}).values() if isinstance(data, dict) else ():
        if isinstance(m, dict) and m.get("arm") and isinstance(m.get("training_histories"), list):
            out.setdefault(m["arm"], []).extend(Path(hub) / h for h in m["training_histories"])
    return out


def import_studies(root, hub=None, arms: dict | None = None, dose: float | None = None) -> StudyImport:
    """Read every PtychoPINN study folder under ``root`` and write them as Phase G jobs.

    Jobs imported by an earlier call that are no longer there are removed (only folders
    holding :data:`SOURCE_FILE`). ``analysis/comparison_manifest.json`` lists the jobs with
    each study's status (``made_by`` says it was not written by ``ptyanalysis grid``).

    Parameters
    ----------
    root : str or Path
        A study folder or a folder of them.
    hub : str or Path, optional
        Where to write ``analysis/`` (default ``root``).
    arms : dict, optional
        ``{arm: model_id}``; see :func:`read_study`.
    dose : float, optional
        See :func:`read_study`.

    Returns
    -------
    StudyImport

    Raises
    ------
    PtyAnalysisError
        See :func:`read_studies`.
    """
    root = Path(root)
    hub = Path(hub) if hub is not None else root
    studies = read_studies(root, arms=arms, dose=dose)
    jobs = [write_study_job(s, hub) for s in studies]
    keep = {j.resolve() for j in jobs}
    analysis = _hub.analysis_root(hub)
    for src in analysis.glob(f"dose_*/*/*/{SOURCE_FILE}"):
        if src.parent.resolve() not in keep:
            shutil.rmtree(src.parent)
    entries = [{"dose": s.dose, "view": s.view, "split": s.split} for s in studies]
    results = [{**e, "returncode": 0 if s.status == "success" else 1, "error": s.error,
                "source": _rel(s.root, hub)} for e, s in zip(entries, studies)]
    n_failed = sum(s.status != "success" for s in studies)
    write_json(analysis / FILES["manifest"], {
        "made_by": MADE_BY, "n_jobs": len(studies), "n_success": len(studies) - n_failed, "n_failed": n_failed,
        "jobs": entries, "execution_results": results,
        "studies": [{"dir": _rel(s.root, hub), "invocation": s.invocation} for s in studies]})
    notes = tuple(f"{_rel(s.root, hub) or '.'}: {n}" for s in studies for n in s.notes)
    return StudyImport(hub, tuple(studies), tuple(jobs), notes)
