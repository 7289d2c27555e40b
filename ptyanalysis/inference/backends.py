"""The backend seam: which Keras backend a process uses, and how a model runs on it.

Two concepts, one module:

- **The choice** (:func:`select_keras_backend`): Keras 3 reads its backend
  once, when ``keras`` is first imported, from ``KERAS_BACKEND``. The command
  line, the notebook kernels and the grid workers call this before anything
  imports Keras: an explicit request (``--backend`` / ``backend=``) wins, then
  ``KERAS_BACKEND``, then an automatic choice among the installed backends
  (:data:`AUTO_ORDER`: on a machine where a GPU may exist JAX, then PyTorch, then
  TensorFlow; without one TensorFlow first, the project's reference stack).
  Nothing here imports TensorFlow, JAX or PyTorch to decide.
- **The executors** (:func:`executor_for`): one per backend (``tensorflow``,
  ``jax``, ``torch``), each knowing how to list and check devices, compile a
  model's forward call (``tf.function`` / ``jax.jit`` of Keras's
  ``stateless_call`` / eager ``torch.no_grad``), move arrays in and out,
  recognise out-of-memory and switch on determinism. The one inference
  runner (:mod:`ptyanalysis.inference.streaming`) calls only these, so
  compare, bisect, compare-splits, the grid, the benchmark and the GPU check
  run the same code on every backend and device.

Devices are written ``"cpu"``, ``"gpu"``, ``"gpu:1"`` (``"cuda:0"`` and
TensorFlow's ``"/GPU:0"`` are accepted and read the same way).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from dataclasses import dataclass

import numpy as np

from ..accelerators import gpu_may_exist
from ..errors import PtyAnalysisError, did_you_mean
from ..quiet import find_spec, import_tensorflow_quietly, quiet_tensorflow_import

log = logging.getLogger("ptyanalysis.inference")

#: Keras backends ptyanalysis runs models under.
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
#: The module each backend needs.
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
#: Automatic choice among the installed backends: where a GPU may exist the fastest first (JAX ran the
#: study network 4x faster than Keras-torch on an H200); without one the project's reference stack first.
AUTO_ORDER = {"gpu": ("jax", "torch", "tensorflow"), "cpu": ("tensorflow", "jax", "torch")}
#: What to install for each backend (the package's extras, pyproject.toml).
INSTALL_HINT = {"tensorflow": "pip install 'ptyanalysis[tensorflow]'", "jax": "pip install 'ptyanalysis[jax]'",
                "torch": "pip install 'ptyanalysis[torch]'"}
#: The Keras backend setting's environment variable (read by Keras at its first import).
ENV = "KERAS_BACKEND"


# --------------------------------------------------------------------------------------
# The choice
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendChoice:
    """The Keras backend of this process and why.

    Attributes
    ----------
    name : str
        One of :data:`KERAS_BACKENDS`.
    source : str
        ``"requested"`` (``--backend`` / ``backend=``), ``"KERAS_BACKEND"``,
        ``"keras already imported"`` or ``"automatic"``.
    reason : str
        One line for the output and the provenance.
    """

    name: str
    source: str
    reason: str

    def to_dict(self) -> dict:
        """Return the choice as a plain dict."""
        return {"name": self.name, "source": self.source, "reason": self.reason}


def installed(module: str) -> bool:
    """True if ``module`` can be found without importing it (a blocked or broken finder counts as absent)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_backends() -> list:
    """The Keras backends whose module is installed, in :data:`KERAS_BACKENDS` order."""
    return [b for b in KERAS_BACKENDS if installed(BACKEND_MODULES[b])]


def _imported_keras_backend() -> str | None:
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return str(keras.backend.backend())
    except AttributeError:  # a partly imported keras
        return None


def _check_name(name: str, what: str) -> str:
    name = str(name).strip().lower()
    aliases = {"tf": "tensorflow", "pytorch": "torch"}
    name = aliases.get(name, name)
    if name not in KERAS_BACKENDS:
        raise PtyAnalysisError(f"{what} {name!r} is not a Keras backend this package runs under; choose one of "
                               f"{', '.join(KERAS_BACKENDS)}" + did_you_mean(name, KERAS_BACKENDS))
    return name


