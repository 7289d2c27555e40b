"""Compare a model's inputs and outputs across two data splits.

For each model input and each split: summary statistics and two-sample drift against the other split
(:mod:`ptyanalysis.diagnosis.drift`); for each model output: its health on each split, measured against one
yardstick chosen by :func:`ptyanalysis.diagnosis.yardstick.choose_yardstick` (the reference outputs, else the
ground truth, else a usable split); the result as an ``xarray.Dataset``, a table and a figure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..diagnosis.health import (
    DEGRADED_HEALTH,
    collapsed_outputs,
    degraded,
    health_scores,
    outputs_stats,
    reference_problem,
    truth_sample_spread,
)
from ..diagnosis.inputs import (
    check_input_shapes,
    normalise_input_set,
    reference_from_sidecar,
)
from ..diagnosis.usage import input_usage, unused_text
from ..errors import PtyAnalysisError
from ..fileutil import write_json, write_netcdf
from ..inference.failures import model_errors
from ..inference.loading import load_model
from ..inference.runtime import RuntimeConfig
from ..inference.streaming import predict
from ..plotting import subplots
from ..provenance import software_versions, utc_now
from .drift import (
    KS_THRESHOLD,
    MEASURES,
    SMD_THRESHOLD,
    STATS,
    W1_THRESHOLD,
    input_drift,
    is_image_like,
    is_positions_like,
    pattern_summary,
    positions_values,
    summary_stats,
)
from .yardstick import Candidate, choose_yardstick

HEALTH_STATS = ("nonzero_fraction", "mean", "std", "nonfinite_count", "finite_fraction", "health",
                "output_health", "output_health_vs_ground_truth")


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SplitComparison:
    """Result of :func:`compare_splits`.

    Attributes
    ----------
    names : tuple of str
        Split names (the reference, when given, is called ``"reference"``).
    dataset : xarray.Dataset
        ``input_stats`` (input, split, stat), ``drift`` (input, pair, measure),
        ``output_health`` (output, split, hstat), per-pattern ``mean_pattern__*``
        and ``radial_profile__*``.
    ranking : tuple of str
        Inputs ordered by drift score (worst first).
    drift : dict
        ``{input: {pair: input_drift(...)}}`` (``drift_score``: the larger of the
        values' and, for image-like inputs, the pattern totals' drift).
    health : dict
        ``{split: {"health": float, "degraded": bool, "outputs": [stats...],
        "per_output": {output: float}, "degraded_outputs": [output...],
        "measured_against": str, "vs_ground_truth": dict or None}}``; a split
        is degraded when any of its outputs is. Every split is measured against
        the same yardstick (``measured_against`` says what, per row): the
        reference outputs when the reference is usable (the reference row is
        then the yardstick itself, 1.0), else the ground truth, else a usable
        split's outputs. ``vs_ground_truth`` (``{"health", "per_output",
        "degraded", "degraded_outputs"}``) is the split's separate comparison
        with its own ground truth, when there is one (the ground truth's units
        need not be the model's). The reference entry also has ``usable`` and
        ``problem`` (why its outputs cannot be trusted).
    reference_source : str
        What the output health (``health``) is measured against.
    patterns, positions : dict
        Per-pattern summaries and scan-map values per image-/positions-like input.
    flags : tuple of str
        Plain-language warnings.
    elapsed_s : float
    input_usage : tuple of InputUse
        Whether each input (and auxiliary input, e.g. a torch bundle's probe)
        changes the outputs at all (:func:`ptyanalysis.diagnosis.usage.input_usage`):
        the drift of an unused input is reported as harmless.
    """

    names: tuple
    dataset: object
    ranking: tuple
    drift: dict
    health: dict
    reference_source: str
    patterns: dict = field(repr=False, default_factory=dict)
    positions: dict = field(repr=False, default_factory=dict)
    flags: tuple = ()
    elapsed_s: float = 0.0
    input_usage: tuple = ()

    def to_xarray(self):
        """Return the :class:`xarray.Dataset`."""
        return self.dataset

    def to_dict(self) -> dict:
        """JSON-friendly summary (statistics, drift, ranking, health, flags)."""
        ds = self.dataset
        stats = {}
        for inp in ds["input"].values:
            stats[str(inp)] = {str(sp): {str(st): float(ds["input_stats"].sel(input=inp, split=sp, stat=st))
                                         for st in ds["stat"].values} for sp in ds["split"].values}
        return {
            "splits": list(self.names), "ranking": list(self.ranking), "input_stats": stats,
            "drift": self.drift, "thresholds": {"ks": KS_THRESHOLD, "wasserstein": W1_THRESHOLD,
                                                "smd": SMD_THRESHOLD, "degraded_health": DEGRADED_HEALTH},
            "output_health": self.health, "reference_source": self.reference_source,
            "flags": list(self.flags), "elapsed_s": self.elapsed_s,
            "input_usage": [u.to_dict() for u in self.input_usage],
            "pattern_totals": {k: {s: {"mean": float(np.mean(v["total"])), "std": float(np.std(v["total"]))}
                                   for s, v in d.items()} for k, d in self.patterns.items()},
        }

    def summary_table(self):
        """One row per (input, pair): drift measures and flags (pandas DataFrame)."""
        import pandas as pd

        rows = []
        for inp in self.ranking:
            for pair, d in self.drift[inp].items():
                rows.append({"input": inp, "pair": pair, "ks": d["ks"], "wasserstein": d["wasserstein"],
                             "smd": d["smd"], "drift_score": d["drift_score"], "drifted": d["drifted"],
                             "drift_basis": d.get("drift_basis", "values"),
                             "pattern_total_ratio": d.get("total_ratio", np.nan)})
        return pd.DataFrame(rows)

    def health_table(self):
        """One row per split: output health, what it is measured against, degraded flag, and the health
        against the split's own ground truth (NaN without one) (pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame([{"split": s, "health": h["health"], "degraded": h["degraded"],
                              "measured_against": h.get("measured_against"),
                              "health_vs_ground_truth": (h.get("vs_ground_truth") or {}).get("health", np.nan),
                              "nonzero_fraction": h["outputs"][0]["nonzero_fraction"],
                              "nonfinite_count": sum(o["nonfinite_count"] for o in h["outputs"]),
                              "degraded_outputs": ", ".join(h.get("degraded_outputs", [])),
                              **{f"health[{k}]": v for k, v in h.get("per_output", {}).items()}}
                             for s, h in self.health.items()])




