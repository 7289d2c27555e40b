"""The bisection's typed records: experiments, causes, stage reports, the verdict and the result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Experiment:
    """One experiment: a model call on one (modified) input set.

    Attributes
    ----------
    id : int
    stage : str
        ``reproduce``, ``runtime``, ``input``, ``combination``, ``samples``, ``layers``, ``confirm``.
    name : str
        Short name, e.g. ``"swap:input_positions"``, ``"batch_size=1"``.
    target : str
        Set the change is applied to (``failing``, ``passing``, ``reference``).
    change : str
        Plain-language description.
    n_samples : int
        Samples fed to the model.
    fails : bool or None
        Criterion outcome (None: not run or error); like ``health`` and the
        fractions, of the scored rows: all of them unless ``details["scored"]``
        says which (e.g. only the failing samples of a mixed batch).
    health : float
        Health against the reference statistics.
    restores : float or None
        Share of the failing set's lost health brought back (failing-set experiments).
    nonzero_fraction, finite_fraction : float
        Of the first output.
    error : str or None
    elapsed_s : float
    details : dict
    """

    id: int
    stage: str
    name: str
    target: str
    change: str
    n_samples: int
    fails: bool | None
    health: float
    restores: float | None
    nonzero_fraction: float
    finite_fraction: float
    error: str | None = None
    elapsed_s: float = 0.0
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Fix:
    """What to do about a cause, and whether an experiment showed that it works.

    Attributes
    ----------
    text : str
        The fix sentence (rendered from the evidence).
    apply : callable or None
        ``apply(input_set) -> (input_set, runtime or None)``: the change, for confirming it on the
        whole failing set (None when it cannot be applied to inputs, e.g. "drop these samples").
    """

    text: str
    apply: Callable | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Cause:
    """A candidate cause and how much of the reference health its change restores.

    Attributes
    ----------
    kind : str
        ``input``, ``pairing``, ``samples``, ``runtime``, ``model`` or ``criterion``.
    name : object
        Input name (``"a+b"`` for a combination), runtime factor, sample indices, model name.
    restores : float
    evidence : dict
    verified : bool
        The experiment that made this change let the failing set pass the user's criterion. Only a
        verified cause gets a fix sentence in the verdict.
    fix : Fix or None
    specificity : int
        Lower = more specific change (ties of ``restores`` go to the more specific cause, then to the
        stronger evidence, never to input order).
    strength : float
        Evidence beyond the experiment (e.g. how far the input drifted), for ties of equal specificity.
    """

    kind: str
    name: object
    restores: float
    evidence: dict = field(default_factory=dict)
    verified: bool = False
    fix: Fix | None = field(default=None, compare=False)
    specificity: int = 50
    strength: float = 0.0

    @property
    def key(self) -> tuple:
        """``(kind, name)`` with a hashable name."""
        return self.kind, tuple(self.name) if isinstance(self.name, list) else self.name

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return {"kind": self.kind, "name": self.name, "restores": self.restores, "evidence": self.evidence,
                "verified": self.verified, "fix": None if self.fix is None else self.fix.text}


@dataclass
class StageReport:
    """What one stage found: its candidate causes and what it did (``info``, kept in ``settings.stages``)."""

    info: dict
    causes: list = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """The bisection's conclusion, before it is put in words (:mod:`.render`).

    Attributes
    ----------
    kind : str
        ``input``, ``pairing``, ``samples``, ``runtime``, ``model``, ``criterion``, ``collapsed``,
        ``unknown`` or ``none``.
    name : object
    fix : str
        The fix sentence: only a verified change's, else what to try next.
    verified : bool
        The fix was seen to make the failing set pass.
    facts : dict
        Everything the summary is rendered from (structured; also written to ``bisection.json``).
    notes : tuple of dict
        Side findings rendered after the summary (``{"kind": ..., ...}``).
    """

    kind: str
    name: object = None
    fix: str = ""
    verified: bool = False
    facts: dict = field(default_factory=dict)
    notes: tuple = ()


@dataclass(frozen=True)
class BisectionResult:
    """Everything :func:`bisect` found.

    Attributes
    ----------
    reproduced : bool
    criterion : dict
    health : dict
        ``failing``, ``passing``, ``reference`` health, the reference source,
        ``*_degraded`` flags and per-set output statistics.
    causes : tuple of Cause
        Ranked, best first.
    verdict : dict
        ``kind``, ``name``, ``summary``.
    fix : str
    evaluations : int
    elapsed_s : float
    experiments : tuple of Experiment
    layers : dict
        Layer probe: ``status``, ``first_dead``, ``first_nonfinite``, ``rows``.
    inputs : dict
        Per-input comparison of the failing and passing sets (drift, dtype, non-finite).
    settings : dict
    input_usage : tuple of InputUse
        Whether each input (and each auxiliary input the model holds, e.g. a
        probe) changes the outputs at all (:func:`ptyanalysis.diagnosis.usage.input_usage`);
        an unused input is never swapped or intervened on.
    """

    reproduced: bool
    criterion: dict
    health: dict
    causes: tuple
    verdict: dict
    fix: str
    evaluations: int
    elapsed_s: float
    experiments: tuple
    layers: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    input_usage: tuple = ()

    def to_dict(self) -> dict:
        """JSON-friendly dict (what ``bisection.json`` holds)."""
        return {
            "reproduced": self.reproduced, "criterion": self.criterion, "health": self.health,
            "causes": [c.to_dict() for c in self.causes], "verdict": self.verdict, "fix": self.fix,
            "evaluations": self.evaluations, "elapsed_s": self.elapsed_s,
            "experiments": [e.to_dict() for e in self.experiments], "layers": self.layers,
            "inputs": self.inputs, "settings": self.settings,
            "input_usage": [u.to_dict() for u in self.input_usage],
        }

    def experiments_table(self):
        """Every experiment as a row (pandas DataFrame)."""
        import pandas as pd

        cols = ["id", "stage", "name", "target", "n_samples", "fails", "health", "restores",
                "nonzero_fraction", "finite_fraction", "error", "elapsed_s", "change"]
        return pd.DataFrame([{c: getattr(e, c) for c in cols} for e in self.experiments], columns=cols)

    def layer_table(self):
        """Per-layer zero / non-finite fractions on the failing and passing sets (DataFrame)."""
        import pandas as pd

        return pd.DataFrame(self.layers.get("rows", []))

    def causes_table(self):
        """Ranked causes (DataFrame)."""
        import pandas as pd

        return pd.DataFrame([{"kind": c.kind, "name": str(c.name), "restores": c.restores, "verified": c.verified,
                              "fix": None if c.fix is None else c.fix.text} for c in self.causes])

    def to_xarray(self):
        """Experiments (dim ``experiment``) and layer statistics (dims ``layer``, ``set``)."""
        import xarray as xr

        ex = self.experiments
        ds = xr.Dataset(
            {"health": ("experiment", [e.health for e in ex]),
             "restores": ("experiment", [np.nan if e.restores is None else e.restores for e in ex]),
             "fails": ("experiment", [np.nan if e.fails is None else float(e.fails) for e in ex]),
             "n_samples": ("experiment", [e.n_samples for e in ex]),
             "stage": ("experiment", [e.stage for e in ex])},
            coords={"experiment": [e.name for e in ex]},
            attrs={"verdict_kind": self.verdict.get("kind"), "verdict_name": str(self.verdict.get("name")),
                   "fix": self.fix, "reproduced": int(self.reproduced)})
        rows = self.layers.get("rows", [])
        if rows:
            ds["layer_zero_fraction"] = (("layer", "set"), [[r["zero_fraction_failing"], r["zero_fraction_passing"]]
                                                            for r in rows])
            ds["layer_nonfinite_fraction"] = (("layer", "set"), [[r["nonfinite_fraction_failing"],
                                                                  r["nonfinite_fraction_passing"]] for r in rows])
            ds = ds.assign_coords(layer=[r["layer"] for r in rows], set=["failing", "passing"])
        return ds


