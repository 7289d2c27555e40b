"""The fault suite (tiny Keras models with known faults) as fixtures: a test that takes one is in the tf tier.

The modules faults.py, faults_conventions.py and faults_more.py import Keras, so test modules do not import
them at the top (the fast tier collects every module with the frameworks blocked): they take them from these
fixtures, and parametrize over the case names in fault_cases.py.
"""

import pytest


@pytest.fixture(scope="session")
def faults(keras):
    """tests/diagnosis/faults.py (tier tf)."""
    import faults

    return faults


@pytest.fixture(scope="session")
def faults_more(keras):
    """tests/diagnosis/faults_more.py (tier tf)."""
    import faults_more

    return faults_more


@pytest.fixture(scope="session")
def faults_conventions(keras):
    """tests/diagnosis/faults_conventions.py (tier tf)."""
    import faults_conventions

    return faults_conventions