def compare_splits(model, a, b, *, reference=None, ground_truth=None, names=("train", "test"),
                   runtime=None, seed: int = 0, max_output_samples: int | None = 2000) -> SplitComparison:
    """Compare a model's inputs and outputs across two splits.

    Parameters
    ----------
    model : LoadedModel, keras.Model or str
        The model (a spec is loaded with :func:`ptyanalysis.inference.load_model`).
    a, b : dict
        Input sets ``{input name: array}`` (or lists in the model's input order).
    reference : dict, optional
        Inputs drawn like the training inputs. If None, built from the model
        sidecar's training statistics when it has them.
    ground_truth : dict, optional
        ``{split name: list of arrays}`` (or one array) of true outputs per split
        (one array per output, or one complex array for a model whose two
        outputs are amplitude and phase; ground truth that matches neither is
        not used). Each split's health against its own ground truth is given
        separately (``vs_ground_truth``); it is the yardstick of ``health``
        only when there is no usable reference (the model's outputs on the
        reference are the yardstick otherwise, as in :func:`~ptyanalysis.diagnosis.bisection.bisect`:
        same model, same units).
    names : tuple of str
        Names of the two splits.
    runtime : RuntimeConfig, optional
    seed : int
        Seed of every subsample.
    max_output_samples : int or None
        Run the model on at most this many (seeded) samples per split
        (default 2000, which keeps two 5,000-sample N = 64 splits under 30 s
        on 2 cores; None runs every sample). The input statistics do not
        depend on it.

    Returns
    -------
    SplitComparison
    """
    import xarray as xr


    t0 = time.perf_counter()
    loaded = load_model(model)
    runtime = runtime or RuntimeConfig()
    in_names = list(loaded.input_names)
    names = tuple(str(n) for n in names)
    if len(names) != 2 or names[0] == names[1] or "reference" in names:
        raise PtyAnalysisError(f"names must be two different split names other than 'reference', got {names!r}")
    sets = {names[0]: normalise_input_set(a, in_names, f"split {names[0]!r}"),
            names[1]: normalise_input_set(b, in_names, f"split {names[1]!r}")}
    in_names = in_names or list(sets[names[0]])
    ref_source = ""
    if reference is None:
        reference = reference_from_sidecar(loaded.sidecar, sets[names[0]], seed=seed)
        if reference is not None:
            ref_source = "inputs drawn from the sidecar's training input statistics"
    else:
        ref_source = "reference input set"
    if reference is not None:
        sets["reference"] = normalise_input_set(reference, in_names, "reference")
    check_input_shapes(loaded, sets)
    splits = list(sets)
    base = "reference" if "reference" in sets else names[0]

    # inputs: statistics and drift
    stat_arr = np.full((len(in_names), len(splits), len(STATS)), np.nan)
    pairs = [(base, s) for s in splits if s != base]
    if base == "reference":
        pairs.append((names[0], names[1]))
    pair_names = [f"{p}->{q}" for p, q in pairs]
    drift_arr = np.full((len(in_names), len(pairs), len(MEASURES)), np.nan)
    drift, patterns, positions = {}, {}, {}
    data_vars = {}
    for i, inp in enumerate(in_names):
        for j, sp in enumerate(splits):
            st = summary_stats(sets[sp][inp], seed=seed)
            stat_arr[i, j] = [st[k] for k in STATS]
        drift[inp] = {}
        for k, (p, q) in enumerate(pairs):
            d = input_drift(sets[p][inp], sets[q][inp], seed=seed)  # values, and pattern totals for images
            drift[inp][pair_names[k]] = d
            drift_arr[i, k] = [d[m] for m in MEASURES]
        x0 = sets[names[0]][inp]
        if is_image_like(x0):
            patterns[inp] = {sp: pattern_summary(sets[sp][inp]) for sp in splits}
            mp = np.stack([patterns[inp][sp]["mean_pattern"] for sp in splits])
            data_vars[f"mean_pattern__{inp}"] = (("split", f"{inp}_y", f"{inp}_x"), mp)
            rl = max(len(patterns[inp][sp]["radial_profile"]) for sp in splits)
            rp = np.full((len(splits), rl), np.nan)
            for j, sp in enumerate(splits):
                prof = patterns[inp][sp]["radial_profile"]
                rp[j, :len(prof)] = prof
            data_vars[f"radial_profile__{inp}"] = (("split", f"{inp}_radius"), rp)
        elif is_positions_like(x0):
            positions[inp] = {sp: positions_values(sets[sp][inp]) for sp in splits}
    score = {inp: max(drift[inp][pn]["drift_score"] for pn in pair_names) for inp in in_names}
    ranking = tuple(sorted(in_names, key=lambda k: -np.nan_to_num(score[k], nan=np.inf)))

    # outputs: health
    rng = np.random.default_rng(seed)
    outs, ostats = {}, {}
    for sp in splits:
        s = sets[sp]
        n = next(iter(s.values())).shape[0]
        if max_output_samples and n > max_output_samples:
            idx = np.sort(rng.choice(n, max_output_samples, replace=False))
            s = {k: v[idx] for k, v in s.items()}
        outs[sp] = predict(loaded, [s[k] for k in in_names], runtime)
        ostats[sp] = outputs_stats(outs[sp])
    gt_stats, gt_note = None, ""
    if ground_truth is not None:
        gt_stats = {k: _ground_truth_stats(v, len(ostats[k])) for k, v in ground_truth.items() if k in ostats}
        unmatched = sorted(k for k, v in gt_stats.items() if v is None)
        if unmatched:
            gt_note = (f" (not for {', '.join(unmatched)}: its ground truth does not match the model's "
                       "outputs; absolute checks only there)")
    health, flags = {}, []
    if gt_note:
        flags.append(f"ground truth not used for split(s) {', '.join(repr(u) for u in unmatched)}: it does not "
                     "match the model's outputs (one array per output, or one complex array for amplitude and "
                     "phase outputs)")
    refst = ostats.get("reference")
    ref_problem = reference_problem(refst) if refst is not None else None
    # one rule for every diagnosis command (as bisect): the reference, else the ground truth, else a split
    has_gt = gt_stats is not None and any(v is not None for v in gt_stats.values())
    y = choose_yardstick(([Candidate("reference", "reference", ref_problem)] if refst is not None else [])
                         + ([Candidate("ground truth", "ground_truth")] if has_gt else [])
                         + [Candidate(sp, "inputs", reference_problem(ostats[sp])) for sp in names])
    gt_yardstick = y.kind == "ground_truth"
    yard_split = y.label if y.kind in ("reference", "inputs") else None
    refst = ostats[yard_split] if yard_split else None
    why = " (the reference is unusable)" if ref_problem else " (no reference)"
    ref_source = (f"the reference outputs ({ref_source})" if y.kind == "reference" else
                  f"ground truth of each split{gt_note}{why if ref_problem else ''}" if gt_yardstick else
                  f"split {yard_split!r}{why}" if yard_split else
                  f"none: absolute checks only{why if ref_problem else ' (all-zero, non-finite, collapsed)'}")
    if ref_problem:
        instead = ("the ground truth of each split" if gt_yardstick else
                   f"the outputs on split {yard_split!r}" if yard_split else "absolute checks only")
        flags.append(f"the reference is unusable: the model's outputs on it are not healthy ({ref_problem}); "
                     f"health is measured against {instead} instead")
    out_names = [f"output_{k}" for k in range(len(ostats[splits[0]]))]
    if loaded.output_names and len(loaded.output_names) == len(out_names):
        out_names = list(loaded.output_names)
    for sp in splits:
        own_gt = gt_stats.get(sp) if gt_stats is not None else None
        rs = own_gt if gt_yardstick else refst
        if rs is None:
            against = "absolute checks only (no yardstick: all-zero, non-finite, collapsed)"
        elif gt_yardstick:
            against = f"the ground truth of split {sp!r}"
        elif sp == yard_split:
            against = "itself (these outputs are the yardstick)"
        elif yard_split == "reference":
            against = "the reference outputs"
        else:
            against = f"the outputs on split {yard_split!r}"
        hk = health_scores(ostats[sp], rs) if rs is not None else []
        h = float(np.mean(hk)) if hk else np.nan
        abs_bad = [o.nonzero_fraction == 0 or o.finite_fraction < 1 or o.std == 0 for o in ostats[sp]]
        bad_k = [k for k, x in enumerate(hk) if degraded(x)] if rs is not None else \
            [k for k, b in enumerate(abs_bad) if b]
        deg = bool(bad_k)  # degraded when any output is
        vs_gt = None
        if own_gt is not None:  # the split against its own ground truth: a separate, labelled comparison
            gk = health_scores(ostats[sp], own_gt)
            vs_gt = {"health": float(np.mean(gk)) if gk else np.nan,
                     "per_output": {out_names[k]: gk[k] for k in range(len(gk))},
                     "degraded": any(degraded(x) for x in gk),
                     "degraded_outputs": [out_names[k] for k, x in enumerate(gk) if degraded(x)]}
        health[sp] = {"health": h, "degraded": deg, "outputs": [o.to_dict() for o in ostats[sp]],
                      "per_output": {out_names[k]: (hk[k] if hk else None) for k in range(len(out_names))},
                      "degraded_outputs": [out_names[k] for k in bad_k], "measured_against": against,
                      "vs_ground_truth": vs_gt}
        if sp == "reference":
            health[sp]["usable"] = ref_problem is None
            health[sp]["problem"] = ref_problem
        truth = truth_sample_spread(ground_truth.get(sp)) if ground_truth else None
        health[sp]["collapsed"] = collapsed_outputs(ostats[sp], out_names, truth_spread=truth)
        for c in health[sp]["collapsed"]:
            flags.append(f"split {sp!r}: {c['text']}")
        if deg and sp != "reference":
            o = ostats[sp][bad_k[0]]
            which = (f"; degraded output(s): {', '.join(out_names[k] for k in bad_k)} (health per output "
                     + ", ".join(f"{out_names[k]} {x:.3f}" for k, x in enumerate(hk)) + ")") if len(out_names) > 1 else ""
            gt_part = (f"; against its own ground truth (a separate yardstick, in the truth's units): health "
                       f"{vs_gt['health']:.3f}" if vs_gt is not None and not gt_yardstick else "")
            flags.append(f"split {sp!r} is degraded: health {h:.3f} (nonzero fraction "
                         f"{o.nonzero_fraction:.4f}, {o.nonfinite_count} non-finite) against "
                         f"{against if rs is None or gt_yardstick or sp == yard_split else ref_source}{which}{gt_part}")
    if "reference" in health and health["reference"]["degraded"] and not ref_problem:
        flags.append("the reference outputs are themselves unhealthy: the model may be at fault")
    # which inputs the model uses at all, measured on the first split whose outputs are usable

    usage = []
    live = [sp for sp in splits if reference_problem(ostats[sp]) is None] or list(splits)
    try:
        usage = input_usage(lambda xs: predict(loaded, xs, runtime), sets[live[0]], in_names,
                            model=getattr(loaded, "model", None), seed=seed)
    except (PtyAnalysisError, *model_errors()) as exc:  # evidence, not fatal
        flags.append(f"which inputs the model uses could not be measured ({type(exc).__name__}: {exc})")
    unused = {u.name for u in usage if u.used is False}
    for inp in ranking:
        if score[inp] >= 1:
            flags.append(f"input {inp!r} drifted (score {score[inp]:.2f}; "
                         + ", ".join(_drift_words(pn, drift[inp][pn]) for pn in pair_names) + ")"
                         + (": harmless, the model does not use it" if inp in unused else ""))
    if unused_text(usage):
        flags.append(unused_text(usage))

    ostat_names = out_names
    harr = np.full((len(ostat_names), len(splits), len(HEALTH_STATS)), np.nan)
    for j, sp in enumerate(splits):
        for k, o in enumerate(ostats[sp]):
            hk = health[sp]["per_output"][ostat_names[k]]
            gt = (health[sp]["vs_ground_truth"] or {}).get("per_output", {}).get(ostat_names[k])
            harr[k, j] = [o.nonzero_fraction, o.mean, o.std, o.nonfinite_count, o.finite_fraction,
                          health[sp]["health"], np.nan if hk is None else hk, np.nan if gt is None else gt]
    data_vars.update(
        input_stats=(("input", "split", "stat"), stat_arr),
        drift=(("input", "pair", "measure"), drift_arr),
        output_health=(("output", "split", "hstat"), harr),
    )
    ds = xr.Dataset(data_vars, coords={"input": in_names, "split": splits, "stat": list(STATS),
                                       "pair": pair_names, "measure": list(MEASURES),
                                       "output": ostat_names, "hstat": list(HEALTH_STATS)},
                    attrs={"reference_source": ref_source, "ks_threshold": KS_THRESHOLD,
                           "wasserstein_threshold": W1_THRESHOLD, "smd_threshold": SMD_THRESHOLD,
                           "degraded_health": DEGRADED_HEALTH})
    return SplitComparison(names=tuple(splits), dataset=ds, ranking=ranking, drift=drift, health=health,
                           reference_source=ref_source, patterns=patterns, positions=positions,
                           flags=tuple(flags), elapsed_s=time.perf_counter() - t0, input_usage=tuple(usage))


