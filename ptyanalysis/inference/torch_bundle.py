"""PtychoPINN's PyTorch bundles: recognise them, rebuild them strictly, run them as PtychoPINN does.

A PtychoPINN PyTorch bundle is a ``wts.h5.zip`` laid out like the TensorFlow
one (docs/formats.md#pytorch-bundles) but holding

``manifest.dill``
    ``{'models': ['diffraction_to_obj', 'autoencoder'], 'version': '2.0-pytorch'}``;
``diffraction_to_obj/model.pth``
    the Lightning module's ``state_dict``;
``diffraction_to_obj/params.dill``
    PtychoPINN's legacy parameter dict (``intensity_scale``, ``backend 'pytorch'``, ...);
``autoencoder/model.pth``
    a sentinel ``{'_sentinel': 'autoencoder'}`` only;
``torch_scaling_metadata.pt``
    the four torch config dataclasses as dicts (``data_config``,
    ``model_config``, ``training_config``, ``inference_config``) and the frozen
    ``ci_statistics``.

It is rebuilt exactly as PtychoPINN's current entry point does
(``ptycho_torch/workflows/components.py``: ``load_inference_bundle_torch`` ->
``_strictly_reconstruct_bundle_model``): ``PtychoPINN_Lightning(ModelConfig,
DataConfig, TrainingConfig, InferenceConfig)`` from the metadata, then
``load_state_dict(strict=True)``, then the frozen statistics. Never through
PtychoPINN's older ``model_manager.load_torch_bundle``, which rebuilds from
``params.dill`` (a trainable intensity scale then multiplies every input by it)
and loads with ``strict=False`` (a shape mismatch silently keeps random
weights). TensorFlow is never imported: the rebuild needs only torch,
Lightning and PtychoPINN's ``ptycho_torch`` classes, imported in that order
(TensorFlow before Lightning/triton in one process crashed).

How the model is fed (:class:`PtychoPINNTorchFeed`): ``forward_predict(x,
positions, probe, input_scale_factor)`` with ``x`` channel-first ``(B, C, N,
N)``; it returns complex ``(B, C, N, N)`` object patches, one per channel,
without an in-model merge. Training fed the loader's normalised patterns with
``input_scale_factor`` 1 (``intensity_scale`` is used only inside the loss):
the bundle's parameters therefore say ``input_scale = 1.0``
(:func:`ptyanalysis.inference.feeds.trained_input_scale`). The wrapped model
(:func:`load_torch_bundle`) takes this package's channel-last inputs
(``input`` ``(B, N, N, C)``, ``input_positions`` ``(B, 1, 2, C)``) and returns
the patches channel-last ``(B, N, N, C)`` complex64.
"""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import PtyAnalysisError

#: The metadata member PtychoPINN's torch bundles carry (its ``_BUNDLE_SCALING_METADATA``).
METADATA_MEMBER = "torch_scaling_metadata.pt"
#: The four config dataclasses the metadata holds, by their key (``ptycho_torch.config_params`` class names).
CONFIG_CLASSES = (("model_config", "ModelConfig"), ("data_config", "DataConfig"),
                  ("training_config", "TrainingConfig"), ("inference_config", "InferenceConfig"))
#: What rebuilding a torch bundle imports, in import order (torch and Lightning before anything else).
REQUIREMENTS = (
    ("torch", "PyTorch (pip install 'ptyanalysis[torch]')"),
    ("lightning", "Lightning (pip install lightning), the base class of PtychoPINN's model"),
    ("ptycho_torch", "PtychoPINN's `ptycho_torch` package (its repository on PYTHONPATH, or pip install -e . "
                     "there) for the classes that rebuild the architecture"),
)


@dataclass(frozen=True)
class BundleFormat:
    """Which PtychoPINN backend wrote a ``wts.h5.zip`` and how it was recognised.

    Attributes
    ----------
    backend : {"tensorflow", "pytorch"}
    version : str or None
        The manifest's ``version`` (``"2.0-pytorch"``), when it could be read.
    evidence : tuple of str
        What identified the backend (member names, the manifest's version).
    members : tuple of str
        Every member of the zip.
    """

    backend: str
    version: str | None
    evidence: tuple
    members: tuple

    @property
    def has_metadata(self) -> bool:
        """True when the bundle carries :data:`METADATA_MEMBER` (what a strict rebuild needs)."""
        return any(_is(m, METADATA_MEMBER) for m in self.members)


def _is(name: str, member: str) -> bool:
    return name == member or name.endswith("/" + member)


