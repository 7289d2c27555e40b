"""Exceptions ptyanalysis raises for bad input.

:class:`PtyAnalysisError` carries a message meant for a person: it names the
file, the key, what was expected and what to do. The CLI prints it and exits
with status 2 (no traceback).
"""


class PtyAnalysisError(ValueError):
    """Bad input or an impossible request; the message says what and how to fix it."""


def closest(value, choices, *, cutoff: float = 0.6) -> str | None:
    """The choice closest to a mistyped ``value`` (:func:`difflib.get_close_matches`), or None.

    Parameters
    ----------
    value : object
        What the user gave (compared as text).
    choices : iterable
        The valid choices (compared as text).
    cutoff : float
        Minimum similarity in [0, 1].

    Returns
    -------
    str or None
    """
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(value, choices, *, cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the choice closest to ``value``, or ``""`` when none is close.

    The one "did you mean" of the package: every check of a choice (CLI options, hub doses / views / splits,
    notebook parameters, criteria, arm names, study sizes, backends) appends it to its message.
    """
    c = closest(value, choices, cutoff=cutoff)
    return f"; did you mean {c!r}?" if c is not None else ""