def _drift_words(pair: str, d: dict) -> str:
    """One pair's drift in a flag: the values' measures, and the pattern totals' ratio and measures."""
    out = (f"{pair}: KS {d['ks']:.2f}, W1/sd {d['wasserstein']:.2f}, SMD {d['smd']:.2f}")
    pt = d.get("pattern_total")
    if pt is not None:
        base = pair.split("->")[0]
        out += (f"; pattern totals x{d['total_ratio']:.3g} of {base}'s (KS {pt['ks']:.2f}, SMD {pt['smd']:.2f}"
                + (", the larger drift" if d.get("drift_basis") == "pattern totals" else "") + ")")
    return out


def _ground_truth_stats(gt, n_outputs: int):
    """Health statistics of a split's ground truth, one per model output, or None when they do not match.

    One array per output is used as is; one complex array against a model with
    two outputs is read as [amplitude, phase] (the study's Baseline), i.e.
    ``|gt|`` and ``angle(gt)``. Anything else cannot be compared output by
    output (never the amplitude's statistics for a phase output).
    """
    arrays = list(gt) if isinstance(gt, (list, tuple)) else [gt]
    if len(arrays) == n_outputs:
        return outputs_stats(arrays)
    if len(arrays) == 1 and n_outputs == 2 and np.iscomplexobj(arrays[0]):
        a = np.asarray(arrays[0])
        return outputs_stats([np.abs(a), np.angle(a)])
    return None


