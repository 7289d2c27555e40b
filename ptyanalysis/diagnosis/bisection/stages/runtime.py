"""Runtime stage: does the outcome depend on how the model is run, or on which samples share a batch?"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ....errors import PtyAnalysisError
from ....inference.backends import executor_for
from ...health import restores
from ..context import Context
from ..records import Cause, Fix, StageReport
from ..sets import ROWS_KEY, inputs_of, n_samples, subsample_idx, take
from ..settings import (
    COMPOSITION_BATCH,
    COMPOSITION_MIN_CHANGED,
    COMPOSITION_TOL,
    RUNTIME_SAMPLES,
    TIE_TOLERANCE,
)

#: A runtime change is less specific than dropping a few samples and more than changing an input.
SPECIFICITY = 20
COMPOSITION_FIX = ("make each sample's output independent of the other samples in its batch: remove or fix the "
                   "batch-level operation (e.g. a per-batch mean, centring or normalisation inside the model); "
                   "changing the batch size only hides it")


def runtime_factors(runtime, F: dict, n: int, loaded=None) -> list:
    """(factor, value, RuntimeConfig) alternatives to the default runtime, as the model's backend offers them.

    Batch size and dtype on every backend; eager vs compiled where the backend
    compiles (TensorFlow's ``tf.function``, JAX's ``jax.jit``; PyTorch runs
    eagerly); XLA on/off only under TensorFlow (JAX always compiles with XLA);
    every other device the backend can run the model on.
    """
    ex = executor_for(loaded) if loaded is not None else None
    backend = ex.name if ex is not None else "tensorflow"
    out = []
    for bs in sorted({1, COMPOSITION_BATCH, n}):
        if bs != runtime.batch_size and bs <= max(n, 1):
            out.append(("batch_size", bs, replace(runtime, batch_size=bs)))
    if backend != "torch":
        if not runtime.run_eagerly:
            if backend == "tensorflow":
                out.append(("jit_compile", not runtime.jit_compile,
                            replace(runtime, jit_compile=not runtime.jit_compile)))
            out.append(("run_eagerly", True, replace(runtime, run_eagerly=True, jit_compile=False)))
        else:
            out.append(("run_eagerly", False, replace(runtime, run_eagerly=False)))
    dts = {str(v.dtype) for v in F.values() if v.dtype.kind == "f"}
    for dt in ("float64", "float32", "float16"):
        if dt != runtime.dtype and not (dts == {dt} and runtime.dtype is None):
            out.append(("dtype", dt, replace(runtime, dtype=dt)))
    devs = []
    available = ex.devices() if ex is not None else []
    if len(available) > 1:
        gpus = [d for d in available if d.startswith("gpu")]
        current = ex.resolve_device(runtime.device, loaded) or (gpus[0] if gpus else available[0])
        for d in available:
            if d == current:
                continue
            try:
                ex.resolve_device(d, loaded)  # a Keras-torch model runs only where its weights are
            except PtyAnalysisError:
                continue
            devs.append(d)
    for d in devs:
        out.append(("device", d, replace(runtime, device=d)))
    return out


def _per_sample_change(a: list, b: list) -> np.ndarray:
    """Per sample, the largest change between two output lists, relative to each output's largest |value|."""
    n = a[0].shape[0]
    d = np.zeros(n)
    for x, y in zip(a, b):
        x = np.nan_to_num(np.abs(x) if np.iscomplexobj(x) else np.asarray(x, dtype=np.float64), nan=0.0,
                          posinf=0.0, neginf=0.0).reshape(n, -1)
        y = np.nan_to_num(np.abs(y) if np.iscomplexobj(y) else np.asarray(y, dtype=np.float64), nan=0.0,
                          posinf=0.0, neginf=0.0).reshape(n, -1)
        scale = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)))
        if scale > 0:
            d = np.maximum(d, np.max(np.abs(x - y), axis=1) / scale)
    return d


