"""The bisection's stages: each takes a :class:`~..context.Context` and returns a :class:`~..records.StageReport`.

``runtime`` (batch size, batch composition, dtype, compilation, device), ``inputs`` (swaps,
interventions and convention fixes per input, ddmin over inputs), ``several`` (changes on several inputs
combined), ``pairing`` (inputs whose samples are misaligned with each other), ``samples`` (which samples
cause the failure), and the ``criterion`` check (does the user's criterion fit the model's outputs at all).
"""
