"""A :class:`~.records.Verdict` in words: the summary of ``bisection.json`` and the CLI.

Rendering only: every number comes from the verdict's ``facts`` and ``notes``; nothing is decided here.
"""

from __future__ import annotations

import numpy as np

from .interventions import INTERVENTIONS
from .records import Verdict


def pct(x) -> str:
    """A share as a percentage ("n/a" when unknown)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.0f} %"


def _end(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith(".") else text + "."


def _restored(c: dict, what: str = "of the health") -> str:
    """``restores X % <what>``, and, when the change still failed the criterion, that it did."""
    words = f"restores {pct(c.get('restores'))} {what}"
    return words if c.get("verified") else words + " but the failing set still fails the criterion"


def _input(v: Verdict) -> str:
    top, ev = v.facts["top"], v.facts["top"]["evidence"]
    parts = ev.get("parts")
    if parts:
        descr = "; ".join(f"{p['input']!r}" + (f" ({p['reason']})" if p.get("reason") else "")
                          + f": {p['intervention']} alone restores {pct(p.get('restores_alone'))}" for p in parts)
        how = ("no single change restores the reference health" if ev.get("several_causes")
               else "only changing them together makes the failure go away")
        return (f"{len(parts)} causes, inputs {' and '.join(repr(p['input']) for p in parts)}: {how}; {descr}; "
                f"together the changes {_restored(top, 'of the reference health')}")
    order = {k: i for i, k in enumerate(INTERVENTIONS)}
    tried = ", ".join(f"{k} {pct(r)}" for k, r in sorted(ev.get("restores_by_intervention", {}).items(),
                                                         key=lambda kv: (order.get(kv[0], 99), kv[0])))
    best = ev.get("best_intervention")
    return (f"input {top['name']!r} is at fault" + (f": {ev['reason']}" if ev.get("reason") else "") + ". "
            + (f"The most specific change that works is {best}; changing it " if best and top.get("verified")
               else f"The closest change is {best}; it " if best else "Changing it ")
            + f"alone {_restored(top)}" + (f" ({tried})" if tried else ""))


def _samples(v: Verdict) -> str:
    top, ev = v.facts["top"], v.facts["top"]["evidence"]
    runs = ev.get("runs") or []
    nf = ev.get("nonfinite_inputs")
    text = (f"{len(top['name'])} sample(s) {top['name']} cause the failure"
            + (f" ({len(runs)} run(s) of consecutive samples)" if 1 <= len(runs) < len(top["name"]) else "")
            + f": without them the rest of the set passes ({_restored(top)})"
            + (f"; they hold non-finite values in {', '.join(nf)}" if nf else "")
            + (f"; found by {ev['found_by']}" if ev.get("found_by") else ""))
    if ev.get("victims"):
        text += (f". Sample(s) {ev['victims']} fail only because they share a batch with them (victims, not "
                 "culprits): a batch-level operation spreads the failure")
    return text


def _composition(v: Verdict) -> str:
    ev = v.facts["top"]["evidence"]
    arr = ev.get("arrangements", {})
    text = ("outputs depend on which samples share a batch: the same failing samples at the same batch size "
            f"({ev.get('batch_size')}) give different outputs with other neighbours ("
            + ", ".join(f"{k}: {pct(a.get('changed_fraction'))} of the samples change" for k, a in arr.items()
                        if "changed_fraction" in a) + "). This is batch composition, not batch size")
    if ev.get("batch_sizes_that_pass"):
        text += (f" (batch size {ev['batch_sizes_that_pass']} passes only because a sample then has fewer or no "
                 "neighbours)")
    return text


def _runtime(v: Verdict) -> str:
    if v.facts.get("rescue"):
        return _rescued(v)
    top = v.facts["top"]
    if top["name"] == "batch_composition":
        return _composition(v)
    text = (f"runtime factor {top['name']!r} flips the outcome: with {top['name']}={top['evidence'].get('value')} "
            f"the failing set passes ({_restored(top)}) and the passing set still passes")
    return text + (f". Fix: {v.fix}" if top["name"] == "dtype" else "")


def _pairing(v: Verdict) -> str:
    top, ev = v.facts["top"], v.facts["top"]["evidence"]
    how = (f"shifted by {ev['shift']:+d} samples" if ev.get("shift") is not None else "re-paired by rank")
    return (f"the inputs {top['name']!r} and {ev['partner']!r} are misaligned: every input's values look right, "
            f"but their samples no longer go together (per-sample correlation {ev['correlation_lag0']:.2f} where "
            f"the comparison set has {ev['correlation_comparison']:.2f}); with {top['name']!r} {how} the failing "
            f"set passes ({_restored(top)})")


def _model(v: Verdict) -> str:
    f = v.facts
    text = (f"the model fails on every set{'' if f.get('reference_given') else ' (no reference set was given to confirm it)'}"
            f" -- {', '.join(f['sets'])} -- under the {f['criterion']!r} criterion, its outputs are unhealthy on "
            f"every one ({f.get('unhealthy', 'see health')}), and no runtime factor rescues it")
    if f.get("first_nonfinite_layer"):
        text += f"; activations first go non-finite at layer {f['first_nonfinite_layer']!r}"
    elif f.get("first_all_zero_layer"):
        text += f"; activations are already all zero at layer {f['first_all_zero_layer']!r}"
    if f.get("collapsed_texts"):
        text += "; " + "; ".join(f["collapsed_texts"])
    if f.get("first_input_independent_layer") and not f.get("first_all_zero_layer"):
        text += f"; activations stop depending on the input at layer {f['first_input_independent_layer']!r}"
    return text + ": the model itself is at fault (e.g. untrained, dead or non-finite weights saved)"


def _criterion(v: Verdict) -> str:
    f = v.facts["criterion_check"]
    why = []
    if f["healthy_sets"]:
        why.append(f"the model's outputs on the {' and '.join(f['healthy_sets'])} set(s) fail it although they are "
                   "otherwise healthy (finite, not blank, not collapsed, varying from sample to sample)")
    truth = [lbl for lbl, x in f.get("truth_fails", {}).items() if x is True]
    if truth:
        why.append(f"the ground truth of the {' and '.join(truth)} set(s) fails it too")
    zf = ", ".join(f"{lbl} {100 * z:.0f} %" for lbl, z in f.get("zero_fraction", {}).items())
    text = (f"the criterion {f['criterion']!r} does not fit this model's outputs: every set fails it, and "
            + "; ".join(why) + f" (zero or non-finite share of the outputs: {zf})")
    if f.get("suggested"):
        return text + (f". Under {f['suggested']!r} the healthy sets pass and the failing set fails: rerun with "
                       f"--criterion {f['suggested']}")
    return text + (f". Under {f.get('passes_everything')!r} every set passes, the failing one included: its outputs "
                   "are as healthy as the others by every built-in criterion")


def _collapsed(v: Verdict) -> str:
    f = v.facts
    text = f"not an {f['criterion']!r} failure, but an output that does not depend on the input: {f['texts']}"
    if f.get("also_on"):
        text += (f"; the same on the {' and '.join(f['also_on'])} set(s), so the model itself does not use its "
                 "input there (e.g. under-trained), not the data")
    if f.get("independent_layers_text"):
        text += f"; {f['independent_layers_text']}"
    return text + f". Rerun with --criterion {f['rerun_criterion']} to bisect it as the failure"


def _rescued(v: Verdict) -> str:
    f = v.facts
    return (f"every set fails under the default runtime, but {v.name}={f['value']} rescues the failing set: a "
            "runtime fault, not the data")


def _plain(v: Verdict) -> str:
    return v.facts.get("text", "")


def _unknown(v: Verdict) -> str:
    return ("reproduced, but no experiment restored the outputs: the cause is outside the factors tried (inputs, "
            "their pairing, samples, runtime)")


KINDS = {"input": _input, "samples": _samples, "runtime": _runtime, "pairing": _pairing, "model": _model,
         "criterion": _criterion, "collapsed": _collapsed, "unknown": _unknown, "none": _plain}


def _note(n: dict) -> str:
    k = n["kind"]
    if k == "layers":
        if n.get("first_nonfinite"):
            return f"Activations first go non-finite at layer {n['first_nonfinite']!r}."
        return f"Activations first die at layer {n['first_dead']!r}."
    if k == "others":
        return "Other changes that help: " + "; ".join(
            f"{c['kind']} {c['name']} ({pct(c['restores'])}{'' if c['verified'] else ', still fails'})"
            for c in n["causes"]) + "."
    if k == "passing_degraded":
        return (f"Note: the passing set is itself degraded (health {n['health']:.3f} against the {n['source']}): "
                "it passes the criterion but is far from healthy.")
    if k == "degraded_outputs":
        return (f"Degraded output(s) of the failing set: {', '.join(n['outputs'])} (health per output: "
                + ", ".join(f"{name} {h:.2f}" for name, h in zip(n["names"], n["health"])) + ").")
    if k == "reference_took_place":
        return (f"The passing set fails too (health {n['health']:.3f}), so the reference set took its place in the "
                "experiments.")
    if k == "drifted_not_named":
        return (f"Also drifted, but not named as a cause: {', '.join(n['items'])}: changing it does not change the "
                "outcome measurably under this criterion and health score (see the Health note); check it anyway.")
    if k == "not_confirmed":
        return (f"Applied to the whole failing set ({n['n_samples']} samples) the fix does not make it pass: it holds "
                "for the working subsample only.")
    if k == "nonfinite_inputs":
        parts = "; ".join(f"{p['count']:,} in {p['input']!r} ({p['n_samples']} sample(s): "
                          + ", ".join(map(str, p["first_samples"])) + (", ..." if p["n_samples"] > 5 else "") + ")"
                          for p in n["inputs"])
        return (f"The failing set holds non-finite (NaN/Inf) input values: {parts} (criterion {n['criterion']!r}; run "
                "with --criterion non-finite to localise them).")
    if k == "reference_unusable":
        return (f"The reference set is unusable: the model's outputs on it are not healthy ({n['problem']}); health "
                "is measured against the passing set instead.")
    if k == "no_usable_reference":
        return ("No set gives usable reference outputs (" + "; ".join(f"{lbl}: {p}" for lbl, p in n["problems"].items())
                + "): health scores are not meaningful.")
    if k == "health_basis":
        if n["basis"] == "paired":
            return ("Health: paired, each failing sample's outputs against its own outputs fed as the model was "
                    "trained (the paired reference), and never above the output statistics' health.")
        if n.get("paired_not_used_because"):
            return f"Health: output statistics only; the paired reference was not used ({n['paired_not_used_because']})."
        return "Health: output statistics (no paired reference)."
    return n.get("text", "")


def summary(v: Verdict) -> str:
    """The verdict's summary: the finding, then its side notes, each a sentence."""
    text = _end(KINDS.get(v.kind, _plain)(v))
    for n in v.notes:
        t = _note(n)
        if t:
            text += " " + _end(t)
    return text
