"""The Phase G report notebook: executing it and rendering a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from ..errors import PtyAnalysisError
from ..fileutil import atomic_path, write_text
from ..phase_g.schema import FILES


# --------------------------------------------------------------------------- notebook + HTML


def execute_report_notebook(notebook, hub, out_ipynb=None, kernel_name: str = "python3", timeout_s: int | None = 1800) -> Path:
    """Execute the Phase G notebook with papermill (parameter ``hub``).

    Parameters
    ----------
    notebook : str or Path
        The notebook (``notebooks/03_phase_g_figures.ipynb``); its parameters
        cell must define ``hub``.
    hub : str or Path
        Study hub (passed as an absolute path).
    out_ipynb : str or Path, optional
        Executed notebook (default ``HUB/analysis/phase_g_report.ipynb``).
    kernel_name : str
        Jupyter kernel.
    timeout_s : int, optional
        Per-cell execution timeout.

    Returns
    -------
    Path
        The executed notebook (written atomically).
    """
    import papermill as pm

    notebook, hub = Path(notebook).resolve(), Path(hub).resolve()
    if not notebook.exists():
        raise PtyAnalysisError(f"Phase G notebook not found: {notebook}")
    declared = pm.inspect_notebook(str(notebook))
    if "hub" not in declared:
        raise PtyAnalysisError(f"{notebook}: the cell tagged 'parameters' must define `hub` (found: {', '.join(declared) or 'none'})")
    # phase_g has just written the artifacts: the notebook only shows them (when it can be told so)
    params = {"hub": str(hub), **({"write_artifacts": False} if "write_artifacts" in declared else {})}
    out = Path(out_ipynb) if out_ipynb else hub / "analysis" / FILES["executed_notebook"]
    with atomic_path(out) as tmp:
        pm.execute_notebook(str(notebook), str(tmp), parameters=params, kernel_name=kernel_name,
                            progress_bar=False, execution_timeout=timeout_s,
                            resources={"metadata": {"path": str(notebook.parent)}})
    return out


def render_html(executed_notebook_path, out_html) -> Path:
    """Render an executed notebook as one self-contained HTML file.

    Parameters
    ----------
    executed_notebook_path : str or Path
        An executed ``.ipynb``.
    out_html : str or Path
        Destination (written atomically); images are embedded.

    Returns
    -------
    Path
        ``out_html``.
    """
    import nbformat
    from nbconvert import HTMLExporter

    src = Path(executed_notebook_path)
    if not src.exists():
        raise PtyAnalysisError(f"executed notebook not found: {src}; run the Phase G notebook first")
    nb = nbformat.read(src, as_version=4)
    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(src.parent)}})
    return write_text(out_html, body)


def default_notebook() -> Path | None:
    """``notebooks/03_phase_g_figures.ipynb`` next to the package, if it exists."""
    p = Path(__file__).resolve().parents[1] / "notebooks" / "03_phase_g_figures.ipynb"
    return p if p.exists() else None