def _not_installed(name: str, why: str) -> PtyAnalysisError:
    have = installed_backends()
    return PtyAnalysisError(
        f"Keras backend {name!r} ({why}) is not installed: the module {BACKEND_MODULES[name]!r} cannot be "
        f"imported. Install it ({INSTALL_HINT[name]})"
        + (f", or choose an installed one: {', '.join(have)} (--backend or KERAS_BACKEND)" if have else ""))


def select_keras_backend(requested: str | None = None, *, environ=None, torch_models=()) -> BackendChoice:
    """Choose this process's Keras backend and set ``KERAS_BACKEND`` for Keras (and child processes).

    Parameters
    ----------
    requested : str, optional
        ``"tensorflow"``, ``"jax"``, ``"torch"`` or ``"auto"``/None (no request).
    environ : mapping, optional
        The environment to read and set (default ``os.environ``).
    torch_models : sequence of path, optional
        PtychoPINN PyTorch bundles the command will run
        (:func:`ptyanalysis.inference.torch_bundle.find_torch_bundles`): the
        automatic choice is then PyTorch where installed, so that TensorFlow
        is never imported beside PyTorch (the two in one process can crash).

    Returns
    -------
    BackendChoice

    Raises
    ------
    PtyAnalysisError
        An unknown or uninstalled backend, no backend installed, or Keras
        already imported in this process with another backend (Keras cannot
        switch backends once imported).
    """
    env = os.environ if environ is None else environ
    if requested in (None, "", "auto"):
        requested = None
    imported = _imported_keras_backend()
    if requested is not None:
        name = _check_name(requested, "--backend")
        choice = BackendChoice(name, "requested", f"Keras backend {name} (requested)")
    elif env.get(ENV):
        name = _check_name(env[ENV], f"{ENV}=")
        choice = BackendChoice(name, ENV, f"Keras backend {name} (from {ENV})")
    elif imported is not None:
        name = imported
        choice = BackendChoice(name, "keras already imported", f"Keras backend {name} (Keras was already imported)")
    elif torch_models and installed("torch"):
        name = "torch"
        choice = BackendChoice(name, "automatic", (
            f"Keras backend torch (automatic: {len(torch_models)} PtychoPINN PyTorch bundle(s), e.g. "
            f"{torch_models[0]}, so PyTorch and no TensorFlow in this process; choose with --backend or {ENV})"))
    else:
        where = "gpu" if gpu_may_exist() else "cpu"
        have = installed_backends()
        order = [b for b in AUTO_ORDER[where] if b in have]
        if not order:
            raise PtyAnalysisError(
                "no Keras backend is installed (none of tensorflow, jax, torch can be imported); install one: "
                + "; ".join(f"{b}: {INSTALL_HINT[b]}" for b in AUTO_ORDER[where]))
        name = order[0]
        others = [b for b in have if b != name]
        choice = BackendChoice(name, "automatic", (
            f"Keras backend {name} (automatic: "
            + ("a GPU may be present, so the fastest installed backend" if where == "gpu"
               else "no GPU, so the reference stack first")
            + (f"; also installed: {', '.join(others)}" if others else "") + f"; choose with --backend or {ENV})"))
    if imported is not None and imported != choice.name:
        raise PtyAnalysisError(
            f"Keras is already imported in this process with the {imported} backend, and {choice.reason}; Keras "
            f"cannot switch backends once imported: set {ENV}={choice.name} before Python (or the notebook "
            "kernel) starts")
    if not installed(BACKEND_MODULES[choice.name]):
        raise _not_installed(choice.name, choice.source)
    env[ENV] = choice.name
    if choice.name == "tensorflow" and env is os.environ:
        quiet_tensorflow_import()  # costs nothing until TensorFlow is imported
    return choice


def import_keras():
    """Keras, imported under the backend :func:`select_keras_backend` picks when it is not imported yet.

    Every module of this package that needs Keras imports it through this, so
    that a machine without TensorFlow gets JAX or PyTorch (Keras itself would
    default to TensorFlow and fail).

    Returns
    -------
    module
        ``keras``.
    """
    if "keras" not in sys.modules:
        select_keras_backend()
    import keras

    return keras


def keras_backend() -> str:
    """The Keras backend of this process: Keras's own when imported, else what :func:`select_keras_backend` picks."""
    return _imported_keras_backend() or select_keras_backend().name


# --------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------

_DEVICE_RE = re.compile(r"^/?(?:device:)?(cpu|gpu|cuda)(?::(\d+))?$", re.IGNORECASE)


