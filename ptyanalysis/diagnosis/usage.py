"""Which inputs a model uses at all: perturb each one and see whether any output changes.

A PtychoPINN PyTorch model's ``forward_predict`` takes positions and a probe
and ignores both (docs/formats.md#pytorch-bundles); swapping such an input between
a failing and a passing set can never explain anything. :func:`input_usage`
finds them with one model call per input, so the diagnosis says "the model
does not use it" instead of swapping it.

Besides the declared inputs, a model may hold *auxiliary* inputs it is called
with internally: a module attribute named in ``auxiliary_inputs`` (the torch
bundle wrapper's ``probe`` buffer, :mod:`ptyanalysis.inference.torch_bundle`)
is perturbed in place for one call and restored.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ..inference.failures import model_errors

#: An output change at most this fraction of the outputs' maximum is round-off: the input is unused.
UNUSED_TOL = 1e-6
#: Samples the usage check runs on.
USAGE_SAMPLES = 16


@dataclass(frozen=True)
class InputUse:
    """Whether one input changes the model's outputs.

    Attributes
    ----------
    name : str
    used : bool or None
        None when the check could not run (``error``).
    max_change : float
        Largest output change when the input was perturbed, relative to the
        outputs' largest magnitude.
    perturbation : str
        What was done to the input.
    auxiliary : bool
        True for an input the model holds internally (e.g. a probe buffer).
    error : str or None
    """

    name: str
    used: bool | None
    max_change: float
    perturbation: str
    auxiliary: bool = False
    error: str | None = None

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return dict(self.__dict__)


def _perturbed(x: np.ndarray, rng) -> np.ndarray:
    """``x`` plus Gaussian noise of its own spread (at least 1 unit), in its dtype."""
    x = np.asarray(x)
    fin = x[np.isfinite(x)] if x.dtype.kind in "fc" else x.reshape(-1)
    scale = float(np.std(np.abs(fin))) if fin.size else 1.0
    scale = max(scale, 1.0) if x.dtype.kind not in "c" else max(scale, 1e-3)
    noise = rng.normal(0.0, scale, x.shape)
    if x.dtype.kind == "c":
        noise = noise + 1j * rng.normal(0.0, scale, x.shape)
    if x.dtype.kind in "iub":
        return (x + np.rint(noise).astype(x.dtype) + 1).astype(x.dtype)
    return (x + noise).astype(x.dtype)


def _top(a: list) -> float:
    vals = [np.abs(np.asarray(x)[np.isfinite(x)]) for x in a]
    return max((float(v.max()) for v in vals if v.size), default=0.0)


def _change(a: list, b: list) -> float:
    top, d = 0.0, 0.0
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        fin = np.isfinite(x) & np.isfinite(y)
        if fin.any():
            top = max(top, float(np.max(np.abs(x[fin]))))
            d = max(d, float(np.max(np.abs(x[fin] - y[fin]))))
    return d / top if top > 0 else d


@contextlib.contextmanager
def _swapped_attribute(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def auxiliary_inputs(model) -> tuple:
    """Names of the auxiliary inputs a model object declares (its ``auxiliary_inputs`` attribute)."""
    return tuple(getattr(model, "auxiliary_inputs", ()) or ())


def input_usage(run, inputs: dict, names: list, *, model=None, seed: int = 0,
                n_samples: int = USAGE_SAMPLES) -> list[InputUse]:
    """Perturb each input (and each auxiliary input of ``model``) once and report whether any output changes.

    Parameters
    ----------
    run : callable
        ``run(list of arrays in input order) -> list of output arrays`` (one model call).
    inputs : dict
        ``{input name: array}``, samples first (the first ``n_samples`` are used).
    names : list of str
        The model's input names, in call order.
    model : object, optional
        The model object, for :func:`auxiliary_inputs` (a torch module's buffers).
    seed : int
    n_samples : int

    Returns
    -------
    list of InputUse
        One per input, then one per auxiliary input.
    """
    rng = np.random.default_rng(seed)
    s = {k: np.asarray(inputs[k])[:n_samples] for k in names}
    base = run([s[k] for k in names])
    if _top(base) == 0:  # all-zero (or non-finite) outputs: no perturbation can show a use
        why = "the outputs on these samples are all zero or non-finite: usage cannot be told"
        return [InputUse(k, None, float("nan"), "not run", error=why) for k in names] + [
            InputUse(a, None, float("nan"), "not run", True, why) for a in auxiliary_inputs(model)]
    out = []
    for k in names:
        t = dict(s)
        t[k] = _perturbed(s[k], rng)
        try:
            ch = _change(base, run([t[j] for j in names]))
        except model_errors() as exc:  # the model refuses the perturbed input: evidence
            out.append(InputUse(k, None, float("nan"), "noise of its own spread added", error=f"{type(exc).__name__}: {exc}"))
            continue
        out.append(InputUse(k, ch > UNUSED_TOL, ch, "noise of its own spread added"))
    for a in auxiliary_inputs(model):
        import torch

        buf = getattr(model, a)
        arr = buf.detach().cpu().numpy()
        new = torch.as_tensor(_perturbed(arr, rng), device=buf.device)
        try:
            with _swapped_attribute(model, a, new):
                ch = _change(base, run([s[j] for j in names]))
        except model_errors() as exc:  # the model refuses the perturbed buffer: evidence
            out.append(InputUse(a, None, float("nan"), "noise added to the model's own copy", True,
                                f"{type(exc).__name__}: {exc}"))
            continue
        out.append(InputUse(a, ch > UNUSED_TOL, ch, "noise added to the model's own copy", True))
    return out


def unused_text(usage: list) -> str | None:
    """``"the model does not use input_positions, probe at all (...)"``, or None when every input is used."""
    unused = [u.name for u in usage if u.used is False]
    if not unused:
        return None
    return (f"the model does not use {', '.join(unused)} at all: perturbing {'it' if len(unused) == 1 else 'each'} "
            "changed no output beyond round-off, so no swap of it can explain a failure")
