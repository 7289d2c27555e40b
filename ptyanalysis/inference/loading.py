"""Model loading: ``.keras``, model directories, SavedModels, ``.h5``, factories and PtychoPINN bundles."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import re
import zipfile
from pathlib import Path

from ..errors import PtyAnalysisError
from ..inference.backends import import_keras, require_tensorflow
from ..inference.model import (
    _FACTORY_RE,
    _SPEC_HELP,
    BUNDLE_MODEL_FILES,
    BUNDLE_MODELS,
    LoadedModel,
    _as_loaded,
    _shape_tuple,
    _wrap_keras,
)

#: The one logger of the inference subpackage.
log = logging.getLogger("ptyanalysis.inference")


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_model(spec, *, custom_objects=None, compile: bool = False, safe_mode: bool = True) -> LoadedModel:
    """Load a model from a file, directory, factory string or bundle.

    Parameters
    ----------
    spec : str, Path, LoadedModel or keras.Model
        * a Keras 3 ``.keras`` file;
        * a directory holding ``model.keras`` (or exactly one ``.keras``), a
          TF SavedModel (``saved_model.pb``), a PtychoPINN ``wts.h5.zip`` or
          exactly one ``.h5`` (study model dirs look like
          ``data/phase_e/dose_1000/baseline/gs1/``);
        * a legacy ``.h5`` (through ``tf_keras`` when installed, else Keras 3's
          own legacy reader);
        * ``"module:function"``: the function is called with no arguments and
          must return a Keras model or a :class:`LoadedModel`;
        * a PtychoPINN ``wts.h5.zip`` bundle: a TensorFlow one needs the
          ``ptycho`` package, ``dill`` and TensorFlow; a PyTorch one
          (:mod:`ptyanalysis.inference.torch_bundle`) needs torch, Lightning and
          PtychoPINN's ``ptycho_torch``, and never TensorFlow.
        A LoadedModel is returned as is; a Keras model object is wrapped.
    custom_objects : dict, optional
        Passed to the Keras loader. Layers registered by a ``ptyanalysis`` module
        that the ``.keras`` file names (e.g. the synthetic networks) are
        imported automatically (:func:`_import_custom_layers`).
    compile : bool
        Whether to compile the model on load (not needed for inference).
    safe_mode : bool
        Keras ``safe_mode`` (True refuses to deserialise Lambda layers' code).

    Returns
    -------
    LoadedModel

    Raises
    ------
    PtyAnalysisError
        Missing path, unknown extension, corrupt file, missing dependency.
    """
    if isinstance(spec, LoadedModel):
        return spec
    if not isinstance(spec, (str, Path)):
        return _as_loaded(spec)
    text = str(spec)
    path = Path(text).expanduser()
    if _FACTORY_RE.match(text) and not path.exists():
        return _load_factory(text)
    if not path.exists():
        raise PtyAnalysisError(f"model not found: {path} does not exist; {_SPEC_HELP}")
    if path.is_dir():
        return _load_dir(path, custom_objects, compile, safe_mode)
    name = path.name.lower()
    if name.endswith(".keras"):
        return _load_keras(path, custom_objects, compile, safe_mode, _find_sidecar(path))
    if name.endswith((".h5", ".hdf5")):
        return _load_h5(path, custom_objects, compile, _find_sidecar(path))
    if name.endswith(".zip"):
        return _load_bundle(path)
    if name == "saved_model.pb":
        return _load_savedmodel(path.parent)
    raise PtyAnalysisError(f"unknown model file type {path.suffix!r} for {path}: {_SPEC_HELP}")


def _find_sidecar(model_file: Path, directory: Path | None = None) -> dict | None:
    candidates = [model_file.with_suffix(".json")] if model_file is not None else []
    candidates.append((directory or model_file.parent) / "params.json")
    for cand in candidates:
        if cand.is_file():
            try:
                data = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise PtyAnalysisError(
                    f"model sidecar {cand} is not valid JSON ({exc}); fix or remove it"
                ) from exc
            if not isinstance(data, dict):
                raise PtyAnalysisError(
                    f"model sidecar {cand} must hold a JSON object (parameters by name), "
                    f"got {type(data).__name__}"
                )
            return {**data, "_sidecar_path": str(cand)}
    return None


def _load_dir(path: Path, custom_objects, compile, safe_mode) -> LoadedModel:
    kerases = sorted(p for p in path.glob("*.keras") if p.is_file())
    if (path / "model.keras").is_file():
        return _load_keras(path / "model.keras", custom_objects, compile, safe_mode,
                           _find_sidecar(path / "model.keras", path))
    if len(kerases) == 1:
        return _load_keras(kerases[0], custom_objects, compile, safe_mode,
                           _find_sidecar(kerases[0], path))
    if len(kerases) > 1:
        raise PtyAnalysisError(
            f"model directory {path} holds several .keras files "
            f"({', '.join(p.name for p in kerases)}) and no model.keras: pass the file itself"
        )
    if (path / "saved_model.pb").is_file():
        return _load_savedmodel(path)
    if (path / "wts.h5.zip").is_file():
        return _load_bundle(path / "wts.h5.zip")
    h5s = sorted(p for p in path.iterdir() if p.suffix.lower() in (".h5", ".hdf5") and p.is_file())
    if len(h5s) == 1:
        return _load_h5(h5s[0], custom_objects, compile, _find_sidecar(h5s[0], path))
    listing = sorted(p.name for p in path.iterdir())
    shown = ", ".join(listing[:20]) + (" ..." if len(listing) > 20 else "")
    raise PtyAnalysisError(
        f"no model found in directory {path} (contents: {shown or 'empty'}); "
        "expected model.keras (or one .keras file), saved_model.pb, wts.h5.zip or one .h5 file"
    )


#: Packages whose modules a model file may name for its registered layers; only these are imported.
TRUSTED_LAYER_PACKAGES = ("ptyanalysis",)


def _import_custom_layers(path: Path | None = None) -> list[str]:
    """Import the modules that define the registered custom layers a ``.keras`` file names.

    Keras records each custom object's defining ``module`` in the archive's
    ``config.json`` but does not import it. Modules of
    :data:`TRUSTED_LAYER_PACKAGES` named there are imported (so this package's
    synthetic networks load without the caller importing them); any other
    module is left alone and reported by Keras as an unknown class.

    Returns
    -------
    list of str
        The modules imported.
    """
    if path is None or not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as zf:
            config = zf.read("config.json").decode("utf-8")
    except (KeyError, OSError, UnicodeDecodeError, zipfile.BadZipFile):
        return []
    named = sorted(set(re.findall(r'"module":\s*"([A-Za-z_][\w.]*)"', config)))
    imported = []
    for module in named:
        if module.split(".")[0] in TRUSTED_LAYER_PACKAGES:
            try:
                importlib.import_module(module)
                imported.append(module)
            except ImportError as exc:
                log.debug("%s: layer module %s not importable (%s)", path, module, exc)
    return imported


def check_keras_file(path) -> None:
    """Refuse a ``.keras`` path that is not a Keras archive, before Keras is imported.

    A ``.keras`` file is a zip archive holding ``config.json`` (and usually
    ``model.weights.h5``); anything else (a text file, a truncated download, an
    HDF5 file renamed) gets a message that says what it is.
    """
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not zipfile.is_zipfile(path):
        what = ("an HDF5 file (a legacy .h5 model: rename it to .h5)" if head.startswith(b"\x89HDF")
                else "empty" if not head else "not a zip archive")
        raise PtyAnalysisError(f"{path} is not a Keras .keras file: it is {what}. A .keras file is the zip "
                               "archive model.save('model.keras') writes; re-export the model")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise PtyAnalysisError(f"{path} is a damaged zip archive ({exc}); re-export the model") from None
    if "config.json" not in names:
        raise PtyAnalysisError(f"{path} is a zip archive without config.json, not a Keras .keras file "
                               f"(it holds {', '.join(sorted(names)[:5]) or 'nothing'}); re-export the model with "
                               "model.save('model.keras')")


def _load_keras(path: Path, custom_objects, compile, safe_mode, sidecar) -> LoadedModel:
    check_keras_file(path)
    keras = import_keras()

    _import_custom_layers(path)
    try:
        model = keras.saving.load_model(
            str(path), custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
    except Exception as exc:
        raise PtyAnalysisError(
            f"could not load Keras model {path}: {type(exc).__name__}: {exc}. "
            "A corrupt or truncated file must be re-exported; a model with custom layers "
            "needs custom_objects=... (or the module that registers them imported first); "
            "a model with Lambda layers needs safe_mode=False (only for files you trust)"
        ) from exc
    return _wrap_keras(model, str(path), "keras", "keras.saving.load_model", sidecar)


def _load_h5(path: Path, custom_objects, compile, sidecar) -> LoadedModel:
    from .backends import installed

    tf_keras = None
    if installed("tf_keras") and installed("tensorflow"):
        try:
            import tf_keras
        except ImportError:
            tf_keras = None
    if tf_keras is not None:
        try:
            model = tf_keras.models.load_model(str(path), custom_objects=custom_objects, compile=compile)
        except Exception as exc:
            raise PtyAnalysisError(
                f"tf_keras could not load legacy model {path}: {type(exc).__name__}: {exc}"
            ) from exc
        return _wrap_keras(model, str(path), "h5", "tf_keras", sidecar, backend="tensorflow")
    # No tf_keras: Keras 3 reads plain-layer Keras 2 H5 files itself; try that first.
    keras = import_keras()

    try:
        model = keras.saving.load_model(str(path), custom_objects=custom_objects, compile=compile)
    except Exception as exc:
        raise PtyAnalysisError(
            f"could not load legacy Keras .h5 model {path}: Keras 3 failed with "
            f"{type(exc).__name__}: {exc}. Models saved by Keras 2 (tf.keras) need tf_keras: "
            "install tf_keras==2.21.0 (pip install 'ptyanalysis[legacy]') and load it again"
        ) from exc
    return _wrap_keras(model, str(path), "h5", "keras.saving.load_model (legacy h5)", sidecar)


def _load_savedmodel(path: Path) -> LoadedModel:
    tf = require_tensorflow(f"the TensorFlow SavedModel {path}")
    try:
        root = tf.saved_model.load(str(path))
    except Exception as exc:
        raise PtyAnalysisError(
            f"could not load TF SavedModel {path}: {type(exc).__name__}: {exc}"
        ) from exc
    sigs = dict(getattr(root, "signatures", {}) or {})
    if "serving_default" in sigs:
        key = "serving_default"
    elif len(sigs) == 1:
        key = next(iter(sigs))
    else:
        raise PtyAnalysisError(
            f"SavedModel {path} has no 'serving_default' signature "
            f"(signatures: {', '.join(sigs) or 'none'}); re-export it with model.export(path)"
        )
    sig = sigs[key]
    specs = dict(sig.structured_input_signature[1])
    # A signature records no order: its dicts come from protobuf maps, whose iteration
    # order changes from process to process. Order by name (naturally: output_2 before
    # output_10), which for model.export() files is the model's own output order.
    names = sorted(specs, key=_natural_key)
    out_names = sorted(sig.structured_outputs, key=_natural_key)
    tf_dtypes = [specs[n].dtype for n in names]

    def call(xs):
        kwargs = {}
        for n, x, dt in zip(names, xs, tf_dtypes):
            if x.dtype != dt and x.dtype.is_floating and dt.is_floating:
                x = tf.cast(x, dt)  # signatures are strict about dtypes
            kwargs[n] = x
        out = sig(**kwargs)
        return [out[k] for k in out_names]

    return LoadedModel(
        model=sig, input_names=names, input_shapes=[_shape_tuple(specs[n].shape) for n in names],
        output_names=out_names, source=str(path), kind="savedmodel",
        sidecar=_find_sidecar(None, path),
        input_dtypes=[d.name for d in tf_dtypes], loader=f"tf.saved_model.load [{key}]",
        backend="tensorflow", _call=call, _keepalive=root,
    )


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def _load_factory(spec: str) -> LoadedModel:
    mod_name, func_name = spec.split(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise PtyAnalysisError(
            f"model factory {spec!r}: cannot import module {mod_name!r} ({exc}); "
            "check the module is installed or on sys.path"
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise PtyAnalysisError(
            f"model factory {spec!r}: module {mod_name!r} has no callable {func_name!r}"
        )
    result = func()
    if isinstance(result, LoadedModel):
        return result
    if not callable(result) or not hasattr(result, "trainable_variables"):
        raise PtyAnalysisError(
            f"model factory {spec!r} returned {type(result).__name__}; it must return a "
            "Keras model or a ptyanalysis.inference.LoadedModel"
        )
    return _wrap_keras(result, spec, "factory", f"factory {spec}")


def bundle_members(path) -> dict:
    """List the expected members of a PtychoPINN ``wts.h5.zip`` and whether each is present.

    Parameters
    ----------
    path : str or Path
        The ``.zip`` bundle.

    Returns
    -------
    dict
        ``{"found": {member: bool}, "other": [names not expected]}``; members
        are ``manifest.dill`` and ``<model>/<file>`` for each of
        :data:`BUNDLE_MODELS` x :data:`BUNDLE_MODEL_FILES`. A member is found
        when a zip entry ends with its name (bundles may have a top folder).

    Raises
    ------
    PtyAnalysisError
        If the file is not a readable zip.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise PtyAnalysisError(f"{path} is not a readable zip bundle ({exc})") from exc
    expected = ["manifest.dill"] + [f"{m}/{f}" for m in BUNDLE_MODELS for f in BUNDLE_MODEL_FILES]
    found = {}
    matched = set()
    for exp in expected:
        hits = [n for n in names if n == exp or n.endswith("/" + exp)]
        found[exp] = bool(hits)
        matched.update(hits)
    return {"found": found, "other": [n for n in names if n not in matched]}


def _scalar_params(d: dict) -> dict:
    """The JSON-safe scalar entries of a parameter dict (numpy scalars as Python numbers)."""
    out = {}
    for k, v in d.items():
        if hasattr(v, "item") and getattr(v, "shape", None) == ():
            with contextlib.suppress(Exception):
                v = v.item()
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[str(k)] = v
    return out


def bundle_params(path, model_name: str = "diffraction_to_obj", *, loads=None) -> dict:
    """The parameters a PtychoPINN bundle saved with one of its models (``<model>/params.dill``).

    They hold what the model was trained with (``intensity_scale``,
    ``gridsize``, ``N``, ``nphotons``, ...), read from the bundle itself rather
    than from PtychoPINN's process-global parameters (which the next bundle
    loaded overwrites).

    Parameters
    ----------
    path : str or Path
        The ``wts.h5.zip`` bundle.
    model_name : str
    loads : callable, optional
        Unpickler (default ``dill.loads``; unpickling a real bundle's params
        needs TensorFlow for its probe tensor).

    Returns
    -------
    dict
        The scalar parameters, plus ``_sidecar_path`` (``<bundle>!<member>``),
        ``bundle_backend`` (``"pytorch"`` or ``"tensorflow"``: which PtychoPINN
        backend wrote the bundle, :func:`ptyanalysis.inference.torch_bundle.bundle_format`)
        and ``bundle_version`` (the manifest's, None when not recorded).

    Raises
    ------
    PtyAnalysisError
        No such member, or it cannot be unpickled into a dict.
    """
    from .torch_bundle import bundle_format

    path = Path(path)
    fmt = bundle_format(path)
    member = f"{model_name}/params.dill"
    try:
        with zipfile.ZipFile(path) as zf:
            hits = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if not hits:
                raise PtyAnalysisError(f"PtychoPINN bundle {path} has no {member}")
            blob = zf.read(hits[0])
    except (zipfile.BadZipFile, OSError) as exc:
        raise PtyAnalysisError(f"{path} is not a readable zip bundle ({exc})") from exc
    reader = "given unpickler"
    if loads is None:
        from .backends import installed

        if installed("dill"):
            import dill  # type: ignore[import-not-found]

            loads, reader = dill.loads, "dill"
        else:  # a dict of plain values (a PyTorch bundle's) is a standard pickle
            import pickle

            loads, reader = pickle.loads, "pickle (dill is not installed)"
    try:
        params = loads(blob)
    except Exception as exc:
        hint = " (install dill: pip install dill)" if reader.startswith("pickle") else ""
        raise PtyAnalysisError(f"cannot unpickle {path}!{hits[0]}{hint}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(params, dict):
        raise PtyAnalysisError(f"{path}!{hits[0]} holds {type(params).__name__}, expected a dict of parameters")
    return {**_scalar_params(params), "_sidecar_path": f"{path}!{hits[0]}", "bundle_backend": fmt.backend,
            "bundle_version": fmt.version, "_read_with": reader}


def _load_bundle(path: Path, model_name: str = "diffraction_to_obj") -> LoadedModel:
    from .torch_bundle import bundle_format, load_torch_bundle

    if bundle_format(path).backend == "pytorch":
        return load_torch_bundle(path, model_name)
    members = bundle_members(path)
    lines = [f"    {m}: {'found' if ok else 'MISSING'}" for m, ok in members["found"].items()]
    if members["other"]:
        lines.append(f"    other members: {', '.join(members['other'][:20])}")
    listing = "\n".join(lines)
    from .backends import installed

    missing = [p for p in ("ptycho", "dill", "tensorflow") if not installed(p)]
    if missing:
        what = {
            "ptycho": "the `ptycho` package (PtychoPINN) for its custom layers, which rebuild the "
                      "architecture",
            "dill": "`dill` to unpickle params.dill / custom_objects.dill / manifest.dill",
            "tensorflow": "TensorFlow, which a PtychoPINN TensorFlow bundle needs (pip install "
                          "'ptyanalysis[tensorflow]')",
        }
        raise PtyAnalysisError(
            f"cannot load PtychoPINN bundle {path}: missing "
            + " and ".join(what[m] for m in missing)
            + ". Install PtychoPINN (its repository, pip install -e .) and dill in this "
            "environment, or export the model to a .keras file where PtychoPINN is installed. "
            f"Bundle members:\n{listing}"
        )
    require_tensorflow(f"the PtychoPINN TensorFlow bundle {path}")
    if not members["found"].get(f"{model_name}/model.keras"):
        raise PtyAnalysisError(
            f"PtychoPINN bundle {path} has no {model_name}/model.keras. Bundle members:\n{listing}"
        )
    try:
        from ptycho.model_manager import ModelManager  # type: ignore[import-not-found]
    except ImportError as exc:
        raise PtyAnalysisError(
            f"the `ptycho` package is importable but ptycho.model_manager.ModelManager is not "
            f"({exc}); this PtychoPINN version is not supported for loading {path}"
        ) from exc
    base = str(path)[: -len(".zip")]
    try:
        try:
            models = ModelManager.load_multiple_models(base, model_names=[model_name])
        except TypeError:
            models = ModelManager.load_multiple_models(base)
    except Exception as exc:
        raise PtyAnalysisError(
            f"PtychoPINN (ptycho.model_manager.ModelManager.load_multiple_models) could not load "
            f"{path}: {type(exc).__name__}: {exc}. Bundle members:\n{listing}"
        ) from exc
    if model_name not in models:
        raise PtyAnalysisError(
            f"PtychoPINN bundle {path} loaded models {sorted(models)} but not {model_name!r}"
        )
    try:
        sidecar = bundle_params(path, model_name)
    except PtyAnalysisError as exc:
        sidecar = None
        with contextlib.suppress(Exception):
            from ptycho import params as ptycho_params  # type: ignore[import-not-found]

            sidecar = {**_scalar_params(dict(ptycho_params.cfg)),
                       "_sidecar_path": "ptycho.params.cfg (process-global, after loading)"}
        log.warning("%s; using PtychoPINN's process-global parameters after loading instead%s", exc,
                    "" if sidecar else " (unavailable: the model has no parameters)")
    log.warning(
        "loading %s set PtychoPINN's process-global params (ptycho.params.cfg: intensity_scale, "
        "gridsize, N); loading another bundle later overwrites them for both models", path,
    )
    return _wrap_keras(models[model_name], str(path), "ptychopinn_bundle",
                       "ptycho.model_manager.ModelManager.load_multiple_models", sidecar, backend="tensorflow")