def _member(names, member: str) -> str | None:
    hits = [n for n in names if _is(n, member)]
    return hits[0] if hits else None


def read_manifest(path) -> dict | None:
    """The bundle's ``manifest.dill`` (a plain dict), or None when absent or not a plain pickle of a dict.

    A dill pickle of a dict of strings is a standard pickle; it is read with
    :mod:`pickle` (no dill needed).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            name = _member(zf.namelist(), "manifest.dill")
            if name is None:
                return None
            blob = zf.read(name)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PtyAnalysisError(f"{path} is not a readable zip bundle ({exc})") from exc
    try:
        manifest = pickle.loads(blob)  # noqa: S301 - the user's own bundle, a dict of strings
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError):  # not a pickled manifest (what unpickling raises on foreign bytes): not a torch bundle
        return None
    return manifest if isinstance(manifest, dict) else None


def bundle_format(path) -> BundleFormat:
    """Recognise the backend that wrote a PtychoPINN ``wts.h5.zip`` without importing any framework.

    A bundle is a PyTorch one when it has a ``<model>/model.pth``, a
    :data:`METADATA_MEMBER`, or a manifest version ending in ``-pytorch``; else
    a TensorFlow one.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    BundleFormat

    Raises
    ------
    PtyAnalysisError
        The file is not a readable zip.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = tuple(n for n in zf.namelist() if not n.endswith("/"))
    except (zipfile.BadZipFile, OSError) as exc:
        raise PtyAnalysisError(f"{path} is not a readable zip bundle ({exc})") from exc
    manifest = read_manifest(path) if _member(names, "manifest.dill") else None
    version = str(manifest.get("version")) if manifest and manifest.get("version") is not None else None
    evidence = [n for n in names if n.endswith("/model.pth") or _is(n, METADATA_MEMBER)]
    if version and version.endswith("-pytorch"):
        evidence.append(f"manifest version {version!r}")
    return BundleFormat("pytorch" if evidence else "tensorflow", version, tuple(evidence), names)


