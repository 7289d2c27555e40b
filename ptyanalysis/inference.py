"""Model loading and streaming inference.

Two halves:

* :func:`load_model` turns a model *spec* (a ``.keras`` file, a study model
  directory, a TF SavedModel, a legacy ``.h5``, a ``module:function`` factory or
  a PtychoPINN ``wts.h5.zip`` bundle) into a :class:`LoadedModel`: the callable,
  its input/output names and shapes, where it came from and its sidecar
  parameters (``<model>.json`` or ``params.json``: intensity_scale, N, ...).
* :func:`run_inference` streams a split through the model in chunks of
  ``batch_size``: inputs are read chunk by chunk (``.npy`` / ``.npz`` /
  ``np.memmap`` are read by offset, never loaded whole), outputs go to
  consumers (a stitcher, statistics) and/or to ``.npy`` files, with running
  per-output statistics, halving of the batch on out-of-memory and a runtime
  record (device actually used, versions, throughput). :func:`predict` is the
  cheap in-memory variant the diagnosis engines call many times.

The model is called as ``model(x, training=False)`` (eagerly, or wrapped in a
``tf.function``, optionally ``jit_compile=True``); ``model.predict`` is never used
here. Nothing changes process-global TensorFlow settings permanently: the
device and op determinism are set for the duration of one run and restored.

Memory note: pages of a file touched through a memory mapping count in the
process's resident set (RSS) until the kernel reclaims them, so a 4 GB memmapped
split read through the mapping shows as 4 GB RSS. Inputs backed by files
(``.npy`` paths, uncompressed ``.npz`` members, ``np.memmap`` arrays) are
therefore read with plain positioned reads into a per-chunk buffer, and ``.npy``
outputs are written with sequential writes behind a standard ``.npy`` header
(the file reads back with ``np.load(..., mmap_mode="r")``), so peak memory does
not grow with the size of the split.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import mmap
import re
import sys
import threading
import time
import weakref
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import PtyAnalysisError
from .fileutil import atomic_path
from .provenance import software_versions, utc_now

log = logging.getLogger(__name__)

#: Kinds of model :func:`load_model` produces.
MODEL_KINDS = ("keras", "h5", "savedmodel", "factory", "ptychopinn_bundle", "object")

#: Members of a PtychoPINN ``wts.h5.zip`` bundle (study contract, section 8).
BUNDLE_MODELS = ("autoencoder", "diffraction_to_obj")
BUNDLE_MODEL_FILES = ("model.keras", "custom_objects.dill", "params.dill")

_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SPEC_HELP = (
    "expected a .keras file, a model directory (with model.keras, saved_model.pb or "
    "wts.h5.zip), a legacy .h5 file, a PtychoPINN wts.h5.zip bundle, or a "
    "'module:function' factory string"
)

# Compiled tf.functions of raw (not LoadedModel) Keras models, keyed weakly by
# the model so that the cache entry goes away with the model. The cached
# functions reach the model only through a weak reference.
_RAW_FUNCTIONS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _tf():
    """Import TensorFlow lazily (importing it costs seconds)."""
    import tensorflow as tf

    return tf


# --------------------------------------------------------------------------------------
# Loaded model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for :func:`predict` / :func:`run_inference`.

    Attributes
    ----------
    model : object
        The callable Keras / TF object (a Keras model, or a SavedModel serving
        signature).
    input_names, input_shapes : list
        Input names in call order and their shapes (batch axis ``None``).
        Empty when the model does not declare its inputs (an unbuilt
        subclassed model); then inputs are passed through in the order given.
    output_names : list of str
        Output names in the order outputs are returned.
    source : str
        The spec it was loaded from.
    kind : str
        One of :data:`MODEL_KINDS`.
    sidecar : dict or None
        Parameters stored next to the model (``<model>.json`` beside a
        ``.keras`` file or ``params.json`` in the model directory; for a
        PtychoPINN bundle the parameters it restored).
    input_dtypes : list of str or None
        Declared input dtypes, where known.
    loader : str
        What loaded it (``"keras.saving.load_model"``, ``"tf_keras"``, ...).
    """

    model: Any
    input_names: list
    input_shapes: list
    output_names: list
    source: str
    kind: str
    sidecar: dict | None = None
    input_dtypes: list | None = None
    loader: str = ""
    _call: Callable | None = field(default=None, repr=False)
    _functions: dict = field(default_factory=dict, repr=False)
    _keepalive: Any = field(default=None, repr=False)

    def call(self, xs):
        """Call the model on a list of tensors (input order); return a list of tensors."""
        return self._call(list(xs))


def describe_model(loaded) -> dict:
    """Summarise a model for reports.

    Parameters
    ----------
    loaded : LoadedModel or keras.Model

    Returns
    -------
    dict
        ``source``, ``kind``, ``loader``, ``inputs`` (name, shape, dtype),
        ``outputs``, ``n_params`` (None when unknown), ``sidecar`` and the
        TensorFlow / Keras versions.
    """
    loaded = _as_loaded(loaded)
    dtypes = loaded.input_dtypes or [None] * len(loaded.input_names)
    n_params = None
    count = getattr(loaded.model, "count_params", None)
    if callable(count):
        with contextlib.suppress(Exception):
            n_params = int(count())
    versions = software_versions(("tensorflow", "keras", "tf_keras"))
    return {
        "source": loaded.source,
        "kind": loaded.kind,
        "loader": loaded.loader,
        "inputs": [
            {"name": n, "shape": list(s) if s is not None else None, "dtype": d}
            for n, s, d in zip(loaded.input_names, loaded.input_shapes, dtypes)
        ],
        "outputs": list(loaded.output_names),
        "n_params": n_params,
        "sidecar": loaded.sidecar,
        "tensorflow": versions.get("tensorflow"),
        "keras": versions.get("keras"),
    }