def parse_device(device: str) -> tuple:
    """``("cpu" | "gpu", index or None)`` of a device string.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"gpu"``, ``"gpu:1"``, ``"cuda:0"``, ``"/GPU:0"``, ``"/device:CPU:0"``.

    Returns
    -------
    tuple

    Raises
    ------
    PtyAnalysisError
        Anything else.
    """
    m = _DEVICE_RE.match(str(device).strip())
    if m is None:
        raise PtyAnalysisError(f"device {device!r} is not a device name; use 'cpu', 'gpu' or 'gpu:<index>' "
                               "(also accepted: 'cuda:<index>', TensorFlow's '/GPU:0')")
    kind = "cpu" if m.group(1).lower() == "cpu" else "gpu"
    return kind, (int(m.group(2)) if m.group(2) is not None else None)


def _pick(device, available: list, backend: str) -> str:
    """The available device (canonical name) that ``device`` names."""
    kind, idx = parse_device(device)
    for name in available:
        k, i = parse_device(name)
        if k == kind and (idx is None or idx == i):
            return name
    raise PtyAnalysisError(f"device {device!r} is not available to {backend}; it sees: "
                           f"{', '.join(available) or 'nothing'}. Use one of these, or no device (the default)")


# --------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------


class Executor:
    """How models of one backend run. Subclasses implement the hooks; the runner calls only these.

    Attributes
    ----------
    name : str
        The backend.
    """

    name = ""

    def devices(self) -> list:
        """Canonical names of the devices this backend can run on (``"cpu:0"``, ``"gpu:0"``, ...)."""
        raise NotImplementedError

    def resolve_device(self, device, loaded) -> str | None:
        """The canonical device a run uses: ``device`` checked against :meth:`devices`; None = the default."""
        return None if device is None else _pick(device, self.devices(), self.name)

    def scope(self, device, deterministic: bool, record: dict):
        """A context manager placing the work on ``device`` (None: the backend's default), deterministic if asked."""
        return contextlib.nullcontext()

    def function(self, loaded, runtime, device):
        """``fn(list of numpy arrays) -> list of native outputs`` for this model, runtime and device."""
        raise NotImplementedError

    def to_numpy(self, x) -> np.ndarray:
        """A native output as a host numpy array."""
        return np.asarray(x)

    def device_of(self, x) -> str | None:
        """Where a native output lives, as a canonical name."""
        return None

    def is_oom(self, exc: BaseException) -> bool:
        """Whether an exception is an out-of-memory error (the runner halves the batch)."""
        return isinstance(exc, MemoryError)

    def wait(self, x) -> None:
        """Block until the work producing native output ``x`` is done (for timing; None waits for nothing)."""

    def describe(self) -> dict:
        """Versions and settings for the runtime record."""
        mod = sys.modules.get(BACKEND_MODULES[self.name])
        return {"backend": self.name, "backend_version": getattr(mod, "__version__", None)}


def _canonical(kind: str, index) -> str:
    return f"{kind}:{int(index or 0)}"


class TensorFlowExecutor(Executor):
    """TensorFlow: Keras-on-TensorFlow models, SavedModels, tf_keras models; ``tf.function`` (optionally XLA)."""

    name = "tensorflow"

    @staticmethod
    def tf():
        """TensorFlow, imported with its start-up lines filtered."""
        return import_tensorflow_quietly()

    def devices(self) -> list:
        tf = self.tf()
        out = []
        for d in tf.config.list_logical_devices():
            spec = tf.DeviceSpec.from_string(d.name)
            kind = (spec.device_type or "").lower()
            if kind in ("cpu", "gpu"):
                out.append(_canonical(kind, spec.device_index))
        return out

    @contextlib.contextmanager
    def scope(self, device, deterministic, record):
        tf = self.tf()
        with contextlib.ExitStack() as stack:
            if device is not None:
                kind, idx = parse_device(device)
                stack.enter_context(tf.device(f"/{kind.upper()}:{idx or 0}"))
            if deterministic:
                stack.enter_context(self._determinism(record))
            record["functions_run_eagerly"] = bool(tf.config.functions_run_eagerly())
            yield

    @contextlib.contextmanager
    def _determinism(self, record):
        tf = self.tf()
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

    def function(self, loaded, runtime, device):
        tf = self.tf()
        call = loaded._call
        if runtime.run_eagerly:
            fn = call
        else:
            def _graph_call(*xs):
                return call(list(xs))

            graph = tf.function(_graph_call, jit_compile=bool(runtime.jit_compile), reduce_retracing=True)

            def fn(xs):
                return graph(*xs)
        return lambda arrays: _as_list(fn([tf.convert_to_tensor(a) for a in arrays]))

    def to_numpy(self, x):
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

    def device_of(self, x):
        name = getattr(x, "device", None)
        if not name:
            return None
        m = re.search(r"device:(CPU|GPU):(\d+)", str(name))
        return _canonical(m.group(1).lower(), m.group(2)) if m else str(name)

    def is_oom(self, exc):
        tf = sys.modules.get("tensorflow")
        return isinstance(exc, MemoryError) or (
            tf is not None and isinstance(exc, tf.errors.ResourceExhaustedError))


