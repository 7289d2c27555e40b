"""Exceptions ptyanalysis raises for bad input.

:class:`PtyAnalysisError` carries a message meant for a person: it names the
file, the key, what was expected and what to do. The CLI prints it and exits
with status 2 (no traceback).
"""


class PtyAnalysisError(ValueError):
    """Bad input or an impossible request; the message says what and how to fix it."""