def _shape_tuple(shape) -> tuple | None:
    if shape is None:
        return None
    if hasattr(shape, "as_list"):
        try:
            shape = shape.as_list()
        except ValueError:
            return None
    return tuple(None if d is None else int(d) for d in shape)


def _dtype_name(dtype) -> str | None:
    if dtype is None:
        return None
    name = getattr(dtype, "name", None)
    return str(name if name is not None else dtype)


def _flatten_outputs(out, names):
    if isinstance(out, dict):
        keys = [k for k in names if k in out] if names and set(names) <= set(out) else list(out)
        return [out[k] for k in keys]
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]


def _keras_adapter(model, *, weak: bool):
    """Introspect a Keras(-like) model; return (names, shapes, dtypes, out_names, call)."""
    try:
        struct = model.input
    except Exception:  # unbuilt subclassed / Sequential model
        struct = None
    if isinstance(struct, dict):
        mode, names, tensors = "dict", list(struct), list(struct.values())
    elif isinstance(struct, (list, tuple)):
        mode, tensors = "list", list(struct)
        names = [str(getattr(t, "name", f"input_{i}")) for i, t in enumerate(tensors)]
    elif struct is not None:
        mode, tensors = "single", [struct]
        names = [str(getattr(struct, "name", "input_0"))]
    else:
        mode, names, tensors = "unknown", [], []
    shapes = [_shape_tuple(getattr(t, "shape", None)) for t in tensors]
    dtypes = [_dtype_name(getattr(t, "dtype", None)) for t in tensors]
    out_names = []
    with contextlib.suppress(Exception):
        out_names = [str(n) for n in (getattr(model, "output_names", None) or [])]
    # The adapter must not close over ``model`` itself when weak (it ends up in the
    # cached tf.function, which would then keep the model alive).
    get = weakref.ref(model) if weak else (lambda _m=model: _m)

    def call(xs):
        m = get()
        if m is None:  # pragma: no cover - the caller holds the model
            raise PtyAnalysisError("the model was garbage-collected during inference")
        if mode == "dict":
            arg = dict(zip(names, xs))
        elif mode == "single" or (mode == "unknown" and len(xs) == 1):
            arg = xs[0]
        else:
            arg = list(xs)
        return _flatten_outputs(m(arg, training=False), out_names)

    return names, shapes, dtypes, out_names, call


def _wrap_keras(model, source: str, kind: str, loader: str, sidecar=None, *, weak=False):
    names, shapes, dtypes, out_names, call = _keras_adapter(model, weak=weak)
    return LoadedModel(
        model=model, input_names=names, input_shapes=shapes, output_names=out_names,
        source=source, kind=kind, sidecar=sidecar, input_dtypes=dtypes, loader=loader,
        _call=call,
    )


def _as_loaded(model) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        raise PtyAnalysisError(
            f"got a path/spec {str(model)!r} where a loaded model was expected: "
            "call ptyanalysis.inference.load_model(spec) first and pass its result"
        )
    if not callable(model):
        raise PtyAnalysisError(
            f"model must be a LoadedModel or a callable Keras/TF model, got {type(model).__name__}"
        )
    return _wrap_keras(model, source=f"<{type(model).__name__} object>", kind="object",
                       loader="in-memory object", weak=True)


def _function_cache(loaded: LoadedModel) -> dict:
    if loaded.kind == "object":
        try:
            return _RAW_FUNCTIONS.setdefault(loaded.model, {})
        except TypeError:  # not weak-referenceable: no caching across calls
            return loaded._functions
    return loaded._functions


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
        * a PtychoPINN ``wts.h5.zip`` bundle (needs the ``ptycho`` package and
          ``dill``).
        A LoadedModel is returned as is; a Keras model object is wrapped.
    custom_objects : dict, optional
        Passed to the Keras loader. Layers registered by ``ptyanalysis.models``
        are available without it.
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


def _import_custom_layers() -> None:
    """Import ``ptyanalysis.models`` so its registered Keras layers resolve, if it exists."""
    try:
        importlib.import_module("ptyanalysis.models")
    except ImportError as exc:
        log.debug("ptyanalysis.models not importable (%s); no custom layers registered", exc)