class JaxExecutor(Executor):
    """Keras-on-JAX models: ``jax.jit`` of Keras's ``stateless_call`` (XLA), the weights passed (and placed on
    the device) at every call, so the compiled function always runs the model's current weights."""

    name = "jax"

    def devices(self) -> list:
        import jax

        out = []
        for kind in ("cpu", "gpu"):
            try:
                devs = jax.devices(kind)
            except RuntimeError:  # no such platform
                continue
            out += [_canonical(kind, i) for i in range(len(devs))]
        return out

    def _device(self, device):
        import jax

        if device is None:
            return jax.devices()[0]
        kind, idx = parse_device(device)
        return jax.devices(kind)[idx or 0]

    @contextlib.contextmanager
    def scope(self, device, deterministic, record):
        import jax

        if deterministic:
            record["deterministic_note"] = ("JAX on the CPU is deterministic; on a GPU set XLA_FLAGS="
                                            "--xla_gpu_deterministic_ops=true before the process starts")
        with jax.default_device(self._device(device)):
            yield

    def function(self, loaded, runtime, device):
        import jax

        dev = self._device(device)
        model = loaded.model
        stateless = getattr(model, "stateless_call", None)
        if runtime.run_eagerly or stateless is None or loaded._pack is None:
            call = loaded._call
            return lambda arrays: _as_list(call([jax.device_put(a, dev) for a in arrays]))
        pack, unpack = loaded._pack, loaded._unpack

        @jax.jit
        def fwd(tv, ntv, xs):
            out, _ = stateless(tv, ntv, pack(list(xs)), training=False)
            return unpack(out)

        def run(arrays):
            # the weights as they are now (a model trained further between calls is not run stale); placing
            # arrays that already are on the device is free
            tv = jax.device_put([v.value for v in model.trainable_variables], dev)
            ntv = jax.device_put([v.value for v in model.non_trainable_variables], dev)
            return _as_list(fwd(tv, ntv, [jax.device_put(a, dev) for a in arrays]))

        return run

    def device_of(self, x):
        devs = getattr(x, "devices", None)
        if callable(devs):
            d = next(iter(devs()))
            return _canonical("cpu" if d.platform == "cpu" else "gpu", d.id if d.platform != "cpu" else 0)
        return None

    def is_oom(self, exc):
        return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc)[:2000]

    def wait(self, x):
        if x is not None and hasattr(x, "block_until_ready"):
            x.block_until_ready()