def write_split_comparison(result: SplitComparison, out_dir) -> dict:
    """Write ``split_comparison.json`` (and ``split_comparison.nc``) atomically.

    Parameters
    ----------
    result : SplitComparison
    out_dir : str or Path

    Returns
    -------
    dict
        ``{"json": path, "netcdf": path or None}``.
    """

    out = Path(out_dir)
    d = result.to_dict()
    d.update(generated_at=utc_now(), versions=software_versions())
    pj = write_json(out / "split_comparison.json", d)
    pn = write_netcdf(out / "split_comparison.nc", result.dataset)
    return {"json": pj, "netcdf": pn}


def plot_split_comparison(result: SplitComparison):
    """Figure: drift score per input, output health per split, pattern totals / scan maps.

    The drift scores are drawn on a log scale with the threshold (1) marked, so
    one input's huge score does not hide another's; the output health has one
    bar per output and split; the scan maps have labelled axes and their
    legends sit outside the data.

    Parameters
    ----------
    result : SplitComparison

    Returns
    -------
    matplotlib.figure.Figure
    """

    extra = list(result.patterns) + list(result.positions)
    ncol = 2 + len(extra)
    fig, axes = subplots(1, ncol, figsize=(4.4 * ncol, 3.8), squeeze=False)
    ax = axes[0, 0]
    sc = np.array([max(d["drift_score"] for d in result.drift[i].values()) for i in result.ranking], float)
    finite = sc[np.isfinite(sc) & (sc > 0)]
    floor = min(1e-2, float(finite.min()) / 2) if finite.size else 1e-2
    ceil = max(10.0, float(finite.max()) * 2) if finite.size else 10.0
    shown = np.clip(np.nan_to_num(sc, nan=ceil, posinf=ceil), floor, ceil)
    ax.barh(list(result.ranking)[::-1], shown[::-1],
            color=["C3" if v >= 1 else "C0" for v in sc[::-1]])
    ax.set_xscale("log")
    ax.set_xlim(floor, ceil * 1.5)
    ax.axvline(1.0, color="k", ls="--", lw=1, label="threshold (1)")
    ax.set_xlabel("drift score (log scale; 1 = threshold)")
    ax.set_title("input drift")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), fontsize=7, frameon=False)
    ax = axes[0, 1]
    sp = list(result.health)
    outs = list(next(iter(result.health.values())).get("per_output", {})) or ["all outputs"]
    width = 0.8 / len(outs)
    x = np.arange(len(sp))
    for k, o in enumerate(outs):
        hv = [(result.health[s].get("per_output", {}).get(o) if len(outs) > 1 or "per_output" in result.health[s]
               else result.health[s]["health"]) for s in sp]
        hv = [np.nan if v is None else v for v in hv]
        ax.bar(x + (k - (len(outs) - 1) / 2) * width, np.nan_to_num(hv), width,
               color=["C3" if (v != v or v < DEGRADED_HEALTH) else "C2" for v in hv],
               edgecolor="k", hatch=["", "//", "..", "xx"][k % 4], label=o)
    ax.set_xticks(x, sp)
    ax.axhline(DEGRADED_HEALTH, color="k", ls=":", lw=1)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("health (red: degraded)")
    ax.set_title("output health per output")
    if len(outs) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    k = 2
    for inp in result.patterns:
        ax = axes[0, k]
        for s2, v in result.patterns[inp].items():
            ax.hist(v["total"], bins=40, histtype="step", label=s2)
        ax.set_title(f"{inp}: total per pattern")
        ax.set_xlabel("sum of the pattern")
        ax.set_ylabel("patterns")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
        k += 1
    for inp in result.positions:
        ax = axes[0, k]
        for i, (s2, v) in enumerate(result.positions[inp].items()):
            ax.scatter(v[:, 0], v[:, 1] if v.shape[1] > 1 else np.zeros(len(v)), s=3,
                       marker="os^"[i % 3], alpha=0.7, label=s2)
        ax.set_title(f"{inp}: scan map")
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, markerscale=3)
        k += 1
    fig.tight_layout()
    return fig
