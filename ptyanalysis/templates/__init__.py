"""The notebooks' sources: Jupytext percent-format ``.py`` files, one per notebook, shipped as package data.

Found at run time with :func:`ptyanalysis.pipeline.notebook.template_path`
(``importlib.resources``); ``make notebooks`` builds ``notebooks/*.ipynb`` from
them. Each is paired with its notebook (Jupytext ``formats`` metadata), so an
edit saved in JupyterLab from ``notebooks/`` is written back here. They are
notebooks, not modules: nothing imports them.
"""
