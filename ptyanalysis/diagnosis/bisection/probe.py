"""The layer probe: per-layer activations of the model on the failing and the comparison set.

A multi-output view of the model's own graph (a Keras sub-model, or forward hooks on a PyTorch module)
shows where activations first die (all zero), first go non-finite, or stop depending on the input.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ...inference.backends import import_keras
from ...inference.loading import load_model
from ...inference.model import _is_torch_module
from ...inference.streaming import known_batch_size_limit
from ..health import COLLAPSE_TOL, sample_spread
from .ddmin import BudgetSpent
from .runner import Runner, error_text, model_errors
from .sets import n_samples, subsample_idx, take
from .settings import PROBE_SAMPLES

#: What Keras raises when a graph cannot be cut at a layer (no functional graph, a layer outside it).
GRAPH_ERRORS = (AttributeError, ValueError, TypeError, KeyError)

def layer_probe(model):
    """Build a multi-output model exposing every layer's output: a Keras sub-model, or forward hooks in PyTorch.

    Parameters
    ----------
    model : keras.Model or torch.nn.Module
        A functional or Sequential Keras model (under any backend), or a plain
        PyTorch module (its leaf submodules' outputs are taken by forward hooks).

    Returns
    -------
    probe : keras.Model, torch.nn.Module or None
    layer_names : list of str
        One per probe output (``"layer[i]"`` for the i-th output of a multi-output layer).
    reason : str or None
        Why there is no probe (subclassed model, no graph), else None.
    """
    if _is_torch_module(model):
        return _torch_layer_probe(model)
    keras = import_keras()

    try:
        inputs = model.inputs
    except GRAPH_ERRORS:
        inputs = None
    if not inputs:
        return None, [], "the model has no functional graph (subclassed or unbuilt): layer probe skipped"
    outs, names = [], []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        # outputs of the layer's nodes in *this* graph (a nested model's own
        # ``.output`` lives in its inner graph), keeping those connected to the inputs
        cands = []
        for node in getattr(layer, "_inbound_nodes", []) or []:
            cands.extend(keras.tree.flatten(getattr(node, "output_tensors", []) or []))
        if not cands:
            try:
                cands = keras.tree.flatten(layer.output)
            except GRAPH_ERRORS:
                continue
        flat = []
        for t in cands:
            try:
                keras.Model(inputs, t)
            except GRAPH_ERRORS:
                continue
            flat.append(t)
        for j, t in enumerate(flat):
            outs.append(t)
            names.append(layer.name if len(flat) == 1 else f"{layer.name}[{j}]")
    if not outs:
        return None, [], "no layer outputs to probe"
    try:
        probe = keras.Model(inputs, outs, name=f"{model.name}_probe")
    except GRAPH_ERRORS as exc:
        return None, [], f"could not build a probe model ({type(exc).__name__}: {exc})"
    return probe, names, None


def _torch_layer_probe(module):
    """A module returning the outputs of ``module``'s leaf submodules, in call order (forward hooks)."""
    import torch

    leaves = [(name, m) for name, m in module.named_modules() if name and not list(m.children())]
    if not leaves:
        return None, [], "the PyTorch module has no submodules to probe"

    class _Probe(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *xs):
            seen, hooks = [], []
            for name, m in leaves:
                def hook(mod, args, out, name=name):
                    for j, t in enumerate(out if isinstance(out, (tuple, list)) else [out]):
                        if isinstance(t, torch.Tensor):
                            seen.append((name if j == 0 else f"{name}[{j}]", t))
                hooks.append(m.register_forward_hook(hook))
            try:
                self.inner(*xs)
            finally:
                for h in hooks:
                    h.remove()
            self.names = [n for n, _ in seen]
            return tuple(t for _, t in seen)

    probe = _Probe(module)
    # the names follow the first call's order; a module whose leaves do not all run is probed as it runs
    names = [name for name, _ in leaves]
    return probe, names, None


def layer_stats(arrays):
    """Per layer: (zero fraction, non-finite fraction, all-zero sample rate, sample spread).

    The sample spread (:func:`ptyanalysis.diagnosis.health.sample_spread`, of the
    modulus) is 0 where a layer's activations are the same for every sample:
    from there on the model no longer depends on its input.
    """
    rows = []
    for a in arrays:
        a = np.asarray(a)
        if np.iscomplexobj(a):
            a = np.abs(a)
        if a.dtype.kind not in "fiub":
            rows.append((np.nan, np.nan, np.nan, np.nan))
            continue
        fin = np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
        nfin = int(fin.sum())
        # of the finite values; NaN when none is finite (a NaN activation is not a dead one)
        zero = float(np.count_nonzero((a == 0) & fin)) / nfin if nfin else np.nan
        r = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)
        allzero = float(np.mean(~np.any((r != 0) & np.isfinite(r), axis=1))) if r.size else np.nan
        spread = sample_spread(a)[0] if a.ndim and a.shape[0] > 1 else np.nan
        rows.append((zero, 1.0 - nfin / max(a.size, 1), allzero, spread))
    return rows


