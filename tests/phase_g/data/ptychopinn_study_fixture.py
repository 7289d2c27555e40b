"""Writes study folders exactly as today's PtychoPINN study runners do (read from its source at 712c23f).

Writers mirrored (file: function):

* ``scripts/studies/invocation_logging.py``: ``write_invocation_artifacts`` (``json.dumps(payload, indent=2)``
  of ``{script, argv, command, parsed_args, cwd, timestamp_utc, pid, extra}``) then
  ``update_invocation_artifacts`` (``status``, ``exit_code``, ``finished_at_utc``, ``error``).
* ``scripts/studies/grid_lines_compare_wrapper.py``: ``_finalize_compare_outputs`` (root ``metrics.json``:
  ``json.dumps(merged, indent=2, default=_json_default)``, numpy arrays as lists), ``metrics_by_model.json``.
* ``ptycho/workflows/grid_lines_workflow.py``: ``save_recon_artifact`` (``np.savez(path, YY_pred=, amp=, phase=)``),
  ``_write_tf_row_provenance`` (``runs/<id>/{config,history,metrics}.json``, history = ``History.history`` + ``epoch``),
  and, when it runs alone, the root ``metrics.json`` with ``json.dumps(..., default=str)`` (float32 and arrays as text).
* ``scripts/studies/grid_lines_torch_runner.py``: ``save_run_artifacts`` (``history.json`` =
  ``{"train_loss": [...], "val_loss": [...]}``).
* ``scripts/studies/metrics_tables.py``: ``_write_csv_table`` (``metrics_table.csv``) and
  ``write_model_manifest`` (``model_manifest.json``).
* Lightning's ``CSVLogger`` (lightning 2.6.6 ``_ExperimentWriter``): sorted header, one row per
  ``log_metrics`` call, empty cells for keys not logged by that call.

Nothing here imports PtychoPINN; the numbers are made up.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

METRIC_KEYS = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50")


def _json_default(value):  # grid_lines_compare_wrapper._json_default
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def eval_metrics(quality: float, n_rings: int = 12, dtype=np.float32) -> dict:
    """What ``ptycho.evaluation.eval_reconstruction`` returns (tuples of numpy scalars, FRC curves as arrays)."""
    q = dtype(quality)
    curve = np.clip(1.0 - np.arange(n_rings) / (n_rings * q + 1e-9), 0, 1)
    return {"mae": (dtype(0.2 * (1 - q)), dtype(0.5 * (1 - q))), "mse": (dtype(0.05 * (1 - q)), dtype(0.3 * (1 - q))),
            "psnr": (np.float64(60 + 10 * q), np.float64(55 + 10 * q)), "ssim": (q, dtype(q * 0.9)),
            "ms_ssim": (q, dtype(q * 0.95)), "frc50": (float(n_rings * q / 2), float(n_rings * q / 3)),
            "frc1over7": (float(n_rings * q), float(n_rings * q * 0.8)), "frc": (curve, curve * 0.9)}


def write_invocation(path: Path, script: str, argv: list, parsed_args: dict, status="completed", exit_code=0,
                     error=None, extra=None):
    payload = {"script": script, "argv": argv, "command": " ".join(["python", script, *argv]),
               "parsed_args": parsed_args, "cwd": "/work/ptychopinn", "timestamp_utc": "2026-12-01T10:00:00+00:00",
               "pid": 1234, "extra": {"runtime_provenance": {"python_version": "3.11.9"},
                                       "git_commit": "712c23f0000000000000000000000000000000aa", **(extra or {})}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    payload = json.loads(path.read_text())
    payload.update({"status": status, "exit_code": exit_code, "finished_at_utc": "2026-12-01T10:05:00+00:00"})
    if error is not None:
        payload["error"] = error
    path.write_text(json.dumps(payload, indent=2))


def save_recon(root: Path, label: str, img: np.ndarray) -> Path:
    d = root / "recons" / label
    d.mkdir(parents=True, exist_ok=True)
    recon = np.squeeze(img).astype(np.complex64)
    np.savez(d / "recon.npz", YY_pred=recon, amp=np.abs(recon), phase=np.angle(recon))
    return d / "recon.npz"


def keras_history(loss: list, val: list | None = None) -> dict:
    """``_serialize_history_payload(History)``: ``history.history`` then ``epoch``."""
    h = {"loss": list(map(float, loss)), "intensity_scaler_inv_loss": [float(v) * 0.9 for v in loss]}
    if val is not None:
        h["val_loss"] = list(map(float, val))
    h["epoch"] = list(range(len(loss)))
    return h


def lightning_rows(train: list, val: list, steps_per_epoch: int = 4, log_every: int = 2,
                   loss_name: str = "poisson_train_Amp_loss", val_name: str = "poisson_val_Amp_loss") -> list:
    """The ``log_metrics`` calls of a Lightning fit (step rows, then the validation row, then the epoch row)."""
    rows, step = [], 0
    for e, (t, v) in enumerate(zip(train, val)):
        for _ in range(steps_per_epoch):
            step += 1
            if step % log_every == 0:
                rows.append({f"{loss_name}_step": t * 1.05, "epoch": e, "step": step - 1})
        rows.append({val_name: v, "epoch": e, "step": step - 1})
        rows.append({"learning_rate": 0.001, f"{loss_name}_epoch": t, "epoch": e, "step": step - 1})
    return rows


def write_lightning_csv(path: Path, rows: list) -> Path:
    """Lightning's ``_ExperimentWriter.save``: sorted union of keys, ``csv.DictWriter``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(set().union(*rows))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def write_metrics_table(root: Path, metrics: dict, labels: dict, n: int):
    fields = ["model_id", "model_label", "N"] + [f"{k}_{c}" for k in METRIC_KEYS for c in ("amp", "phase")]
    with (root / "metrics_table.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for mid, m in metrics.items():
            row = {"model_id": mid, "model_label": labels.get(mid, mid), "N": n}
            for k in METRIC_KEYS:
                row[f"{k}_amp"], row[f"{k}_phase"] = float(m[k][0]), float(m[k][1])
            w.writerow(row)


def make_study(root, *, nphotons=1e4, N=32, gridsize=1, models=None, history=None, lightning=None,
               status="completed", tf_only=False, with_table=True, image_shape=(48, 48), seed=0,
               root_lightning=None):
    """A grid-lines study folder as ``grid_lines_compare_wrapper`` (or, ``tf_only``, ``grid_lines_workflow``) writes it.

    Parameters
    ----------
    models : dict
        ``{model_id: quality in (0, 1]}`` (default ``{"pinn": 0.8, "baseline": 0.6}``).
    history : dict
        ``{model_id: history dict}`` written as ``runs/<id>/history.json``.
    lightning : dict
        ``{model_id: rows}`` written as ``runs/<id>/lightning_logs/version_0/metrics.csv``.
    root_lightning : list
        Rows lists written as ``STUDY/lightning_logs/version_<i>/metrics.csv`` (where the torch runner's
        Lightning logs really go: its TrainingConfig.output_dir is the study folder).

    Model ids other than ``pinn`` / ``baseline`` are written as PyTorch rows (``grid_lines_torch_runner``'s
    ``save_run_artifacts``: ``torch_runner_config`` in config.json, ``{"train_loss", "val_loss"}`` history).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    models = models or {"pinn": 0.8, "baseline": 0.6}
    rng = np.random.default_rng(seed)
    gt = (1 + 0.2 * rng.random(image_shape)) * np.exp(1j * rng.random(image_shape))
    labels = {"pinn": "CDI CNN + PINN", "baseline": "CDI CNN + supervised"}
    args = {"N": N, "gridsize": gridsize, "output_dir": str(root), "nphotons": nphotons, "nepochs": 5,
            "models": list(models), "seed": 7}
    argv = ["--N", str(N), "--gridsize", str(gridsize), "--output-dir", str(root), "--nphotons", str(nphotons)]
    if not tf_only:
        write_invocation(root / "invocation.json", "scripts/studies/grid_lines_compare_wrapper.py", argv, args,
                         status=status, exit_code=0 if status == "completed" else 1,
                         error=None if status == "completed" else "RuntimeError: Expected recon artifact missing")
    save_recon(root, "gt", gt[..., None])
    metrics, rows = {}, {}
    for mid, q in models.items():
        metrics[mid] = eval_metrics(q)
        save_recon(root, mid, (gt * q)[None, ..., None] if q > 0 else np.zeros((1,) + image_shape + (1,)))
        run = root / "runs" / mid
        if mid in ("pinn", "baseline"):
            cfg = {"grid_lines_config": {"N": N, "gridsize": gridsize, "nphotons": nphotons, "output_dir": str(root)},
                   "row_model_id": mid, "model_label": labels.get(mid, mid),
                   "recon_npz": str(root / "recons" / mid / "recon.npz")}
            write_invocation(run / "invocation.json", "ptycho/workflows/grid_lines_workflow.py",
                             ["--model-id", mid], {"grid_lines_config": cfg["grid_lines_config"], "row_model_id": mid})
            default_hist = keras_history([1.0, 0.8, 0.7, 0.66, 0.65, 0.65, 0.649, 0.65, 0.65, 0.649])
        else:
            tcfg = {"train_npz": "datasets/train.npz", "output_dir": str(root), "architecture": mid.split("_", 1)[-1],
                    "training_procedure": "supervised" if mid.startswith("supervised") else "pinn", "N": N,
                    "gridsize": gridsize, "epochs": 5}
            cfg = {"torch_runner_config": tcfg, "model_label": mid, "training_procedure": tcfg["training_procedure"],
                   "recon_npz": str(root / "recons" / mid / "recon.npz"), "nphotons": None}
            write_invocation(run / "invocation.json", "scripts/studies/grid_lines_torch_runner.py",
                             ["--architecture", tcfg["architecture"]], tcfg)
            default_hist = {"train_loss": [1.0, 0.8, 0.7, 0.66, 0.65, 0.65, 0.649, 0.65, 0.65, 0.649],
                            "val_loss": [1.3, 1.0, 0.8, 0.7, 0.68, 0.66, 0.66, 0.65, 0.66, 0.65, 0.65]}
        (run / "config.json").write_text(json.dumps(cfg, indent=2, default=_json_default))
        hist = (history or {}).get(mid, default_hist)
        (run / "history.json").write_text(json.dumps(hist, indent=2, default=_json_default))
        (run / "metrics.json").write_text(json.dumps(metrics[mid], indent=2, default=_json_default))
        (run / "stdout.log").write_text("[4/7][row] Training...\n")
        (run / "stderr.log").write_text("")
        if lightning and mid in lightning:
            write_lightning_csv(run / "lightning_logs" / "version_0" / "metrics.csv", lightning[mid])
        loss = hist.get("loss") or hist.get("train_loss") or []
        rows[mid] = {"model_id": mid, "model_label": labels.get(mid, mid), "architecture_id": "cnn",
                     "training_procedure": "pinn", "N": N, "parameter_count": 1000, "epoch_budget": 5,
                     "final_completed_epoch": len(loss), "final_train_loss": loss[-1] if loss else None,
                     "validation_loss": {"status": "no_validation_series", "value": None},
                     "runtime_summary": {"train_wall_time_sec": 12.5, "inference_time_sec": 0.25 + q},
                     "hardware_summary": {"backend": "tensorflow", "accelerator": "cpu"},
                     "row_status": "paper_grade", "missing_fields": []}
    for i, lrows in enumerate(root_lightning or ()):
        write_lightning_csv(root / "lightning_logs" / f"version_{i}" / "metrics.csv", lrows)
    if tf_only:  # grid_lines_workflow alone: json.dumps(metrics_payload, indent=2, default=str)
        (root / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        return root
    (root / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
    mbm = {mid: {"reference_shape": list(image_shape), "metrics": m} for mid, m in metrics.items()}
    (root / "metrics_by_model.json").write_text(json.dumps(mbm, indent=2, default=_json_default))
    if with_table:
        write_metrics_table(root, metrics, labels, N)
    (root / "model_manifest.json").write_text(json.dumps(
        {"benchmark_status": "decision_support_complete", "claim_boundary": "grid_lines_compare_bundle",
         "rows": list(rows.values())}, indent=2, default=_json_default))
    return root
