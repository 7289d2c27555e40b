"""The Phase G report notebook: executing it and rendering a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from .. import hub as _hub
from ..errors import PtyAnalysisError
from ..fileutil import write_text
from ..phase_g.schema import FILES

# --------------------------------------------------------------------------- notebook + HTML


def execute_report_notebook(notebook, hub, out_ipynb=None, kernel_name: str = "python3", timeout_s: int | None = 1800) -> Path:
    """Execute the Phase G notebook (parameter ``hub``) with the package's one papermill runner.

    Parameters
    ----------
    notebook : str or Path
        The notebook (:func:`default_notebook`: the package's
        ``03_phase_g_figures`` source); an ``.ipynb`` or a Jupytext ``.py``
        whose parameters cell declares ``hub``.
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
        The executed notebook (written atomically; a failed run is kept as
        ``phase_g_report.failed.ipynb``, see
        :func:`ptyanalysis.pipeline.notebook.execute`).
    """
    from ..pipeline import notebook as nbk

    hub = Path(hub).resolve()
    source = nbk.notebook_source(notebook)
    declared = nbk.declared_parameters(source)
    if "hub" not in declared:
        raise PtyAnalysisError(f"{source}: the cell tagged 'parameters' must define `hub` "
                               f"(found: {', '.join(declared) or 'none'})")
    # phase_g has just written the artifacts: the notebook only shows them (when it can be told so)
    params = {"hub": str(hub), **({"write_artifacts": False} if "write_artifacts" in declared else {})}
    out = Path(out_ipynb) if out_ipynb else _hub.analysis_root(hub) / FILES["executed_notebook"]
    return nbk.execute(source, out, params, cwd=out.parent, kernel=kernel_name, timeout=timeout_s)


def render_html(executed_notebook_path, out_html, title: str = "Phase G report") -> Path:
    """Render an executed notebook as one self-contained HTML file.

    Parameters
    ----------
    executed_notebook_path : str or Path
        An executed ``.ipynb``.
    out_html : str or Path
        Destination (written atomically); images are embedded, code cells
        are left out, nothing is loaded from the network (:func:`report_exporter`).
    title : str
        The page title.

    Returns
    -------
    Path
        ``out_html``.
    """
    import nbformat

    src = Path(executed_notebook_path)
    if not src.exists():
        raise PtyAnalysisError(f"executed notebook not found: {src}; run the Phase G notebook first")
    nb = nbformat.read(src, as_version=4)
    nb.metadata["title"] = title
    exporter = report_exporter()
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(src.parent)}})
    return write_text(out_html, body)


#: nbconvert template of the report: JupyterLab's look, no code cells, and none of the scripts the
#: stock template loads from a CDN (require.js, MathJax, mermaid, widgets), so the page opens offline.
REPORT_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block extra_css -%}
<style type="text/css">
.pty-summary { border: 2px solid #1e88e5; border-radius: 6px; padding: 0.6em 1.2em; background: #f5f9ff; }
.pty-summary h2 { margin-top: 0.2em; }
.pty-table { border-collapse: collapse; font-size: 0.9em; }
.pty-table th, .pty-table td { border: 1px solid #bbb; padding: 2px 6px; text-align: left !important; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
</style>
{%- endblock extra_css -%}
"""


def report_exporter():
    """The nbconvert HTML exporter of the report (:data:`REPORT_TEMPLATE`; inputs and prompts excluded, images embedded)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(extra_loaders=[DictLoader({"ptyanalysis_report.html.j2": REPORT_TEMPLATE})],
                            template_file="ptyanalysis_report.html.j2", exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True)
    # cells tagged REPORT_HIDE_TAG (checks kept for nbval, parameter echoes) are not part of the report
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={REPORT_HIDE_TAG}, enabled=True),
                                   enabled=True)
    return exporter


#: Cells with this tag are executed but left out of the HTML report.
REPORT_HIDE_TAG = "report-hide"


def default_notebook() -> Path:
    """The Phase G notebook shipped with the package (its Jupytext source ``03_phase_g_figures.py``).

    Returns
    -------
    Path
        Found with :func:`ptyanalysis.pipeline.notebook.template_path` (``importlib.resources``),
        so a plain ``pip install`` has it too.
    """
    from ..pipeline.notebook import template_path

    return template_path("03_phase_g_figures")