def run_layers(runner: Runner, F: dict, P: dict | None, rng, against: str = "passing") -> dict:
    """Per-layer activations on the failing set and ``P`` (the passing set, or the reference standing in for
    it: ``against``; the rows' ``*_passing`` columns then hold the reference's, and ``compared_with`` says so)."""
    kmodel = getattr(runner.loaded, "model", None)
    probe, lnames, reason = layer_probe(kmodel) if kmodel is not None else (None, [], "no Keras model")
    if probe is None:
        return {"status": "skipped", "reason": reason, "rows": [], "first_dead": None, "first_nonfinite": None}
    # the probe is the model's own graph: name it after the model, and start at the batch size the model's
    # earlier runs found to give one row per sample (a model that merges a big call merges in the probe too)
    lp = replace(load_model(probe), source=f"layer probe of {runner.loaded.source}")
    limit = known_batch_size_limit(runner.loaded, [F[k] for k in runner.names])
    rt = runner.runtime if limit is None or limit >= runner.runtime.batch_size else \
        replace(runner.runtime, batch_size=limit)
    res = {}
    for label, s in (("failing", F), (against, P)):
        if s is None:
            continue
        sub = take(s, subsample_idx(s, PROBE_SAMPLES, rng))
        t0 = time.perf_counter()
        try:
            acts = runner.call([sub[k] for k in runner.names], rt, model=lp)
        except BudgetSpent:
            runner.record("layers", f"probe:{label}", label, n_samples(sub), "per-layer activations",
                          error="skipped: evaluation budget spent")
            return {"status": "skipped", "reason": "evaluation budget spent", "rows": [],
                    "first_dead": None, "first_nonfinite": None}
        except model_errors() as exc:
            runner.record("layers", f"probe:{label}", label, n_samples(sub), "per-layer activations",
                          error=error_text(exc), elapsed=time.perf_counter() - t0)
            return {"status": "error", "reason": str(exc)[:300], "rows": [], "first_dead": None,
                    "first_nonfinite": None}
        res[label] = layer_stats(acts)
        last = res[label][-1] if res[label] else (np.nan,) * 4
        runner.record("layers", f"probe:{label}", label, n_samples(sub), "per-layer activations (multi-output probe)",
                      nonzero=1 - last[0], finite=1 - last[1], elapsed=time.perf_counter() - t0,
                      details={"layers": len(lnames)})
    lnames = getattr(probe, "names", lnames)  # a PyTorch probe names its outputs in the order they ran
    rows, first_dead, first_nf, first_flat, flat_layers = [], None, None, None, []
    for i, ln in enumerate(lnames):
        f = res["failing"][i]
        p = res.get(against, [(np.nan,) * 4] * len(lnames))[i]
        rows.append({"layer": ln, "zero_fraction_failing": f[0], "zero_fraction_passing": p[0],
                     "nonfinite_fraction_failing": f[1], "nonfinite_fraction_passing": p[1],
                     "all_zero_sample_rate_failing": f[2], "all_zero_sample_rate_passing": p[2],
                     "sample_spread_failing": f[3], "sample_spread_passing": p[3]})
        if np.isfinite(f[3]) and f[3] <= COLLAPSE_TOL and f[0] < 1.0:
            first_flat = first_flat or ln
            if ln not in flat_layers:
                flat_layers.append(ln)
        dead_f = f[0] == 1.0 and f[1] == 0.0  # every activation finite and 0 (NaN ones are non-finite, not dead)
        dead_p = p[0] == 1.0 if np.isfinite(p[0]) else False
        if first_dead is None and dead_f and not dead_p:
            first_dead = ln
        if first_nf is None and f[1] > 0 and not (np.isfinite(p[1]) and p[1] > 0):
            first_nf = ln
    return {"status": "done", "reason": None, "rows": rows, "first_dead": first_dead,
            "first_nonfinite": first_nf, "first_input_independent": first_flat,
            "input_independent": flat_layers, "n_samples": PROBE_SAMPLES, "source": lp.source,
            "batch_size": int(rt.batch_size), "compared_with": against}


