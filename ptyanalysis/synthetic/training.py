"""Training the network arms and running the iterative arm on a study hub.

* **PtychoPINN** (gridsize 2): trained *without ground truth* through the
  physics forward model (:func:`ptyanalysis.synthetic.networks.build_models`' autoencoder:
  merge the group's patches, re-extract each member's view, illuminate by the
  probe, far-field amplitude, Poisson negative log-likelihood).
* **Baseline** (gridsize 1): supervised on the ground-truth patches ``Y``
  (amplitude and phase, mean absolute error), with the study's inference
  interface and all-zero local offsets, as the real one was trained.
* **PtyChi**: pty-chi (:mod:`ptyanalysis.synthetic.ptychi`) when it is installed,
  else the reference rPIE of :mod:`ptyanalysis.synthetic.rpie`; the ``algorithm``
  written with every reconstruction names what ran.

Each trained model is saved as ``model.keras`` plus ``params.json`` (the
sidecar: arm, N, gridsize, intensity_scale, nphotons, grouping K, training
input statistics, training history, software versions) and
``reference_inputs.npz`` (a seeded sample of inputs drawn exactly like the
training inputs: what the diagnosis tools use as the *reference* set).
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import SPLITS, VIEWS
from ..errors import PtyAnalysisError
from ..fileutil import atomic_dir, write_json, write_npz
from ..inference.backends import import_keras
from ..provenance import software_versions, utc_now


@dataclass(frozen=True)
class TrainConfig:
    """Training budget and options (one per study size).

    Attributes
    ----------
    baseline_steps, pinn_steps : int
        Optimiser steps for each network (epochs = steps / batches per epoch).
    batch_size, baseline_batch_size : int
        Groups per step (PtychoPINN) and patterns per step (Baseline).
    learning_rate : float
    filters : tuple of int
        Encoder widths of the patch network.
    K : int
        Nearest neighbours a training group is drawn from (the study: 4).
    phase_weight : float
        Weight of the phase term (mean squared error) in the Baseline's
        supervised loss (the amplitude term is the mean absolute error).
    iterations : int
        Passes of the reference rPIE.
    iterative_engine : {"auto", "ptychi", "rpie"}
        ``"auto"`` runs pty-chi when it is installed (``pip install
        'ptyanalysis[ptychi]'``), else the reference rPIE.
    ptychi_epochs : int
        LSQML epochs when pty-chi runs (the study: 100).
    reference_samples : int
        Size of the saved reference input sample.
    baseline_reassembly : {"study", "batch_centred"}
        The Baseline's in-model merge (:data:`ptyanalysis.synthetic.networks.REASSEMBLY`): as the
        study's code ran (the default, reproducing the incident), or centred on the batch mean as
        PtychoPINN's current code is.
    seed : int
    """

    baseline_steps: int = 150
    pinn_steps: int = 80
    batch_size: int = 16
    baseline_batch_size: int = 32
    learning_rate: float = 1e-3
    filters: tuple = (16, 32, 64)
    K: int = 4
    phase_weight: float = 1.0
    iterations: int = 20
    iterative_engine: str = "auto"
    ptychi_epochs: int = 100
    reference_samples: int = 64
    baseline_reassembly: str = "study"
    seed: int = 0


#: Epochs above which a small training set is repeated within an epoch.
MAX_EPOCHS = 4

#: Budgets per study size.
TRAIN_CONFIGS = {
    "ci": TrainConfig(baseline_steps=250, pinn_steps=120, iterations=10),
    "demo": TrainConfig(),
    "study": TrainConfig(baseline_steps=4000, pinn_steps=4000, batch_size=32, filters=(32, 64, 128),
                         iterations=100),
}


@dataclass(frozen=True)
class TrainedModel:
    """A trained inference model and its sidecar parameters."""

    model: object
    sidecar: dict
    reference_inputs: dict


def input_statistics(arr, sample: int = 200_000, seed: int = 0) -> dict:
    """Summary statistics of an input array (on a seeded sample of at most ``sample`` values)."""
    a = np.asarray(arr, dtype=np.float64).ravel()
    if a.size > sample:
        a = a[np.random.default_rng(seed).choice(a.size, sample, replace=False)]
    q = np.quantile(a, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]) if a.size else [np.nan] * 7
    return {
        "shape": list(np.shape(arr)), "mean": float(a.mean()), "std": float(a.std()),
        "min": float(a.min()), "max": float(a.max()), "nonzero_fraction": float(np.mean(a != 0)),
        "quantiles": dict(zip(["q01", "q05", "q25", "q50", "q75", "q95", "q99"], map(float, q))),
    }


class _EpochProgress:
    """Keras callback: a tqdm bar over epochs on a terminal, plain lines otherwise."""

    def __new__(cls, total: int, desc: str, stream=None):
        keras = import_keras()
        from tqdm.auto import tqdm

        stream = stream or sys.stderr

        class Cb(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.t0 = time.perf_counter()
                self.tty = hasattr(stream, "isatty") and stream.isatty()
                self.bar = tqdm(total=total, desc=desc, unit="epoch", file=stream) if self.tty else None

            def on_epoch_end(self, epoch, logs=None):
                loss = (logs or {}).get("loss", float("nan"))
                if self.bar is not None:
                    self.bar.set_postfix(loss=f"{loss:.4g}")
                    self.bar.update(1)
                else:
                    print(f"{desc}: epoch {epoch + 1}/{total} loss {loss:.4g} "
                          f"({time.perf_counter() - self.t0:.1f} s)", file=stream, flush=True)

            def on_train_end(self, logs=None):
                if self.bar is not None:
                    self.bar.close()

        return Cb()


class _RealGradientOfComplexCast(logging.Filter):
    """Drop TensorFlow's "casting complex64 to float32 ... discard the imaginary part" warning.

    The networks build complex patches from real amplitude and phase
    (``keras.ops.view_as_complex`` casts real to complex). The gradient of
    that cast is the real part of the incoming complex gradient, which is
    exactly right for a real input, but TensorFlow's gradient op logs the
    warning at every step. Only that message is dropped, only during
    :func:`_fit`.
    """

    def filter(self, record):
        return "casting an input of type complex64 to an incompatible dtype float32" not in record.getMessage()


def _fit(model, x, y, steps: int, config: TrainConfig, desc: str, loss, loss_weights=None, batch_size=None):
    keras = import_keras()

    n = len(x[0]) if isinstance(x, list) else len(x)
    batch_size = batch_size or config.batch_size
    per_epoch = max(1, math.ceil(n / batch_size))
    epochs = max(1, math.ceil(steps / per_epoch))
    if epochs > MAX_EPOCHS:  # small sets: repeat the samples so an epoch is long (Keras pays per epoch)
        reps = math.ceil(epochs / MAX_EPOCHS)
        idx = np.tile(np.arange(n), reps)
        x = [a[idx] for a in x] if isinstance(x, list) else x[idx]
        y = [a[idx] for a in y] if isinstance(y, list) else y[idx]
        per_epoch = max(1, math.ceil(len(idx) / batch_size))
        epochs = max(1, math.ceil(steps / per_epoch))
    # set_random_seed also reseeds Python's and numpy's global generators: restore them afterwards so
    # training in a notebook does not change the caller's random streams (TF's seed stays set).
    py_state, np_state = random.getstate(), np.random.get_state()
    quiet = _RealGradientOfComplexCast()
    tf_log = logging.getLogger("tensorflow")
    tf_log.addFilter(quiet)
    try:
        keras.utils.set_random_seed(config.seed)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss, loss_weights=loss_weights)
        t0 = time.perf_counter()
        hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0,
                         callbacks=[_EpochProgress(epochs, desc)])
    finally:
        tf_log.removeFilter(quiet)
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"epochs": epochs, "steps": epochs * per_epoch, "batch_size": batch_size,
            "loss": [float(v) for v in hist.history["loss"]], "elapsed_s": time.perf_counter() - t0,
            "n_samples": int(n), "learning_rate": config.learning_rate, "seed": config.seed}


def _sidecar(arm, data, gridsize, intensity_scale, nphotons, inputs, history, config, extra=None) -> dict:
    return {
        "arm": arm, "N": int(data.N), "gridsize": gridsize, "C": gridsize * gridsize,
        "intensity_scale": float(intensity_scale), "nphotons": float(nphotons),
        "input_names": ["input", "input_positions"],
        "input_normalization": "input = diffraction * sqrt((N/2)^2 / mean_total(diffraction^2)) * intensity_scale",
        "training_inputs": {k: input_statistics(v, seed=config.seed) for k, v in inputs.items()},
        "training": history, "config": asdict(config), "created": utc_now(),
        "software": software_versions(), **(extra or {}),
    }


def _reference_sample(inputs: dict, k: int, seed: int) -> dict:
    n = len(next(iter(inputs.values())))
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))
    return {name: np.asarray(v[idx]) for name, v in inputs.items()}


def train_baseline(data, nphotons: float, config: TrainConfig = TrainConfig(), desc="Baseline") -> TrainedModel:
    """Train the gridsize-1 Baseline on ``data`` (supervised on ``Y``, zero offsets).

    Parameters
    ----------
    data : PtychoData
        Training split; needs ground-truth patches ``Y``.
    nphotons : float
        Dose of the data (sets ``intensity_scale``).
    config : TrainConfig
    desc : str
        Progress label.
    """
    from ..inference import feeds
    from . import networks

    if data.Y is None:
        raise PtyAnalysisError(f"{data.path or 'dataset'}: key 'Y' (ground-truth patches) is needed to train the Baseline")
    isc = feeds.intensity_scale_for(nphotons, data.N)
    inputs = feeds.study_model_inputs(data, {"intensity_scale": isc}, "trained")  # the feed it is trained with
    x = inputs["input"]
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    def build():
        return networks.build_models(data.N, 1, rms, filters=tuple(config.filters),
                                            reassembly=config.baseline_reassembly)

    Y = np.asarray(data.Y)
    collapsed = []
    for attempt in range(COLLAPSE_RETRIES + 1):
        cfg = replace(config, seed=config.seed + attempt)
        built = build()
        hist = _fit(built["patch_network"], x, [np.abs(Y)[..., None], np.angle(Y)[..., None]],
                    config.baseline_steps, cfg, desc, loss=["mae", "mse"], loss_weights=[1.0, config.phase_weight],
                    batch_size=config.baseline_batch_size)
        flat = _collapsed_training(built["patch_network"], x, Y, cfg.seed)
        if flat is None:
            break
        collapsed.append({"seed": cfg.seed, "final_loss": hist["loss"][-1], **flat})
        if attempt < COLLAPSE_RETRIES:
            print(f"{desc}: training collapsed (amplitude spread {flat['output_spread']:.2g}, the truth's "
                  f"{flat['truth_spread']:.2g}: the output does not depend on the input); retraining with seed "
                  f"{cfg.seed + 1}", file=sys.stderr, flush=True)
    hist["collapsed_attempts"] = collapsed
    side = _sidecar("Baseline", data, 1, isc, nphotons, inputs, hist, config,
                    {"training_mode": "supervised on Y (amplitude MAE + phase MSE), all-zero local offsets",
                     "input_rms": rms, "reassembly": config.baseline_reassembly})
    return TrainedModel(_inference_copy(built, build), side, _reference_sample(inputs, config.reference_samples, config.seed))


#: Retrainings (with the next seeds) of a Baseline whose training collapsed (:func:`_collapsed_training`).
COLLAPSE_RETRIES = 2


def _collapsed_training(patch_network, x, Y, seed: int, k: int = 256) -> dict | None:
    """Whether a trained Baseline's amplitude barely depends on its input (a collapsed training run).

    Short CPU trainings sometimes stall on a constant output (the loss stays near its start); that
    model is useless for every later step. Measured as in the diagnosis
    (:func:`ptyanalysis.diagnosis.health.collapsed_outputs`): the amplitude's sample spread on a
    seeded sample of ``k`` patterns against the true amplitude's, below
    :data:`~ptyanalysis.diagnosis.health.FLAT_RATIO` of it.

    Returns
    -------
    dict or None
        ``{"output_spread", "truth_spread"}`` when collapsed.
    """
    from ..diagnosis.health import FLAT_RATIO, sample_spread

    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=min(k, len(x)), replace=False))
    amp = np.asarray(patch_network.predict(x[idx], verbose=0)[0], dtype=np.float32)
    out = sample_spread(amp)[0]
    truth = sample_spread(np.abs(Y[idx]).astype(np.float32))[0]
    if np.isfinite(out) and np.isfinite(truth) and truth > 0 and out < FLAT_RATIO * truth:
        return {"output_spread": float(out), "truth_spread": float(truth)}
    return None


def _inference_copy(built: dict, build) -> object:
    """A fresh, never-compiled ``diffraction_to_obj`` holding the trained weights.

    The trained models were compiled (their optimiser state would otherwise be
    saved with the inference model, multiplying the file size by three); the
    copy holds only the weights inference needs.
    """
    fresh = build()["diffraction_to_obj"]
    fresh.set_weights(built["diffraction_to_obj"].get_weights())
    return fresh


def train_pinn(data, nphotons: float, config: TrainConfig = TrainConfig(), gridsize: int = 2,
               desc="PtychoPINN") -> TrainedModel:
    """Train the PtychoPINN-like model (gridsize 2) through the physics forward model.

    No ground truth is used: the loss is the Poisson negative log-likelihood of
    the measured amplitudes given the far field of the merged object patch
    illuminated by ``data.probe``.

    Parameters
    ----------
    data : PtychoData
        Training split.
    nphotons : float
        Dose of the data (sets ``intensity_scale``).
    config : TrainConfig
    gridsize : int
        Group side (the study: 2).
    desc : str
        Progress label.

    Returns
    -------
    TrainedModel
    """
    from ..inference import feeds
    from . import networks

    isc = feeds.intensity_scale_for(nphotons, data.N)
    inputs, _, _ = feeds.group_inputs(data, gridsize, isc, K=config.K, seed=config.seed)
    x = inputs["input"]
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    probe = np.asarray(data.probe)
    # initial photon scale: |O| ~ 0.7 and sum |F(P O)|^2 = sum |P O|^2 (orthonormal FFT)
    mean_total = float(np.mean(np.sum(x.astype(np.float64) ** 2, axis=(1, 2))))
    log_k = 0.5 * math.log(mean_total / (0.5 * float(np.sum(np.abs(probe) ** 2))))
    def build():
        return networks.build_models(data.N, gridsize, rms, probe=probe, log_scale=log_k,
                                            filters=tuple(config.filters))

    built = build()
    hist = _fit(built["autoencoder"], [x, inputs["input_positions"]], x, config.pinn_steps, config, desc,
                loss=networks.poisson_nll)
    side = _sidecar("PtychoPINN", data, gridsize, isc, nphotons, inputs, hist, config,
                    {"training_mode": "self-supervised: Poisson NLL through the physics forward model",
                     "K": config.K, "K_inference": 7, "input_rms": rms})
    return TrainedModel(_inference_copy(built, build), side, _reference_sample(inputs, config.reference_samples, config.seed))


def save_trained(trained: TrainedModel, directory) -> Path:
    """Write ``model.keras``, ``params.json`` and ``reference_inputs.npz`` into ``directory`` atomically.

    Parameters
    ----------
    trained : TrainedModel
    directory : path
        Replaced as a whole (a previous model there is swapped out only on success).

    Returns
    -------
    Path
    """
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        trained.model.save(tmp / "model.keras")
        write_json(tmp / "params.json", trained.sidecar)
        np.savez(tmp / "reference_inputs.npz", **trained.reference_inputs)
    return directory


def run_iterative(data, iterations: int = 20, seed: int = 0, engine: str = "auto", device=None):
    """Reconstruct a split with the iterative arm.

    Parameters
    ----------
    data : PtychoData
    iterations : int
        pty-chi LSQML epochs, or rPIE passes.
    seed : int
    engine : {"auto", "ptychi", "rpie"}
        ``"auto"``: pty-chi when the ``ptychi`` package is installed, else the
        reference rPIE. ``"ptychi"`` fails if it is not installed.
    device : {"cpu", "cuda", None}
        pty-chi only; None = CUDA when torch sees a GPU.

    Returns
    -------
    iterative.Reconstruction
        Its ``algorithm`` names the engine that ran.
    """
    from ..synthetic import ptychi as ptychi_arm
    from ..synthetic import rpie as iterative

    if engine not in ("auto", "ptychi", "rpie"):
        raise PtyAnalysisError(f"engine must be 'auto', 'ptychi' or 'rpie', got {engine!r}")
    if engine == "ptychi" or (engine == "auto" and ptychi_arm.ptychi_available()):
        return ptychi_arm.run_ptychi(data, epochs=iterations, device=device, seed=seed)
    return iterative.rpie(data.diffraction, data.positions, data.probe,
                         iterative.RPIEConfig(iterations=iterations, seed=seed))


def _iterative_for(data, config: TrainConfig):
    from ..synthetic import ptychi as ptychi_arm

    use_ptychi = config.iterative_engine == "ptychi" or (
        config.iterative_engine == "auto" and ptychi_arm.ptychi_available())
    iterations = config.ptychi_epochs if use_ptychi else config.iterations
    return run_iterative(data, iterations, config.seed, engine="ptychi" if use_ptychi else "rpie")


def save_reconstruction(rec, path) -> Path:
    """Write an iterative reconstruction as ``ptychi_reconstruction.npz`` (atomically).

    Parameters
    ----------
    rec : iterative.Reconstruction
    path : path
        Destination file.

    Returns
    -------
    Path
    """
    return write_npz(path, rec.to_npz_dict())


def train_study(hub, config: TrainConfig = TrainConfig(), doses=None, views=VIEWS, force: bool = False,
                say=print) -> dict:
    """Train every model and run the iterative arm for every job of a synthetic hub.

    Models go to ``data/phase_e/dose_<D>/{baseline/gs1, <view>/gs2}``; the
    iterative arm to ``data/phase_f/dose_<D>/<view>/<split>/``. Existing
    outputs are kept unless ``force``.

    Parameters
    ----------
    hub : path
        Hub written by :func:`ptyanalysis.synthetic.simulate.simulate_study`.
    config : TrainConfig
    doses : sequence of float, optional
        Default: every ``data/phase_c/dose_*`` of the hub.
    views : sequence of str
    force : bool
        Retrain / recompute existing outputs.
    say : callable
        Receives one line of text per iterative reconstruction.

    Returns
    -------
    dict
        Timings per step (also written to ``HUB/data/phase_e/training_summary.json``).
    """

    hub = Path(hub)
    if doses is None:
        found = sorted(_hub.datasets_root(hub).glob("dose_*"))
        try:
            doses = sorted({float(p.name.split("_", 1)[1]) for p in found})
        except ValueError:
            bad = [str(p) for p in found if not p.name.split("_", 1)[1].replace(".", "", 1).isdigit()]
            raise PtyAnalysisError(f"{bad[0] if bad else hub}: expected data/phase_c/dose_<photons> folders "
                                   "(e.g. dose_1000); rename or remove it, or pass doses=") from None
    if not doses:
        raise PtyAnalysisError(f"{hub}: no datasets under data/phase_c/dose_*; run 'ptyanalysis simulate {hub}' first")
    summary = {"doses": list(doses), "steps": []}
    for dose in doses:
        base_dir = _hub.model_dir(hub, dose, "Baseline")
        if force or not (base_dir / "model.keras").exists():
            train = _hub.load_view(hub, dose, "dense", "train")
            t0 = time.perf_counter()
            save_trained(train_baseline(train, dose, config, desc=f"Baseline dose {dose:g}"), base_dir)
            summary["steps"].append({"step": f"train Baseline dose {dose:g}", "elapsed_s": time.perf_counter() - t0})
        for view in views:
            d = _hub.model_dir(hub, dose, "PtychoPINN", view)
            if force or not (d / "model.keras").exists():
                train = _hub.load_view(hub, dose, view, "train")
                t0 = time.perf_counter()
                save_trained(train_pinn(train, dose, config, desc=f"PtychoPINN {view} dose {dose:g}"), d)
                summary["steps"].append({"step": f"train PtychoPINN {view} dose {dose:g}",
                                         "elapsed_s": time.perf_counter() - t0})
            for split in SPLITS:
                out = _hub.ptychi_path(hub, dose, view, split)
                if force or not out.exists():
                    data = _hub.load_view(hub, dose, view, split)
                    t0 = time.perf_counter()
                    rec = _iterative_for(data, config)
                    save_reconstruction(rec, out)
                    dt = time.perf_counter() - t0
                    summary["steps"].append({"step": f"iterative {view} {split} dose {dose:g}", "elapsed_s": dt,
                                             "algorithm": rec.algorithm})
                    say(f"iterative arm dose {dose:g} {view} {split}: {data.n} positions, {dt:.1f} s "
                        f"[{rec.algorithm}]")
    write_json(_hub.training_summary_path(hub), summary)
    return summary


def config_with(config: TrainConfig, *, steps: int | None = None, baseline_reassembly: str | None = None) -> TrainConfig:
    """``config`` with an explicit step budget for both networks and/or another Baseline reassembly.

    Parameters
    ----------
    config : TrainConfig
        A preset, e.g. ``TRAIN_CONFIGS[hub_budget(hub)]``.
    steps : int, optional
        Optimiser steps for each network (both ``baseline_steps`` and ``pinn_steps``).
    baseline_reassembly : {"study", "batch_centred"}, optional
        The Baseline's in-model merge.

    Returns
    -------
    TrainConfig
    """
    changes = {}
    if steps is not None:
        changes.update(baseline_steps=int(steps), pinn_steps=int(steps))
    if baseline_reassembly is not None:
        changes["baseline_reassembly"] = baseline_reassembly
    return replace(config, **changes)


def hub_budget(hub) -> str:
    """The training budget preset of a hub: the size its study was simulated at.

    Parameters
    ----------
    hub : str or Path
        A hub written by :func:`ptyanalysis.synthetic.simulate.simulate_study`.

    Returns
    -------
    str
        A key of :data:`TRAIN_CONFIGS` (``ci``, ``demo`` or ``study``) when ``HUB/study.json`` names one;
        ``"demo"`` when the file is absent or does not name a size.
    """
    try:
        name = json.loads((Path(hub) / "study.json").read_text())["config"]["size"]["name"].split("-")[0]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "demo"
    return name if name in TRAIN_CONFIGS else "demo"
