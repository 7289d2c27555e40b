"""Figures without pyplot: the one way this package makes a matplotlib figure.

A figure made through ``matplotlib.pyplot`` is registered with pyplot's global figure
manager: in a notebook with inline figures it is shown once when the cell ends and once more as
the cell's value (the figure twice), and in a long-running process it stays in memory until
closed. A :class:`matplotlib.figure.Figure` made directly is shown only when it is the cell's
value (or ``display``-ed) and is freed like any object; saving works the same (``fig.savefig``).
"""

from __future__ import annotations


def new_figure(figsize, *, layout: str | None = "constrained"):
    """A matplotlib figure not registered with pyplot.

    Parameters
    ----------
    figsize : tuple of float
        Width and height in inches.
    layout : str or None
        Matplotlib layout engine (default ``"constrained"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout=layout)


def subplots(nrows: int = 1, ncols: int = 1, *, figsize, squeeze: bool = True, layout: str | None = None, **kwargs):
    """``pyplot.subplots`` without pyplot (:func:`new_figure`).

    Parameters
    ----------
    nrows, ncols : int
    figsize : tuple of float
    squeeze : bool
        As ``pyplot.subplots``.
    layout : str or None
        Matplotlib layout engine (default none, as ``pyplot.subplots``).
    **kwargs
        Passed to :meth:`matplotlib.figure.Figure.subplots`.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : Axes or numpy.ndarray of Axes
    """
    fig = new_figure(figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