class TorchExecutor(Executor):
    """Keras-on-PyTorch models and plain ``torch.nn.Module`` s, under ``torch.no_grad``.

    A Keras-torch model runs where Keras created its weights (Keras has no
    way to move them): a request for another device is an error naming how to
    load it there (``keras.device``); every call runs inside ``keras.device``
    of that device, so Keras places the inputs and intermediates there too. A
    plain module is copied to the device asked for (the caller's module is
    not moved).

    On a CUDA device, graph mode (``run_eagerly=False``) captures the forward
    pass of each batch shape once as a CUDA graph and replays it (Keras's
    Python layers otherwise cost a kernel launch each per call, which is most
    of a small network's time); cuDNN autotuning is on. A forward pass that
    cannot be captured (host synchronisation inside the model) runs eagerly,
    and the runtime record says why. TF32 stays off: results equal the CPU's to
    float32 round-off.
    """

    name = "torch"

    def devices(self) -> list:
        import torch

        out = ["cpu:0"]
        if torch.cuda.is_available():
            out += [_canonical("gpu", i) for i in range(torch.cuda.device_count())]
        return out

    @staticmethod
    def _torch_device(name):
        kind, idx = parse_device(name)
        return "cpu" if kind == "cpu" else f"cuda:{idx or 0}"

    @staticmethod
    def _is_keras(model) -> bool:
        keras = sys.modules.get("keras")
        return keras is not None and isinstance(model, keras.Model)

    def _home(self, loaded) -> str | None:
        """The device a model's weights live on (canonical), or None when it has none."""
        import torch

        params = None
        if isinstance(loaded.model, torch.nn.Module) and not self._is_keras(loaded.model):
            params = next(iter(loaded.model.parameters()), None)
        else:
            vs = getattr(loaded.model, "weights", None) or []
            params = getattr(vs[0], "value", None) if vs else None
        dev = getattr(params, "device", None)
        if dev is None:
            return None
        return "cpu:0" if dev.type == "cpu" else _canonical("gpu", dev.index)

    def resolve_device(self, device, loaded):
        home = self._home(loaded)
        if device is None:
            return home
        want = _pick(device, self.devices(), self.name)
        if home is not None and want != home and self._is_keras(loaded.model):
            raise PtyAnalysisError(
                f"{loaded.source}: under Keras's torch backend a model runs where its weights were created "
                f"({home}), not on {want}; load it inside `with keras.device('{self._torch_device(want)}'):` "
                "or choose the device by CUDA_VISIBLE_DEVICES")
        return want

    @contextlib.contextmanager
    def scope(self, device, deterministic, record):
        import torch

        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if device is not None and parse_device(device)[0] == "gpu":
                was = torch.backends.cudnn.benchmark
                torch.backends.cudnn.benchmark = not deterministic  # autotuning picks kernels by timing
                stack.callback(setattr, torch.backends.cudnn, "benchmark", was)
            if deterministic:
                was_det = torch.are_deterministic_algorithms_enabled()
                torch.use_deterministic_algorithms(True, warn_only=True)
                stack.callback(torch.use_deterministic_algorithms, was_det)
                record["deterministic_restored"] = True
            yield

    def function(self, loaded, runtime, device):
        import torch

        home = self._home(loaded)
        target = self._torch_device(device or home or "cpu")
        call = loaded._call
        if self._is_keras(loaded.model):
            keras = sys.modules["keras"]
            inner = call

            def call(xs):
                with keras.device(target):  # Keras-torch places what it creates on its device scope
                    return inner(xs)
        else:  # a plain torch module: loaded._call is module(*xs)
            module = loaded.model
            if device is not None and home is not None and home != device:
                import copy

                from .model import _wrap_torch

                module = copy.deepcopy(module).to(target)  # the caller's module stays where it is
                call = _wrap_torch(module, loaded.source, output_names=loaded.output_names)._call
            module.eval()
        if runtime.jit_compile:
            log.info("%s: jit_compile is not applied under torch (graph mode replays CUDA graphs on a GPU)",
                     loaded.source)

        def eager(arrays):
            return _as_list(call([torch.as_tensor(a, device=target) for a in arrays]))

        if runtime.run_eagerly or not target.startswith("cuda"):
            return eager
        return _CudaGraphs(call, target, eager, loaded.source)

    def to_numpy(self, x):
        if hasattr(x, "detach"):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def device_of(self, x):
        dev = getattr(x, "device", None)
        if dev is None or not hasattr(dev, "type"):
            return None
        return "cpu:0" if dev.type == "cpu" else _canonical("gpu", dev.index)

    def wait(self, x):
        dev = getattr(x, "device", None)
        if dev is not None and getattr(dev, "type", "cpu") == "cuda":
            import torch

            torch.cuda.synchronize(dev)

    def is_oom(self, exc):
        torch = sys.modules.get("torch")
        oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", ()) if torch is not None else ()
        return isinstance(exc, MemoryError) or (bool(oom) and isinstance(exc, oom)) or (
            isinstance(exc, RuntimeError) and "out of memory" in str(exc)[:500].lower())


