"""Block the frameworks in this process (this folder first on ``PYTHONPATH``): the fast test tier's children.

A fast-tier run (tests/conftest.py) puts this folder first on ``PYTHONPATH``, so processes its tests start
(command-line runs, workers) refuse keras, tensorflow, jax and torch as the test process does: see tiers.py.
"""

import tiers

tiers.install()
