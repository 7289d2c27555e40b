"""Find why a model fails on one input set and passes on another (``ptyanalysis bisect``).

:func:`bisect` runs controlled experiments, each one model call on one input set (an *evaluation*, at most
``max_evaluations``), and reports which change makes the failing set pass and how much of the reference
health it restores (:mod:`ptyanalysis.diagnosis.health`: statistics per output, per-sample health, and, with
a paired reference, each sample against its own as-trained output).

The engine, one concept per module:

* :mod:`.settings`: the one :class:`Settings` object (budget, subsample sizes, **one seed** from which every
  random choice is drawn) and the constants;
* :mod:`.records`: typed records, :class:`Experiment`, :class:`Cause` (with ``verified``: its experiment made
  the failing set pass), :class:`Verdict`, :class:`BisectionResult`;
* :mod:`.sets`, :mod:`.interventions` (generic changes) and :mod:`.conventions` (the conventions people get
  wrong: fft-shifted or transposed patterns, intensities for amplitudes, a conjugated probe, hot pixels,
  wrapped integers, an 8-bit export, position units, offset sign and x/y order), :mod:`.ddmin`;
* :mod:`.runner`: owns every model call (experiments, the usage check, the layer probe: :mod:`.probe`);
* :mod:`.stages`: ``runtime``, ``inputs``, ``several``, ``pairing``, ``samples``, ``criterion``: each takes a
  :class:`~.context.Context` and returns a :class:`StageReport`;
* :mod:`.core` orchestrates: reproduce on seeded working subsamples; choose the yardstick (a reference is
  checked before it is trusted); the early verdicts (outputs that do not depend on the input; not
  reproduced; every set fails: the *criterion* does not fit healthy outputs, a runtime factor rescues, or the
  *model* is unhealthy on every input); the stages; the top cause confirmed on the whole failing set;
* :mod:`.verdict` ranks the causes (verified first, then specificity, then evidence; never input order) and
  builds the :class:`Verdict`; only a verified cause gives a fix sentence; :mod:`.render` puts it in words;
* :mod:`.output` writes ``bisection.json`` and draws the figure. The command line, ``ptyanalysis bisect``, is
  :mod:`ptyanalysis.commands.bisect`.

CLI: ``ptyanalysis bisect --model PATH --failing F.npz --passing P.npz [--reference R.npz]
[--criterion all-zero|any-blank|mostly-zero|zero-fraction>=F|...] [--study-inputs] [--max-samples 2000]
[--seed 0] --out DIR`` writes ``DIR/bisection.json``.
"""

from .core import bisect
from .ddmin import ddmin
from .interventions import INTERVENTIONS, intervene
from .output import plot_bisection, write_bisection
from .probe import layer_probe
from .records import BisectionResult, Cause, Experiment, StageReport, Verdict
from .settings import Settings

__all__ = ["bisect", "Settings", "BisectionResult", "Cause", "Experiment", "StageReport", "Verdict", "ddmin",
           "intervene", "INTERVENTIONS", "layer_probe", "plot_bisection", "write_bisection"]