def _load_keras(path: Path, custom_objects, compile, safe_mode, sidecar) -> LoadedModel:
    import keras

    _import_custom_layers()
    try:
        model = keras.saving.load_model(
            str(path), custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
    except Exception as exc:
        raise PtyAnalysisError(
            f"could not load Keras model {path}: {type(exc).__name__}: {exc}. "
            "A corrupt or truncated file must be re-exported; a model with custom layers "
            "needs custom_objects=... (or the layers registered in ptyanalysis.models); "
            "a model with Lambda layers needs safe_mode=False (only for files you trust)"
        ) from exc
    return _wrap_keras(model, str(path), "keras", "keras.saving.load_model", sidecar)


def _load_h5(path: Path, custom_objects, compile, sidecar) -> LoadedModel:
    try:
        import tf_keras  # noqa: F401
    except ImportError:
        tf_keras = None
    if tf_keras is not None:
        try:
            model = tf_keras.models.load_model(str(path), custom_objects=custom_objects, compile=compile)
        except Exception as exc:
            raise PtyAnalysisError(
                f"tf_keras could not load legacy model {path}: {type(exc).__name__}: {exc}"
            ) from exc
        return _wrap_keras(model, str(path), "h5", "tf_keras", sidecar)
    # No tf_keras: Keras 3 reads plain-layer Keras 2 H5 files itself; try that first.
    import keras

    _import_custom_layers()
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
    tf = _tf()
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
        _call=call, _keepalive=root,
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


def _load_bundle(path: Path, model_name: str = "diffraction_to_obj") -> LoadedModel:
    members = bundle_members(path)
    lines = [f"    {m}: {'found' if ok else 'MISSING'}" for m, ok in members["found"].items()]
    if members["other"]:
        lines.append(f"    other members: {', '.join(members['other'][:20])}")
    listing = "\n".join(lines)
    missing = [p for p in ("ptycho", "dill") if importlib.util.find_spec(p) is None]
    if missing:
        what = {
            "ptycho": "the `ptycho` package (PtychoPINN) for its custom layers, which rebuild the "
                      "architecture",
            "dill": "`dill` to unpickle params.dill / custom_objects.dill / manifest.dill",
        }
        raise PtyAnalysisError(
            f"cannot load PtychoPINN bundle {path}: missing "
            + " and ".join(what[m] for m in missing)
            + ". Install PtychoPINN (its repository, pip install -e .) and dill in this "
            "environment, or export the model to a .keras file where PtychoPINN is installed. "
            f"Bundle members:\n{listing}"
        )
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
    sidecar = None
    with contextlib.suppress(Exception):
        from ptycho import params as ptycho_params  # type: ignore[import-not-found]

        sidecar = {
            k: v for k, v in dict(ptycho_params.cfg).items()
            if isinstance(v, (int, float, str, bool)) or v is None
        }
    log.warning(
        "loading %s set PtychoPINN's process-global params (ptycho.params.cfg: intensity_scale, "
        "gridsize, N); loading another bundle later overwrites them for both models", path,
    )
    return _wrap_keras(models[model_name], str(path), "ptychopinn_bundle",
                       "ptycho.model_manager.ModelManager.load_multiple_models", sidecar)


# --------------------------------------------------------------------------------------
# Runtime configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeConfig:
    """How the model is executed.

    Attributes
    ----------
    batch_size : int
        Samples per model call (halved automatically on out-of-memory).
    jit_compile : bool
        Compile the graph with XLA (``tf.function(jit_compile=True)``).
    run_eagerly : bool
        Call ``model(x, training=False)`` eagerly instead of through a
        ``tf.function``. Cannot be combined with ``jit_compile``.
    dtype : str or None
        Cast floating inputs to this dtype before the call (None keeps them).
    device : str or None
        TensorFlow device, e.g. ``"/CPU:0"`` or ``"/GPU:0"``; None lets
        TensorFlow choose (a GPU when it sees one). An unavailable device is
        an error, not a silent fallback.
    deterministic : bool
        Enable TF op determinism for the run (restored afterwards).
    """

    batch_size: int = 256
    jit_compile: bool = False
    run_eagerly: bool = False
    dtype: str | None = None
    device: str | None = None
    deterministic: bool = False

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise PtyAnalysisError(f"RuntimeConfig.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.jit_compile and self.run_eagerly:
            raise PtyAnalysisError(
                "RuntimeConfig: jit_compile=True needs graph mode; set run_eagerly=False "
                "(eager execution is never XLA-compiled)"
            )
        if self.dtype is not None:
            try:
                dt = np.dtype(self.dtype)
            except TypeError as exc:
                raise PtyAnalysisError(f"RuntimeConfig.dtype {self.dtype!r} is not a dtype") from exc
            if dt.kind != "f":
                raise PtyAnalysisError(
                    f"RuntimeConfig.dtype must be a floating dtype (float16/float32/float64), got {self.dtype!r}"
                )

    def to_dict(self) -> dict:
        """Return the configuration as a plain dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _check_device(device: str) -> None:
    tf = _tf()
    try:
        want = tf.DeviceSpec.from_string(device)
    except Exception as exc:
        raise PtyAnalysisError(f"RuntimeConfig.device {device!r} is not a TF device string ({exc})") from exc
    avail = tf.config.list_logical_devices()
    for d in avail:
        have = tf.DeviceSpec.from_string(d.name)
        if (want.device_type or "").upper() == (have.device_type or "").upper() and (
            want.device_index is None or want.device_index == have.device_index
        ):
            return
    raise PtyAnalysisError(
        f"device {device!r} is not available; TensorFlow sees: "
        f"{', '.join(d.name for d in avail) or 'nothing'}. Use one of these or device=None"
    )


@contextlib.contextmanager
def _op_determinism(record: dict):
    tf = _tf()
    try:
        from tensorflow.python.framework import config as _tfc

        was = bool(_tfc.is_op_determinism_enabled())
        disable = _tfc.disable_op_determinism
    except (ImportError, AttributeError):
        was, disable = False, None
    if not was:
        tf.config.experimental.enable_op_determinism()
    record["deterministic_restored"] = was or disable is not None
    try:
        yield
    finally:
        if not was:
            if disable is not None:
                disable()
            else:
                log.warning("TF op determinism stays enabled: this TF has no way to turn it off")


@contextlib.contextmanager
def _runtime_scope(runtime: RuntimeConfig, record: dict):
    tf = _tf()
    with contextlib.ExitStack() as stack:
        if runtime.device:
            _check_device(runtime.device)
            stack.enter_context(tf.device(runtime.device))
        if runtime.deterministic:
            stack.enter_context(_op_determinism(record))
        yield


def _get_function(loaded: LoadedModel, runtime: RuntimeConfig):
    if runtime.run_eagerly:
        call = loaded._call
        return lambda *xs: call(list(xs))
    cache = _function_cache(loaded)
    key = (bool(runtime.jit_compile), runtime.dtype)
    fn = cache.get(key)
    if fn is None:
        tf = _tf()
        call = loaded._call

        def _graph_call(*xs):
            return call(list(xs))

        fn = tf.function(_graph_call, jit_compile=bool(runtime.jit_compile), reduce_retracing=True)
        cache[key] = fn
    return fn


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


class _ArraySource:
    """Chunks of an in-memory array (or a view)."""

    def __init__(self, name, array):
        self.name, self.array = name, array
        self.shape, self.dtype = tuple(array.shape), array.dtype

    def read(self, a, b):
        return np.asarray(self.array[a:b])

    def close(self):
        pass


class _FileSource:
    """Chunks of a C-ordered array stored at ``offset`` in a file, read by positioned reads."""

    def __init__(self, name, path, offset, dtype, shape):
        self.name, self.path, self.offset = name, str(path), int(offset)
        self.dtype, self.shape = np.dtype(dtype), tuple(int(s) for s in shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fh = None
        self._lock = threading.Lock()

    def read(self, a, b):
        out = np.empty((b - a,) + self.shape[1:], dtype=self.dtype)
        buf = memoryview(out).cast("B")
        with self._lock:
            if self._fh is None:
                self._fh = open(self.path, "rb", buffering=0)
            self._fh.seek(self.offset + a * self.row_bytes)
            got = 0
            while got < len(buf):
                k = self._fh.readinto(buf[got:])
                if not k:
                    raise PtyAnalysisError(
                        f"{self.path}: file ends early while reading {self.name!r} samples "
                        f"{a}:{b} (truncated file?)"
                    )
                got += k
        return out

    def close(self):
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _npy_header(fh) -> tuple:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    return shape, fortran, dtype, fh.tell()


def _npy_source(name, path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise PtyAnalysisError(f"input {name!r}: file {path} does not exist")
    try:
        with open(path, "rb") as fh:
            shape, fortran, dtype, offset = _npy_header(fh)
    except (ValueError, OSError) as exc:
        raise PtyAnalysisError(f"input {name!r}: {path} is not a readable .npy file ({exc})") from exc
    if fortran or dtype.hasobject:
        return _ArraySource(name, np.load(path, mmap_mode=None if dtype.hasobject else "r",
                                          allow_pickle=False))
    return _FileSource(name, path, offset, dtype, shape)


def _memmap_source(name, arr: np.memmap):
    """Read an original (not sliced) file-backed memmap by offset; else slice it."""
    if (
        isinstance(arr.base, mmap.mmap) and arr.filename and arr.flags.c_contiguous
        and getattr(arr, "mode", "c") in ("r", "r+", "w+") and arr.ndim >= 1
    ):
        return _FileSource(name, arr.filename, arr.offset, arr.dtype, arr.shape)
    return _ArraySource(name, arr)


def open_npz(path) -> dict:
    """Open the arrays of an ``.npz`` for streaming without loading them.

    Uncompressed (stored) members are located inside the zip and read by
    offset; compressed members are read into memory (with a warning saying to
    store the file uncompressed with ``np.savez``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        ``{name: source}``; each source has ``shape``, ``dtype`` and
        ``read(start, stop)``.
    """
    path = Path(path)
    if not path.is_file():
        raise PtyAnalysisError(f"inputs file {path} does not exist")
    out = {}
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PtyAnalysisError(f"{path} is not a readable .npz file ({exc})") from exc
    with zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            if info.compress_type == zipfile.ZIP_STORED:
                fh.seek(info.header_offset)
                local = fh.read(30)
                if local[:4] != b"PK\x03\x04":
                    raise PtyAnalysisError(f"{path}: bad zip local header for member {info.filename}")
                n_name = int.from_bytes(local[26:28], "little")
                n_extra = int.from_bytes(local[28:30], "little")
                fh.seek(info.header_offset + 30 + n_name + n_extra)
                try:
                    shape, fortran, dtype, offset = _npy_header(fh)
                except ValueError as exc:
                    raise PtyAnalysisError(f"{path}: member {info.filename} is not a .npy array ({exc})") from exc
                if not fortran and not dtype.hasobject:
                    out[name] = _FileSource(name, path, offset, dtype, shape)
                    continue
            log.warning(
                "%s: member %r is compressed (or Fortran-ordered) and is read into memory; "
                "store the split with np.savez (uncompressed) to stream it", path, name,
            )
            with np.load(path, allow_pickle=False) as data:
                out[name] = _ArraySource(name, data[name])
    return out


def _as_source(name, value):
    if isinstance(value, (str, Path)):
        if str(value).lower().endswith(".npy"):
            return _npy_source(name, value)
        raise PtyAnalysisError(
            f"input {name!r}: {value} is not a .npy file; give arrays, .npy paths or one .npz path"
        )
    if isinstance(value, np.memmap):
        return _memmap_source(name, value)
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.ndim == 0:
        raise PtyAnalysisError(f"input {name!r} is a scalar; expected an array with a sample axis first")
    return _ArraySource(name, value)


def _resolve_inputs(loaded: LoadedModel, inputs) -> list:
    names = list(loaded.input_names)
    expected = ", ".join(names) if names else "(the model does not declare them)"
    if isinstance(inputs, (str, Path)):
        p = Path(inputs)
        if p.suffix.lower() == ".npy":
            inputs = [str(p)]
        elif p.suffix.lower() == ".npz":
            inputs = open_npz(p)
            if len(names) == 1 and len(inputs) == 1 and names[0] not in inputs:
                log.info("%s: using its only array %r as input %r", p, next(iter(inputs)), names[0])
                inputs = {names[0]: next(iter(inputs.values()))}
        else:
            raise PtyAnalysisError(f"inputs path {p} must be a .npz (arrays named like the inputs: {expected}) or a .npy")
    if isinstance(inputs, dict):
        if not names:
            raise PtyAnalysisError(
                "inputs given by name but the model does not declare input names; pass a list in call order"
            )
        unknown = sorted(set(inputs) - set(names))
        missing = [n for n in names if n not in inputs]
        if unknown or missing:
            raise PtyAnalysisError(
                f"model inputs are [{expected}]; "
                + (f"unknown: {', '.join(map(str, unknown))}; " if unknown else "")
                + (f"missing: {', '.join(missing)}; " if missing else "")
                + "name the inputs exactly like the model's"
            )
        values = [inputs[n] for n in names]
    elif isinstance(inputs, (list, tuple)):
        values = list(inputs)
        if names and len(values) != len(names):
            raise PtyAnalysisError(
                f"model takes {len(names)} input(s) [{expected}] but {len(values)} were given"
            )
        if not names:
            names = [f"input_{i}" for i in range(len(values))]
    else:
        if names and len(names) != 1:
            raise PtyAnalysisError(
                f"model takes {len(names)} inputs [{expected}]; pass a dict or a list, not one array"
            )
        values = [inputs]
        names = names or ["input_0"]
    sources = [v if hasattr(v, "read") and hasattr(v, "shape") else _as_source(n, v)
               for n, v in zip(names, values)]
    counts = {s.name: s.shape[0] for s in sources}
    if len(set(counts.values())) > 1:
        raise PtyAnalysisError(
            "inputs have different sample counts (first axis): "
            + ", ".join(f"{k}={v}" for k, v in counts.items())
            + "; every input needs one row per sample (they are never broadcast)"
        )
    shapes = loaded.input_shapes or [None] * len(sources)
    for src, want in zip(sources, shapes):
        if want is None:
            continue
        got = src.shape[1:]
        exp = tuple(want[1:])
        if len(got) != len(exp) or any(e is not None and e != g for e, g in zip(exp, got)):
            raise PtyAnalysisError(
                f"input {src.name!r} has per-sample shape {got}, the model expects "
                f"{tuple('?' if e is None else e for e in exp)}"
            )
    return sources


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputStats:
    """Statistics of one model output over a whole run, plus per-chunk rows.

    For real outputs ``mean`` is the mean of the finite values and
    ``max_abs`` the largest finite ``|x|``; for complex outputs both refer to
    ``|z|`` and ``real_*`` / ``imag_*`` count nonzero and non-finite parts.
    ``nonzero`` counts elements different from 0 (NaN counts as nonzero),
    ``nan`` / ``inf`` count non-finite elements (of ``|z|`` when complex).
    """

    name: str
    dtype: str
    shape: tuple
    size: int
    mean: float
    max_abs: float
    nonzero: int
    nan: int
    inf: int
    real_nonzero: int | None = None
    imag_nonzero: int | None = None
    real_nonfinite: int | None = None
    imag_nonfinite: int | None = None
    chunks: tuple = ()

    @property
    def zero_fraction(self) -> float:
        """Fraction of elements exactly zero."""
        return 1.0 - self.nonzero / self.size if self.size else float("nan")

    def to_dict(self, chunks: bool = False) -> dict:
        """Return the totals (and the per-chunk rows when ``chunks``) as a JSON-safe dict."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "chunks"}
        d["shape"] = list(self.shape)
        d["zero_fraction"] = self.zero_fraction
        if self.real_nonzero is None:
            for k in ("real_nonzero", "imag_nonzero", "real_nonfinite", "imag_nonfinite"):
                d.pop(k)
        if chunks:
            d["chunks"] = [dict(r) for r in self.chunks]
        return d

    def chunk_table(self):
        """Per-chunk statistics as a ``pandas.DataFrame`` (one row per chunk)."""
        import pandas as pd

        return pd.DataFrame(list(self.chunks))


def _chunk_stats(a: np.ndarray) -> dict:
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    iscomplex = np.iscomplexobj(a)
    mag = np.abs(a) if (iscomplex or a.dtype.kind == "f") else a
    size = int(a.size)
    if a.dtype.kind in "fc":
        n_nan = int(np.count_nonzero(np.isnan(mag)))
        n_inf = int(np.count_nonzero(np.isinf(mag)))
    else:
        n_nan = n_inf = 0
    vals = mag if iscomplex else a
    if n_nan or n_inf:
        finite = np.isfinite(mag)
        total = float(np.sum(vals, where=finite, dtype=np.float64))
        mx = float(np.max(mag, where=finite, initial=0)) if size - n_nan - n_inf else float("nan")
    else:
        total = float(np.sum(vals, dtype=np.float64))
        mx = float(np.max(mag)) if size else float("nan")
        if not iscomplex and a.dtype.kind != "f" and size:
            mx = float(np.max(np.abs(a.astype(np.float64))))
    row = {"size": size, "sum": total, "max_abs": mx, "nonzero": int(np.count_nonzero(a)),
           "nan": n_nan, "inf": n_inf}
    if iscomplex:
        re, im = a.real, a.imag
        row.update(
            real_nonzero=int(np.count_nonzero(re)), imag_nonzero=int(np.count_nonzero(im)),
            real_nonfinite=int(size - np.count_nonzero(np.isfinite(re))),
            imag_nonfinite=int(size - np.count_nonzero(np.isfinite(im))),
        )
    return row


class _StatsAccumulator:
    """Running statistics of one output (a consumer of chunks)."""

    _SUMMED = ("size", "sum", "nonzero", "nan", "inf", "real_nonzero", "imag_nonzero",
               "real_nonfinite", "imag_nonfinite")

    def __init__(self, name):
        self.name = name
        self.rows = []
        self.dtype = None
        self.sample_shape = None

    def update(self, chunk: np.ndarray, start: int) -> None:
        if self.dtype is None:
            self.dtype, self.sample_shape = chunk.dtype, chunk.shape[1:]
        row = _chunk_stats(chunk)
        finite = row["size"] - row["nan"] - row["inf"]
        row["mean"] = row["sum"] / finite if finite else float("nan")
        self.rows.append({"start": int(start), "stop": int(start + len(chunk)), **row})

    def result(self, n: int) -> OutputStats:
        tot = {k: sum(r[k] for r in self.rows) for k in self._SUMMED if self.rows and k in self.rows[0]}
        finite = tot.get("size", 0) - tot.get("nan", 0) - tot.get("inf", 0)
        maxes = [r["max_abs"] for r in self.rows if r["max_abs"] == r["max_abs"]]
        chunks = tuple(
            {k: r[k] for k in ("start", "stop", "size", "mean", "max_abs", "nonzero", "nan", "inf",
                                "real_nonzero", "imag_nonzero", "real_nonfinite", "imag_nonfinite")
             if k in r}
            for r in self.rows
        )
        return OutputStats(
            name=self.name, dtype=str(self.dtype), shape=(n,) + tuple(self.sample_shape or ()),
            size=int(tot.get("size", 0)),
            mean=tot["sum"] / finite if finite else float("nan"),
            max_abs=max(maxes) if maxes else float("nan"),
            nonzero=int(tot.get("nonzero", 0)), nan=int(tot.get("nan", 0)), inf=int(tot.get("inf", 0)),
            real_nonzero=tot.get("real_nonzero"), imag_nonzero=tot.get("imag_nonzero"),
            real_nonfinite=tot.get("real_nonfinite"), imag_nonfinite=tot.get("imag_nonfinite"),
            chunks=chunks,
        )


# --------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OOMEvent:
    """One out-of-memory on a batch: where, and the batch size before and after halving."""

    start: int
    batch_before: int
    batch_after: int
    error: str


@dataclass(frozen=True)
class InferenceResult:
    """What :func:`run_inference` returns.

    Attributes
    ----------
    outputs : list of np.ndarray or None
        Outputs in memory (only when neither consumers nor out_dir were given).
    output_names : list of str
    paths : dict or None
        ``{output name: .npy path}`` when ``out_dir`` was given.
    stats : dict or None
        ``{output name: OutputStats}``.
    runtime : dict
        Device used, batch sizes, jit/eager/dtype/determinism, versions,
        elapsed seconds, samples/s.
    oom_events : tuple of OOMEvent
    n_samples : int
    """

    outputs: list | None
    output_names: list
    paths: dict | None
    stats: dict | None
    runtime: dict
    oom_events: tuple
    n_samples: int

    def to_dict(self) -> dict:
        """JSON-safe summary (no arrays): runtime record, statistics, OOM events, paths."""
        return {
            "n_samples": self.n_samples,
            "output_names": list(self.output_names),
            "paths": {k: str(v) for k, v in (self.paths or {}).items()} or None,
            "stats": {k: v.to_dict() for k, v in (self.stats or {}).items()} or None,
            "runtime": dict(self.runtime),
            "oom_events": [e.__dict__.copy() for e in self.oom_events],
        }


class _ChunkReader:
    """Reads input chunks in order, optionally one chunk ahead in a thread."""

    def __init__(self, sources, n, prefetch):
        self.sources, self.n = sources, n
        self._buf = None
        self._buf_start = None
        self._future = None
        self._future_start = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ptyanalysis-read") if prefetch else None

    def _read(self, a, b):
        return [s.read(a, b) for s in self.sources]

    def take(self, pos, size):
        if self._buf is None or self._buf_start != pos:
            if self._future is not None and self._future_start == pos:
                self._buf = self._future.result()
            else:
                if self._future is not None:
                    self._future.result()
                self._buf = self._read(pos, min(pos + size, self.n))
            self._buf_start, self._future = pos, None
        if len(self._buf[0]) > size:
            out = [b[:size] for b in self._buf]
            self._buf = [b[size:] for b in self._buf]
            self._buf_start = pos + size
        else:
            out, self._buf = self._buf, None
        nxt = pos + len(out[0])
        if self._pool is not None and self._buf is None and self._future is None and nxt < self.n:
            self._future = self._pool.submit(self._read, nxt, min(nxt + size, self.n))
            self._future_start = nxt
        return out

    def unget(self, pos, arrays):
        self._buf, self._buf_start = arrays, pos

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _oom_types():
    tf = _tf()
    return (tf.errors.ResourceExhaustedError, MemoryError)


class _Progress:
    def __init__(self, n, enabled, desc):
        self.n, self.done, self.desc = n, 0, desc
        self._bar = None
        self._next_log = 0.1
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=n, unit="sample", desc=desc, leave=False)

    def update(self, k):
        self.done += k
        if self._bar is not None:
            self._bar.update(k)
        elif self.n and self.done / self.n >= self._next_log:
            log.info("%s: %d/%d samples (%.0f%%)", self.desc, self.done, self.n, 100 * self.done / self.n)
            while self._next_log <= self.done / self.n:
                self._next_log += 0.1

    def close(self):
        if self._bar is not None:
            self._bar.close()


def _stream(loaded, sources, runtime, on_chunk, *, progress, prefetch, record, desc="inference"):
    """Core loop: read chunks, call the model, hand outputs to ``on_chunk(outs, start)``."""
    tf = _tf()
    n = int(sources[0].shape[0]) if sources else 0
    oom = _oom_types()
    events, sizes, devices = [], [], []
    cast = np.dtype(runtime.dtype) if runtime.dtype else None
    bar = _Progress(n, progress, desc)
    reader = _ChunkReader(sources, n, prefetch)
    t0 = time.perf_counter()
    try:
        with _runtime_scope(runtime, record):
            fn = _get_function(loaded, runtime)
            bs, pos = int(runtime.batch_size), 0
            while pos < n:
                xs = reader.take(pos, bs)
                m = len(xs[0])
                try:
                    tensors = [
                        tf.convert_to_tensor(x.astype(cast, copy=False) if cast is not None and x.dtype.kind == "f" else x)
                        for x in xs
                    ]
                    outs = fn(*tensors)
                    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
                    arrays = [o.numpy() for o in outs]
                except oom as exc:
                    if m <= 1:
                        raise
                    new = max(1, m // 2)
                    events.append(OOMEvent(pos, m, new, f"{type(exc).__name__}: {str(exc)[:300]}"))
                    log.warning("out of memory on a batch of %d at sample %d; retrying with %d", m, pos, new)
                    del exc
                    bs = new
                    reader.unget(pos, xs)
                    continue
                bad = [i for i, a in enumerate(arrays) if a.ndim == 0 or a.shape[0] != m]
                if bad:  # never hand on outputs whose rows do not match the samples (no broadcast)
                    names = list(loaded.output_names) if len(loaded.output_names) == len(arrays) else \
                        [f"output_{i}" for i in range(len(arrays))]
                    raise PtyAnalysisError(
                        f"model {loaded.source}: output {names[bad[0]]!r} has shape {arrays[bad[0]].shape} "
                        f"for a batch of {m} samples at sample {pos}; every output needs one row per "
                        "input sample (outputs per group member, or aggregated outputs, cannot be "
                        "matched to their inputs)"
                    )
                dev = getattr(outs[0], "device", None) if outs else None
                if dev and dev not in devices:
                    devices.append(dev)
                if m not in sizes:
                    sizes.append(m)
                on_chunk(arrays, pos)
                pos += m
                bar.update(m)
    finally:
        reader.close()
        bar.close()
        for s in sources:
            s.close()
    elapsed = time.perf_counter() - t0
    record.update(
        device=devices[0] if devices else None, devices=devices,
        batch_sizes=sorted(sizes, reverse=True), elapsed_s=elapsed,
        samples_per_s=(n / elapsed) if elapsed > 0 else None, n_samples=n,
    )
    return tuple(events)


def _runtime_record(runtime: RuntimeConfig) -> dict:
    tf = _tf()
    return {
        "requested_device": runtime.device,
        "batch_size": int(runtime.batch_size),
        "jit_compile": bool(runtime.jit_compile),
        "mode": "eager" if runtime.run_eagerly else "graph",
        "functions_run_eagerly": bool(tf.config.functions_run_eagerly()),
        "dtype": runtime.dtype,
        "deterministic": bool(runtime.deterministic),
    }


class _Collector:
    """Collects streamed outputs into preallocated arrays."""

    def __init__(self, n):
        self.n, self.arrays = n, None

    def __call__(self, outs, start):
        if self.arrays is None:
            self.arrays = [np.empty((self.n,) + o.shape[1:], dtype=o.dtype) for o in outs]
        for dst, o in zip(self.arrays, outs):
            dst[start:start + len(o)] = o


class _NpyWriter:
    """Writes one output as ``.npy`` sequentially, under a temporary name until done."""

    def __init__(self, path, n, stack: contextlib.ExitStack):
        self.path, self.n, self.stack = Path(path), n, stack
        self.fh = None
        self.written = 0

    def write(self, chunk, start):
        if self.fh is None:
            tmp = self.stack.enter_context(atomic_path(self.path))
            self.fh = self.stack.enter_context(open(tmp, "wb"))
            self.dtype, self.sample_shape = chunk.dtype, chunk.shape[1:]
            header = {"descr": np.lib.format.dtype_to_descr(chunk.dtype), "fortran_order": False,
                      "shape": (self.n,) + tuple(chunk.shape[1:])}
            try:
                np.lib.format.write_array_header_1_0(self.fh, header)
            except ValueError:
                np.lib.format.write_array_header_2_0(self.fh, header)
        if chunk.dtype != self.dtype or chunk.shape[1:] != self.sample_shape or start != self.written:
            raise PtyAnalysisError(
                f"output {self.path.stem}: chunk at {start} has shape {chunk.shape[1:]} / dtype "
                f"{chunk.dtype}, earlier chunks {self.sample_shape} / {self.dtype}"
            )
        self.fh.write(np.ascontiguousarray(chunk).data)
        self.written += len(chunk)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def run_inference(model, inputs, runtime: RuntimeConfig = RuntimeConfig(), *, consumers: Sequence = (),
                  out_dir=None, out_names=None, progress=None, stats: bool = True) -> InferenceResult:
    """Stream inputs through a model in chunks.

    Parameters
    ----------
    model : LoadedModel or keras.Model
    inputs : dict, list, array, or path
        ``{input name: array}`` (names must match the model's exactly), a
        list in input order, one array for a one-input model, or a path to an
        ``.npz`` (arrays named like the inputs) or ``.npy``. Arrays may be
        ``np.memmap`` and dict values may be ``.npy`` paths: file-backed
        inputs are read chunk by chunk. All inputs need the same sample count.
    runtime : RuntimeConfig
    consumers : sequence of callables
        Each is called as ``consumer(chunk_outputs, start)`` with the list of
        output arrays of samples ``start : start + len(chunk)``, in order.
    out_dir : str or Path, optional
        Write each output to ``out_dir/<name>.npy`` (temporary name until the
        run succeeds).
    out_names : list of str, optional
        File names (without ``.npy``) of the outputs; default the model's
        output names.
    progress : bool, optional
        tqdm progress bar; default when stderr is a terminal, plain log lines
        (logger ``ptyanalysis.inference``, INFO) otherwise.
    stats : bool
        Keep running per-output statistics (:class:`OutputStats`).

    Returns
    -------
    InferenceResult
        Outputs are kept in memory only when neither ``consumers`` nor
        ``out_dir`` is given.

    Raises
    ------
    PtyAnalysisError
        Inputs that do not match the model, unavailable device.
    tf.errors.ResourceExhaustedError, MemoryError
        When even a batch of one sample runs out of memory (smaller batches
        are retried with half the size; each halving is recorded).
    """
    loaded = _as_loaded(model)
    sources = _resolve_inputs(loaded, inputs)
    n = int(sources[0].shape[0])
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    record = {"started": utc_now(), **_runtime_record(runtime)}
    versions = software_versions(("tensorflow", "keras", "numpy", "ptyanalysis"))
    record.update(tensorflow=versions.get("tensorflow"), keras=versions.get("keras"), versions=versions)

    handlers: list = []
    accs: list | None = [] if stats else None
    collector = _Collector(n) if not consumers and out_dir is None else None
    writers: list | None = None
    names_box: dict = {}

    with contextlib.ExitStack() as stack:
        def on_chunk(outs, start):
            nonlocal writers
            if "names" not in names_box:
                names = list(loaded.output_names) if len(loaded.output_names) == len(outs) else \
                    [f"output_{i}" for i in range(len(outs))]
                names_box["names"] = names
                if accs is not None:
                    accs.extend(_StatsAccumulator(nm) for nm in names)
                if out_dir is not None:
                    files = list(out_names) if out_names is not None else [_SAFE_NAME.sub("_", nm) for nm in names]
                    if len(files) != len(outs) or len(set(files)) != len(files):
                        raise PtyAnalysisError(
                            f"out_names {files} must give one unique name per output "
                            f"({len(outs)} outputs: {', '.join(names)})"
                        )
                    writers = [_NpyWriter(Path(out_dir) / f"{f}.npy", n, stack) for f in files]
            if accs is not None:
                for acc, o in zip(accs, outs):
                    acc.update(o, start)
            if writers is not None:
                for w, o in zip(writers, outs):
                    w.write(o, start)
            if collector is not None:
                collector(outs, start)
            for c in consumers:
                c(outs, start)

        events = _stream(loaded, sources, runtime, on_chunk, progress=progress, prefetch=True,
                         record=record, desc=f"inference {Path(loaded.source).name}")
        for w in writers or ():
            if w.written != n:  # pragma: no cover - the loop covers every sample
                raise PtyAnalysisError(f"{w.path}: wrote {w.written} of {n} samples")
    names = names_box.get("names", list(loaded.output_names))
    record["oom_events"] = len(events)
    if n == 0:
        log.warning("run_inference: the inputs hold no samples")
    return InferenceResult(
        outputs=collector.arrays if collector is not None else None,
        output_names=names,
        paths={nm: w.path for nm, w in zip(names, writers)} if writers else None,
        stats={a.name: a.result(n) for a in accs} if accs is not None else None,
        runtime=record,
        oom_events=events,
        n_samples=n,
    )


def predict(model, inputs, runtime: RuntimeConfig = RuntimeConfig(), *, progress=None) -> list:
    """Run a model on small in-memory inputs and return its outputs.

    The cheap path the diagnosis engines call repeatedly: no statistics, no
    runtime record, no read-ahead thread; the ``tf.function`` (per jit flag and
    dtype) is compiled once per model and reused.

    Parameters
    ----------
    model : LoadedModel or keras.Model
    inputs : dict, list or array
        As for :func:`run_inference`.
    runtime : RuntimeConfig
    progress : bool, optional
        Show a tqdm bar (default: off; this is called in loops).

    Returns
    -------
    list of np.ndarray
        One array per model output, in the model's output order.
    """
    loaded = _as_loaded(model)
    sources = _resolve_inputs(loaded, inputs)
    collector = _Collector(int(sources[0].shape[0]))
    _stream(loaded, sources, runtime, collector, progress=bool(progress), prefetch=False, record={})
    if collector.arrays is None:  # zero samples: run once on nothing is impossible; say so
        raise PtyAnalysisError("predict: the inputs hold no samples")
    return collector.arrays
