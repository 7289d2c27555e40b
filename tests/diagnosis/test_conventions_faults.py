"""The convention fault cases are well-formed: the model passes on the passing set, fails on the failing set,
and passes again once the convention fix that :func:`conventions.applicable` proposes is applied.

The full bisection on these cases is run elsewhere; this only proves each case can be solved by its fix.
"""

import fault_cases
import numpy as np
import pytest

from ptyanalysis.diagnosis.bisection import conventions
from ptyanalysis.diagnosis.health import parse_criterion
from ptyanalysis.inference.streaming import predict


def _lit_share(outputs) -> float:
    """Share of the samples with some non-zero output."""
    y = np.asarray(outputs[0])
    return float(np.mean(np.any(y.reshape(len(y), -1) != 0, axis=1)))


@pytest.mark.parametrize("case_name", fault_cases.CONVENTION_CASES)
def test_convention_case_fails_and_its_fix_restores(faults_conventions, case_name):
    case = getattr(faults_conventions, case_name)()
    crit = parse_criterion(case.criterion)
    k, want = case.expected_name, case.notes["convention"]
    assert case.expected_kind == "input" and k in case.failing

    good = predict(case.model, case.passing)
    assert not crit.fails(good) and _lit_share(good) >= 0.95
    bad = predict(case.model, case.failing)
    assert crit.fails(bad)
    ref = predict(case.model, case.reference)
    assert not crit.fails(ref)

    R = None if case.reference is None else case.reference[k]
    found = conventions.applicable(k, case.failing[k], case.passing[k], R)
    assert [f.name for f in found][:1] == [want], [f.name for f in found]
    for other in case.failing:  # the untouched inputs propose nothing
        if other != k:
            assert conventions.applicable(other, case.failing[other], case.passing[other],
                                          None if case.reference is None else case.reference[other]) == []

    fixed = dict(case.failing)
    fixed[k] = conventions.apply(found[0], case.failing[k])
    out = predict(case.model, fixed)
    assert not crit.fails(out) and _lit_share(out) >= 0.95
    # the fix found on a subsample repairs the whole set, and another subsample
    half = {name: v[::2] for name, v in case.failing.items()}
    sub = conventions.applicable(k, half[k], case.passing[k], R)[0]
    assert sub.name == want
    other = {name: v[1::2] for name, v in case.failing.items()}
    other[k] = conventions.apply(sub, other[k])
    assert _lit_share(predict(case.model, other)) >= 0.95
