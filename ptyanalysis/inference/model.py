"""A loaded model: the callable, its input/output names and shapes, its source and sidecar."""

from __future__ import annotations

import contextlib
import re
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PtyAnalysisError
from ..provenance import software_versions
from ..state import function_store

MODEL_KINDS = ("keras", "h5", "savedmodel", "factory", "ptychopinn_bundle", "object", "torch_module",
               "ptychopinn_torch_bundle")

#: Members of a PtychoPINN ``wts.h5.zip`` bundle (docs/formats.md#tensorflow-bundles).
BUNDLE_MODELS = ("autoencoder", "diffraction_to_obj")
BUNDLE_MODEL_FILES = ("model.keras", "custom_objects.dill", "params.dill")

_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SPEC_HELP = (
    "expected a .keras file, a model directory (with model.keras, saved_model.pb or "
    "wts.h5.zip), a legacy .h5 file, a PtychoPINN wts.h5.zip bundle, or a "
    "'module:function' factory string"
)



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
        PtychoPINN bundle its ``<model>/params.dill``, :func:`~ptyanalysis.inference.loading.bundle_params`).
    input_dtypes : list of str or None
        Declared input dtypes, where known.
    loader : str
        What loaded it (``"keras.saving.load_model"``, ``"tf_keras"``, ...).
    backend : str
        What runs it: ``"tensorflow"``, ``"jax"`` or ``"torch"``
        (:mod:`ptyanalysis.inference.backends`); a ``.keras`` model runs under
        the process's Keras backend.
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
    backend: str = "tensorflow"
    _call: Callable | None = field(default=None, repr=False)
    _pack: Callable | None = field(default=None, repr=False)
    _unpack: Callable | None = field(default=None, repr=False)
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
        ``outputs``, ``n_params`` (None when unknown), ``sidecar``, the
        ``backend`` that runs it and the TensorFlow / Keras versions.
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
        "backend": loaded.backend,
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
    """Introspect a Keras(-like) model; return (names, shapes, dtypes, out_names, call, pack, unpack).

    ``pack(xs)`` turns a list of inputs (call order) into what the model takes
    (a dict, a list or one tensor), ``unpack(out)`` its outputs into a list in
    :attr:`LoadedModel.output_names` order; ``call(xs) = unpack(model(pack(xs)))``.
    """
    try:
        struct = model.input
    except (AttributeError, ValueError):  # unbuilt subclassed / Sequential model
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

    def pack(xs):
        if mode == "dict":
            return dict(zip(names, xs))
        if mode == "single" or (mode == "unknown" and len(xs) == 1):
            return xs[0]
        return list(xs)

    def unpack(out):
        return _flatten_outputs(out, out_names)

    def call(xs):
        m = get()
        if m is None:  # pragma: no cover - the caller holds the model
            raise PtyAnalysisError("the model was garbage-collected during inference")
        return unpack(m(pack(xs), training=False))

    return names, shapes, dtypes, out_names, call, pack, unpack


def _wrap_keras(model, source: str, kind: str, loader: str, sidecar=None, *, weak=False, backend=None):
    from .backends import model_backend

    names, shapes, dtypes, out_names, call, pack, unpack = _keras_adapter(model, weak=weak)
    return LoadedModel(
        model=model, input_names=names, input_shapes=shapes, output_names=out_names,
        source=source, kind=kind, sidecar=sidecar, input_dtypes=dtypes, loader=loader,
        backend=backend or model_backend(model), _call=call, _pack=pack, _unpack=unpack,
    )


def _is_torch_module(model) -> bool:
    """A plain ``torch.nn.Module`` (a Keras-torch model is a Module too, but runs as a Keras model)."""
    torch, keras = sys.modules.get("torch"), sys.modules.get("keras")
    return torch is not None and isinstance(model, torch.nn.Module) and not (
        keras is not None and isinstance(model, keras.Model))


def _wrap_torch(module, source: str, kind: str = "torch_module", loader: str = "in-memory object", sidecar=None,
                *, input_names=None, output_names=None, input_shapes=None) -> LoadedModel:
    """A plain PyTorch module as a :class:`LoadedModel`: called as ``module(*inputs)`` (inputs in order).

    Input names are ``input_names``, else the parameters of ``module.forward``;
    outputs (a tensor, or a tuple / list / dict of tensors) are returned as a list.
    """
    import inspect

    if input_names is None:
        try:
            params = inspect.signature(module.forward).parameters.values()
            input_names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            input_names = []
    names = [str(n) for n in input_names]
    out_names = [str(n) for n in (output_names or [])]

    def call(xs):
        return _flatten_outputs(module(*xs), out_names)

    shapes = list(input_shapes) if input_shapes is not None else [None] * len(names)
    return LoadedModel(model=module, input_names=names, input_shapes=shapes, output_names=out_names,
                       source=source, kind=kind, sidecar=sidecar, input_dtypes=None, loader=loader,
                       backend="torch", _call=call)


def _as_loaded(model) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if _is_torch_module(model):
        return _wrap_torch(model, source=f"<{type(model).__name__} object>")
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
    """Where a model's compiled functions and batch-size limits are kept: a ``LoadedModel``'s own, or for an
    in-memory model object the process-wide store of :mod:`ptyanalysis.state` (``"compiled_functions"``;
    when it is off, or the object cannot be weakly referenced, nothing is kept across calls)."""
    if loaded.kind == "object":
        store = function_store(loaded.model)
        if store is not None:
            return store
    return loaded._functions