def is_torch_bundle(path) -> bool:
    """True when ``path`` (a ``.zip`` file, or a directory holding ``wts.h5.zip``) is a PtychoPINN PyTorch bundle.

    Never raises: anything unreadable is not a torch bundle.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "wts.h5.zip"
    if not (p.is_file() and p.name.lower().endswith(".zip")):
        return False
    try:
        return bundle_format(p).backend == "pytorch"
    except PtyAnalysisError:
        return False


def find_torch_bundles(paths, *, max_depth: int = 6) -> list[Path]:
    """PtychoPINN PyTorch bundles among ``paths`` and (for directories) the ``wts.h5.zip`` files below them.

    Cheap (zip directories only, no framework imported): the CLI uses it to
    pick PyTorch as the process's backend before anything is imported.
    """
    found = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            if is_torch_bundle(p):
                found.append(p)
        elif p.is_dir():
            for z in _walk_bundles(p, max_depth):
                if is_torch_bundle(z):
                    found.append(z)
    return found


def _walk_bundles(root: Path, max_depth: int):
    import os

    base = len(root.parts)
    for d, dirs, files in os.walk(root):
        if len(Path(d).parts) - base >= max_depth:
            dirs[:] = []
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        if "wts.h5.zip" in files:
            yield Path(d) / "wts.h5.zip"


def missing_requirements() -> list[tuple[str, str]]:
    """The :data:`REQUIREMENTS` that cannot be found (nothing imported)."""
    from .backends import installed

    return [(m, what) for m, what in REQUIREMENTS if not installed(m)]


def read_metadata(path) -> dict:
    """The bundle's :data:`METADATA_MEMBER`, loaded with ``torch.load(weights_only=True)``.

    Raises
    ------
    PtyAnalysisError
        No such member (a metadata-free, older bundle), or it does not hold the
        four configs as dicts.
    """
    import torch

    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        name = _member(zf.namelist(), METADATA_MEMBER)
        if name is None:
            raise PtyAnalysisError(
                f"PtychoPINN PyTorch bundle {path} has no {METADATA_MEMBER}: it predates the metadata, and "
                "a torch bundle is rebuilt only from it (PtychoPINN's older params.dill loader "
                "multiplies inputs by a trainable intensity scale and loads weights non-strictly). Re-save "
                "the model with today's PtychoPINN (run_cdi_example_torch / save_torch_bundle)")
        blob = zf.read(name)
    try:
        meta = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PtyAnalysisError(
            f"{path}!{name} cannot be read with torch.load(weights_only=True) ({type(exc).__name__}: {exc}); "
            "expected the four torch config dataclasses as plain dicts") from exc
    missing = [k for k, _ in CONFIG_CLASSES if not isinstance((meta or {}).get(k), dict)]
    if not isinstance(meta, dict) or missing:
        raise PtyAnalysisError(f"{path}!{name}: expected a dict with {', '.join(k for k, _ in CONFIG_CLASSES)} "
                               f"(dicts); missing or not dicts: {', '.join(missing) or type(meta).__name__}")
    return meta


def metadata_params(meta: dict, legacy: dict | None = None) -> dict:
    """The scalar parameters of a torch bundle, in this package's names, from its metadata.

    Parameters
    ----------
    meta : dict
        :func:`read_metadata`.
    legacy : dict, optional
        The bundle's ``params.dill`` (scalars), for ``intensity_scale`` as trained.

    Returns
    -------
    dict
        ``N``, ``gridsize``, ``C``, ``nphotons``, ``K_inference`` (the data
        config's ``K``), ``intensity_scale`` (the trained value, from
        ``params.dill``, else the model config's), ``input_scale`` 1.0 (what
        training multiplied the normalised patterns by), ``backend``
        ``"pytorch"`` and the scale contract.
    """
    d, m = meta["data_config"], meta["model_config"]
    grid = d.get("grid_size") or (1, 1)
    g = int(grid[0]) if isinstance(grid, (list, tuple)) else int(grid)
    out = {"N": int(d.get("N", 64)), "gridsize": g, "C": int(d.get("C", g * g)),
           "nphotons": d.get("nphotons"), "K_inference": d.get("K"),
           "intensity_scale": (legacy or {}).get("intensity_scale", m.get("intensity_scale")),
           "intensity_scale_trainable": m.get("intensity_scale_trainable"),
           "input_scale": 1.0, "backend": "pytorch",
           "scale_contract_version": d.get("scale_contract_version"),
           "measurement_domain": d.get("measurement_domain"),
           "normalize": d.get("normalize"), "probe_scale": d.get("probe_scale")}
    return {k: v for k, v in out.items() if v is not None}


def rebuild_lightning_module(path, meta: dict | None = None, model_name: str = "diffraction_to_obj"):
    """Rebuild a torch bundle's model with PtychoPINN's classes, strictly (as ``_strictly_reconstruct_bundle_model``).

    Returns
    -------
    torch.nn.Module
        The ``PtychoPINN_Lightning`` module in eval mode, on the CPU.
    """
    path = Path(path)
    missing = missing_requirements()
    if missing:
        fmt = bundle_format(path)
        raise PtyAnalysisError(
            f"cannot load PtychoPINN PyTorch bundle {path} (version {fmt.version or 'not recorded'}): missing "
            + "; ".join(w for _, w in missing) + ". TensorFlow is not needed for it")
    import lightning  # noqa: F401
    import torch  # noqa: F401 - torch and Lightning first, before anything PtychoPINN imports

    meta = read_metadata(path) if meta is None else meta
    try:
        from ptycho_torch import config_params
        from ptycho_torch.model import PtychoPINN_Lightning
    except Exception as exc:
        raise PtyAnalysisError(
            f"PtychoPINN's ptycho_torch is importable but its model classes are not ({type(exc).__name__}: {exc}); "
            f"this PtychoPINN version cannot rebuild {path}") from exc
    configs = {}
    for key, cls_name in CONFIG_CLASSES:
        cls = getattr(config_params, cls_name, None)
        if cls is None:
            raise PtyAnalysisError(f"ptycho_torch.config_params has no {cls_name}: cannot rebuild {path}")
        try:
            configs[key] = cls(**meta[key])
        except TypeError as exc:
            raise PtyAnalysisError(
                f"{path}!{METADATA_MEMBER}: {key} does not fit this PtychoPINN's {cls_name} ({exc}); the bundle "
                "was written by another PtychoPINN version: use that version's source") from exc
    module = PtychoPINN_Lightning(configs["model_config"], configs["data_config"], configs["training_config"],
                                  configs["inference_config"])
    with zipfile.ZipFile(path) as zf:
        name = _member(zf.namelist(), f"{model_name}/model.pth")
        if name is None:
            raise PtyAnalysisError(f"PtychoPINN PyTorch bundle {path} has no {model_name}/model.pth")
        blob = zf.read(name)
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PtyAnalysisError(f"{path}!{name}: not a state_dict torch.load(weights_only=True) can read "
                               f"({type(exc).__name__}: {exc})") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PtyAnalysisError(
            f"{path}!{name}: the weights do not fit the architecture its metadata describes (strict loading: "
            f"{exc}). The bundle was written by another PtychoPINN version; it is not loaded non-strictly "
            "(that would keep random weights)") from exc
    stats = meta.get("ci_statistics")
    if stats is not None and hasattr(module, "register_ci_statistics"):
        module.register_ci_statistics(stats)
    module.eval()
    return module


def _predictor(module, N: int, C: int):
    import torch

    class PtychoPINNTorchPredictor(torch.nn.Module):
        """A PtychoPINN Lightning module called as its ``forward_predict``, with channel-last inputs and outputs.

        ``probe`` is what is passed as the probe argument (PtychoPINN's own
        inference passes the data's ``probeGuess``; the model ignores it, which
        :func:`ptyanalysis.diagnosis.usage.input_usage` shows).
        """

        #: Inputs the model is called with from its own copy (:mod:`ptyanalysis.diagnosis.usage`).
        auxiliary_inputs = ("probe",)

        def __init__(self):
            super().__init__()
            self.net = module
            self.register_buffer("probe", torch.ones((N, N), dtype=torch.complex64), persistent=False)

        def forward(self, input, input_positions):  # noqa: A002 - this package's input name
            x = input.permute(0, 3, 1, 2)
            pos = input_positions.permute(0, 3, 1, 2)  # (B, 1, 2, C) -> (B, C, 1, 2), PtychoPINN's coords_relative
            scale = torch.ones((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device)
            out = self.net.forward_predict(x, pos, self.probe, scale)
            if out.ndim == 3:
                out = out.unsqueeze(1)
            return out.permute(0, 2, 3, 1).to(torch.complex64)

    pred = PtychoPINNTorchPredictor()
    pred.eval()
    return pred


def load_torch_bundle(path, model_name: str = "diffraction_to_obj"):
    """Load a PtychoPINN PyTorch ``wts.h5.zip`` as a :class:`~ptyanalysis.inference.LoadedModel`.

    Parameters
    ----------
    path : str or Path
        The bundle.
    model_name : str
        The bundle's model (``diffraction_to_obj``; ``autoencoder`` is a sentinel).

    Returns
    -------
    LoadedModel
        Kind ``"ptychopinn_torch_bundle"``, backend ``"torch"``; inputs
        ``input`` ``(B, N, N, C)`` and ``input_positions`` ``(B, 1, 2, C)``; one
        output ``object`` ``(B, N, N, C)`` complex64. Its ``sidecar`` is
        :func:`metadata_params` plus ``bundle_version``.

    Raises
    ------
    PtyAnalysisError
        Missing torch / Lightning / ``ptycho_torch`` (named, with the bundle's
        version), no metadata, weights that do not fit strictly.
    """
    from .model import _wrap_torch

    path = Path(path)
    fmt = bundle_format(path)
    if fmt.backend != "pytorch":
        raise PtyAnalysisError(f"{path} is a PtychoPINN TensorFlow bundle, not a PyTorch one")
    if model_name == "autoencoder":
        raise PtyAnalysisError(f"{path}: a PyTorch bundle's autoencoder is a sentinel with no weights; load "
                               "diffraction_to_obj")
    missing = missing_requirements()
    if missing:
        raise PtyAnalysisError(
            f"cannot load PtychoPINN PyTorch bundle {path} (version {fmt.version or 'not recorded'}): missing "
            + "; ".join(w for _, w in missing) + ". TensorFlow is not needed for it")
    import lightning  # noqa: F401
    import torch  # noqa: F401 - first (see the module docstring)

    meta = read_metadata(path)
    legacy = None
    try:
        from .loading import bundle_params

        legacy = bundle_params(path, model_name)
    except PtyAnalysisError:
        legacy = None  # params.dill needs dill (or is absent): the metadata's intensity_scale is used
    module = rebuild_lightning_module(path, meta, model_name)
    params = metadata_params(meta, legacy)
    predictor = _predictor(module, params["N"], params["C"])
    sidecar = {**params, "bundle_version": fmt.version, "_sidecar_path": f"{path}!{METADATA_MEMBER}",
               "tensorflow_imported": "tensorflow" in sys.modules}
    return _wrap_torch(predictor, str(path), kind="ptychopinn_torch_bundle",
                       loader="ptycho_torch PtychoPINN_Lightning from torch_scaling_metadata.pt, "
                              "load_state_dict(strict=True)",
                       sidecar=sidecar, input_names=["input", "input_positions"], output_names=["object"],
                       input_shapes=[(None, params["N"], params["N"], params["C"]), (None, 1, 2, params["C"])])