class _CudaGraphs:
    """A forward pass replayed as one CUDA graph per input shape (captured at its first call).

    Inputs are copied into the graph's static buffers (from pinned host
    memory, asynchronously), the graph is replayed and its outputs are cloned
    (the next replay overwrites them). A shape whose capture fails runs
    eagerly from then on; :attr:`failures` holds why.
    """

    #: Warm-up calls before a capture (cuDNN autotuning and lazy initialisation happen there, not in the graph).
    WARMUP = 2

    def __init__(self, call, device, eager, source):
        self.call, self.device, self.eager, self.source = call, device, eager, source
        self.graphs, self.failures = {}, {}

    def _capture(self, key, arrays):
        import torch

        static = [torch.empty(a.shape, dtype=torch.from_numpy(np.empty(0, a.dtype)).dtype, device=self.device)
                  for a in arrays]
        for s, a in zip(static, arrays):
            s.copy_(torch.from_numpy(np.ascontiguousarray(a)))
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.call(static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outs = _as_list(self.call(static))
        pinned = [torch.empty(s.shape, dtype=s.dtype, pin_memory=True) for s in static]
        return graph, static, pinned, outs, torch.cuda.Event()

    def __call__(self, arrays):
        key = tuple((a.shape, a.dtype.str) for a in arrays)
        if key in self.failures:
            return self.eager(arrays)
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self.graphs[key] = self._capture(key, arrays)
            except Exception as exc:  # noqa: BLE001 - any capture failure: run this shape eagerly
                self.failures[key] = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.info("%s: the forward pass for inputs %s cannot be captured as a CUDA graph (%s); it runs "
                         "eagerly", self.source, [a.shape for a in arrays], self.failures[key])
                return self.eager(arrays)
        graph, static, pinned, outs, copied = entry
        copied.synchronize()  # the previous call's copies out of the pinned buffers are done
        for s, p, a in zip(static, pinned, arrays):
            p.numpy()[...] = a
            s.copy_(p, non_blocking=True)
        copied.record()
        graph.replay()
        return [o.clone() for o in outs]

    def describe(self) -> dict:
        """What ran: shapes replayed as CUDA graphs, and shapes run eagerly with the reason."""
        return {"cuda_graph_shapes": len(self.graphs),
                "eager_shapes": {str([s for s, _ in k]): why for k, why in self.failures.items()}}


_EXECUTORS = {"tensorflow": TensorFlowExecutor, "jax": JaxExecutor, "torch": TorchExecutor}


def executor_for(loaded) -> Executor:
    """The executor of a loaded model's backend (:attr:`LoadedModel.backend`).

    Parameters
    ----------
    loaded : LoadedModel

    Returns
    -------
    Executor
    """
    try:
        return _EXECUTORS[loaded.backend]()
    except KeyError:
        raise PtyAnalysisError(f"{loaded.source}: unknown model backend {loaded.backend!r}; expected one of "
                               f"{', '.join(_EXECUTORS)}") from None


def _as_list(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def model_backend(model) -> str:
    """The backend an in-memory model object runs on.

    Parameters
    ----------
    model : object
        A Keras 3 model (the active Keras backend), a ``torch.nn.Module``, a
        tf_keras model or another TensorFlow object.

    Returns
    -------
    str
        One of :data:`KERAS_BACKENDS`.
    """
    mod = type(model).__module__.split(".")[0]
    torch = sys.modules.get("torch")
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):  # a Keras-torch model is a torch Module too
        return str(keras.backend.backend())
    if torch is not None and isinstance(model, torch.nn.Module):
        return "torch"
    if mod in ("tf_keras", "tensorflow"):
        return "tensorflow"
    if keras is not None and isinstance(model, keras.layers.Layer):
        return str(keras.backend.backend())
    return _imported_keras_backend() or "tensorflow"


def require_tensorflow(what: str):
    """TensorFlow (imported quietly), or a one-line error saying that ``what`` needs it.

    Parameters
    ----------
    what : str
        The model kind or file that needs TensorFlow, for the message.

    Returns
    -------
    module
        ``tensorflow``.

    Raises
    ------
    PtyAnalysisError
        TensorFlow is not installed (or cannot be imported).
    """
    if installed("tensorflow"):
        try:
            return TensorFlowExecutor.tf()
        except ImportError as exc:
            raise PtyAnalysisError(f"{what} needs TensorFlow, which fails to import here ({exc})") from exc
    raise PtyAnalysisError(
        f"{what} needs TensorFlow, which is not installed here ({INSTALL_HINT['tensorflow']}); "
        "Keras 3 .keras models run without it under JAX or PyTorch: re-export the model as .keras where "
        "TensorFlow is installed (model.save('model.keras'))")