def composition(runner, Fr, Pr, rng, kept: dict, against: str = "passing") -> dict:
    """Do a sample's outputs depend on which samples share its batch? Same samples, same batch size, other neighbours."""
    n = n_samples(Fr)
    if n < 4:
        return {"status": "skipped", "reason": "fewer than 4 failing samples"}
    b = COMPOSITION_BATCH if n >= 2 * COMPOSITION_BATCH else max(1, n // 2)
    rt = replace(runner.runtime, batch_size=b)
    base = kept.get(b)
    if base is None:
        e, r = runner.run("runtime", f"composition:in_order[b={b}]", "failing", Fr,
                          f"the failing subsample in its order, batch size {b}", runtime=rt, keep=True)
        base = (e, None if r is None else r[0])
    e_base, y_base = base
    if y_base is None:
        return {"status": "error", "reason": e_base.error}
    perm = rng.permutation(n)
    e_sh, r_sh = runner.run("runtime", "composition:shuffled", "failing", take(Fr, perm),
                            f"the same {n} failing samples shuffled (batch size {b}): other batch neighbours",
                            runtime=rt, keep=True, details={"batch_size": b})
    pick = np.sort(rng.choice(n_samples(Pr), n, replace=n_samples(Pr) < n))
    mixed = {}
    for k in inputs_of(Fr):
        # the failing samples keep their values and dtype; only their neighbours change
        v = np.empty((2 * n,) + Fr[k].shape[1:], dtype=Fr[k].dtype)
        nb = Pr[k][pick]
        if Fr[k].dtype.kind == "f" and nb.dtype.kind in "fiu":  # neighbours the failing dtype can hold
            big = float(np.finfo(Fr[k].dtype).max)
            nb = np.clip(nb.astype(np.float64), -big, big)
        v[0::2], v[1::2] = Fr[k], nb.astype(Fr[k].dtype)
        mixed[k] = v
    if ROWS_KEY in Fr:
        mixed[ROWS_KEY] = np.repeat(Fr[ROWS_KEY], 2)  # odd rows are never scored (rows=slice(0, None, 2))
    e_mx, r_mx = runner.run("runtime", "composition:interleaved", "failing", mixed,
                            f"the same {n} failing samples interleaved with {against} samples (batch size {b})",
                            runtime=rt, keep=True, details={"batch_size": b}, rows=slice(0, None, 2),
                            rows_note=f"the failing samples' rows only (even rows); their {against} neighbours "
                                      "are not scored")
    out = {"status": "done", "batch_size": b, "n_samples": n, "experiments": [e_base.id, e_sh.id, e_mx.id],
           "arrangements": {}}
    changed_any = 0.0
    for label, e, r, fix in (("shuffled", e_sh, r_sh, lambda y: y[np.argsort(perm)]),
                             ("interleaved", e_mx, r_mx, lambda y: y[0::2])):
        if r is None:
            out["arrangements"][label] = {"error": e.error}
            continue
        ys = [fix(o) for o in r[0]]
        ch = _per_sample_change(y_base, ys)
        fails, h, _, _, _ = runner.score(ys, rows=Fr.get(ROWS_KEY))
        frac = float(np.mean(ch > COMPOSITION_TOL))
        changed_any = max(changed_any, frac)
        out["arrangements"][label] = {"changed_fraction": frac, "max_relative_change": float(ch.max()),
                                      "fails": fails, "health": h,
                                      "restores": None if runner.h_fail is None else restores(runner.h_fail, h)}
    out["in_order"] = {"fails": e_base.fails, "health": e_base.health}
    n_changed = int(round(changed_any * n))
    out["dependent"] = bool(changed_any >= COMPOSITION_MIN_CHANGED and n_changed >= 2)
    out["changed_fraction"] = changed_any
    return out




def _failing_subsample(ctx: Context):
    """The runtime subsample of the failing set and its default-runtime experiment (None when it passes)."""
    runner, F = ctx.runner, ctx.F
    Fr = take(F, subsample_idx(F, RUNTIME_SAMPLES, ctx.rng("runtime")))
    e0, _ = runner.run("runtime", "default", "failing", Fr, f"default runtime on {n_samples(Fr)} failing samples",
                       details={"runtime": runner.runtime.to_dict() if hasattr(runner.runtime, "to_dict") else {}})
    if e0.fails is not True:
        Fr = F
        e0, _ = runner.run("runtime", "default:whole", "failing", F, "default runtime on the working failing set")
        if e0.fails is not True:
            return None, e0
    return Fr, e0


def _flips(ctx: Context, Fr: dict):
    """Every runtime alternative tried on ``Fr``: (flips, outputs kept per batch size)."""
    runner = ctx.runner
    flips, kept = [], {}
    for factor, value, rt in runtime_factors(runner.runtime, Fr, n_samples(Fr), runner.loaded):
        e, r = runner.run("runtime", f"{factor}={value}", "failing", Fr, f"failing subsample with {factor}={value}",
                          runtime=rt, details={"factor": factor, "value": value}, keep=factor == "batch_size")
        if factor == "batch_size" and r is not None:
            kept[value] = (e, r[0])
        if e.fails is False:
            flips.append((factor, value, rt, e))
    return flips, kept


def _composition_cause(comp: dict, batch_flip: list) -> Cause | None:
    """The batch-composition cause, when outputs change with their neighbours and the outcome with them."""
    arr = comp.get("arrangements", {}) if comp.get("status") == "done" else {}
    outcome_moves = any(a.get("fails") is False for a in arr.values()) or any(
        a.get("health") is not None and np.isfinite(a.get("health", np.nan))
        and abs(a["health"] - comp["in_order"]["health"]) > TIE_TOLERANCE for a in arr.values())
    comp["related_to_failure"] = bool(comp.get("dependent")) and (bool(batch_flip) or outcome_moves)
    if not comp["related_to_failure"]:
        return None
    best = max([f["restores"] for f in batch_flip] + [a.get("restores") or 0.0 for a in arr.values()] + [0.0])
    ev = {"changed_fraction": comp["changed_fraction"], "batch_size": comp["batch_size"],
          "arrangements": arr, "in_order": comp["in_order"], "experiments": comp["experiments"],
          "batch_sizes_that_pass": [f["value"] for f in batch_flip],
          "restores_basis": ("best of the arrangements and batch sizes tried (a batch size is not the fix: "
                             "the outputs change with the batch neighbours at the same batch size)"),
          "n_samples": comp["n_samples"]}
    passed = bool(batch_flip) or any(a.get("fails") is False for a in arr.values())
    return Cause("runtime", "batch_composition", best, ev, verified=passed, fix=Fix(COMPOSITION_FIX),
                 specificity=SPECIFICITY - 1)


def _factor_text(ctx: Context, factor: str, value, good: list) -> str:
    ok_vals = ", ".join(str(f["value"]) for f in good)
    default = getattr(ctx.runner.runtime, factor, None)
    if factor != "dtype":
        return f"run with {factor}={value} (the failing set passes with: {ok_vals}; default {default})"
    held = sorted({f"{k!r} as {v.dtype}" for k, v in inputs_of(ctx.F).items() if v.dtype.kind == "f"
                   and str(v.dtype) != value})
    passing_dt = sorted({str(v.dtype) for v in inputs_of(ctx.P).values() if v.dtype.kind == "f"})
    return (f"cast the inputs to {value} before the model (run with dtype={value}): the failing "
            f"set holds {', '.join(held) or 'its inputs'}; the {ctx.against} set holds {', '.join(passing_dt)}"
            f" (the failing set passes with dtype: {ok_vals})")


def _pref(f):
    """Best restoration; among equals the largest batch size / float32 / graph mode."""
    v = f["value"]
    tie = v if isinstance(v, (int, float)) and not isinstance(v, bool) else (1 if v == "float32" else 0)
    return (round(f["restores"], 2), tie)


def run(ctx: Context) -> StageReport:
    """Runtime factors and batch composition on a seeded failing subsample.

    A factor *flips* the outcome when the failing subsample passes under it and the comparison set still
    passes under it; a flip is a verified cause. Batch composition (outputs that change with their batch
    neighbours at the same batch size) is reported instead of a batch size.
    """
    runner = ctx.runner
    Fr, e0 = _failing_subsample(ctx)
    if Fr is None:
        return StageReport({"status": "skipped",
                            "reason": "the failing subsample does not fail under the default runtime"})
    Pr = take(ctx.P, subsample_idx(ctx.P, RUNTIME_SAMPLES, ctx.rng("runtime")))
    flips, kept = _flips(ctx, Fr)
    comp = composition(runner, Fr, Pr, ctx.rng("composition"), kept, ctx.against)
    kept.clear()
    found = []
    for factor, value, rt, e in flips:
        ep, _ = runner.run("runtime", f"{factor}={value}:{ctx.against}", ctx.against, Pr,
                           f"{ctx.against} subsample with {factor}={value} (must still pass)", runtime=rt)
        found.append({"factor": factor, "value": value, "restores": restores(e0.health, e.health),
                      "passing_still_passes": ep.fails is False, "experiment": e.id, "rt": rt})
    tried: dict = {}
    for ex in runner.experiments:
        if ex.stage == "runtime" and "factor" in ex.details:
            tried.setdefault(ex.details["factor"], []).append(
                {"value": ex.details["value"], "fails": ex.fails, "error": ex.error})
    causes = []
    comp_cause = _composition_cause(comp, [f for f in found if f["factor"] == "batch_size"])
    if comp_cause is not None:
        causes.append(comp_cause)
    for factor in dict.fromkeys(f["factor"] for f in found):
        if comp_cause is not None and factor == "batch_size":
            continue  # explained by batch composition: never recommend a batch size for it
        good = [f for f in found if f["factor"] == factor and f["passing_still_passes"]]
        if not good:
            continue
        b = max(good, key=_pref)
        causes.append(Cause("runtime", factor, b["restores"], {
            "value": b["value"], "passing_values": [f["value"] for f in good],
            "tried": tried.get(factor, []), "default": getattr(runner.runtime, factor, None),
            "failing_health_default": e0.health, "experiment": b["experiment"], "n_samples": n_samples(Fr)},
            verified=True, fix=Fix(_factor_text(ctx, factor, b["value"], good), lambda s, rt=b["rt"]: (s, rt)),
            specificity=SPECIFICITY))
    for f in found:
        f.pop("rt", None)
    return StageReport({"status": "done", "flips": found, "n_samples": n_samples(Fr), "composition": comp}, causes)
