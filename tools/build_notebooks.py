"""Build the committed notebooks from their sources, and prepare them for nbval (``make notebooks``, ``make test``).

The sources are the Jupytext percent-format files shipped in the package
(``ptyanalysis/templates/<name>.py``). Two commands:

``build [NAME ...]``
    Execute each source with the package's runner
    (:func:`ptyanalysis.pipeline.notebook.execute`) on the ci-size study,
    with the parameters of ``params/ci_<name>.yaml`` (paths relative to
    ``notebooks/``, the kernel runs there), then write
    ``notebooks/<name>.ipynb`` as a user should find it: the outputs kept
    (nbval compares them), papermill's injected-parameters cell removed (the
    parameters cell shows the defaults a user edits), execution counts
    renumbered, papermill's and nbclient's run metadata dropped, and no
    machine path anywhere (refused, naming the cell, when one is left).

``prepare-nbval OUTDIR``
    Copy each committed notebook to ``OUTDIR`` with the ci parameters
    injected after its parameters cell (papermill ``--prepare-only``; paths
    made absolute against ``notebooks/``) and its stored outputs kept: nbval
    then re-executes the copies and compares the checked cells with the
    committed outputs.

Usage: ``python tools/build_notebooks.py build [NAME ...]`` or
``python tools/build_notebooks.py prepare-nbval build/nbval``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
PARAMS = ROOT / "params"
#: A machine path in a notebook's text (sources, text outputs, metadata; images are not text).
MACHINE_PATH = re.compile(r"/(?:work|tmp|home|root)(?:/|\b)")
#: What the repository's checklist greps the committed file for.
HOOK_PATH = re.compile(r'"/(?:work|tmp|home|root)/')
#: Notebook metadata kept in a committed notebook.
KEEP_METADATA = ("kernelspec", "language_info", "jupytext")


def ci_parameters(name: str) -> dict:
    """``params/ci_<name>.yaml`` (empty when there is none)."""
    from ptyanalysis.pipeline import notebook as nbk

    path = PARAMS / f"ci_{name}.yaml"
    return nbk.load_params(path) if path.exists() else {}


def clean(nb):
    """The executed notebook as committed: no injected cell, no run metadata, counts renumbered, ids from the sources."""
    nb.cells = [c for c in nb.cells if "injected-parameters" not in (c.metadata.get("tags") or [])]
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_METADATA}
    if "jupytext" in nb.metadata:
        nb.metadata["jupytext"] = {"formats": nb.metadata["jupytext"].get("formats")}
    n, seen = 0, set()
    for c in nb.cells:
        # a cell's id follows from its source (random ids would change every cell of every rebuild's diff)
        base = hashlib.sha1(c.get("source", "").encode()).hexdigest()[:8]
        c.id = base if base not in seen else f"{base}-{len(seen)}"
        seen.add(c.id)
        c.metadata.pop("papermill", None)
        c.metadata.pop("execution", None)
        if c.cell_type != "code":
            continue
        n += 1
        c.execution_count = n
        for o in c.get("outputs", []):
            if "execution_count" in o:
                o["execution_count"] = n
    return nb


def machine_paths(nb) -> list[str]:
    """Where a notebook holds a machine path: ``"cell 3: /tmp/..."`` lines (metadata as ``"metadata"``)."""
    import nbformat

    def texts(cell):
        yield cell.get("source", "")
        for o in cell.get("outputs", []):
            yield o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
            yield "\n".join(o.get("traceback", []))
            for mime, v in (o.get("data") or {}).items():
                if not mime.startswith("image/"):
                    yield v if isinstance(v, str) else json.dumps(v)

    found = []
    for i, c in enumerate(nb.cells):
        for text in texts(c):
            m = MACHINE_PATH.search(text)
            if m:
                found.append(f"cell {i}: ...{text[max(0, m.start() - 60):m.end() + 60]}...")
                break
    if MACHINE_PATH.search(json.dumps(nb.metadata)):
        found.append("metadata")
    if not found and HOOK_PATH.search(nbformat.writes(nb)):
        found.append("the file (base64 data that looks like a path?)")
    return found


def build(name: str) -> Path:
    """Execute the source of ``name`` on the ci study and write ``notebooks/<name>.ipynb``."""
    import nbformat

    from ptyanalysis.fileutil import atomic_path
    from ptyanalysis.pipeline import notebook as nbk

    params = ci_parameters(name)
    manifest = (NB_DIR / str(params.get("hub", "../build/ci_hub")) / "analysis" / "comparison_manifest.json").resolve()
    if manifest.exists() and json.loads(manifest.read_text()).get("n_failed"):
        raise SystemExit(f"{manifest}: the ci study's comparison grid has failed jobs; the committed notebooks would "
                         "show them. Rerun it first: ptyanalysis demo --size ci --hub build/ci_hub --prepare-only --grid")
    with tempfile.TemporaryDirectory(prefix="build-notebooks-") as td:
        executed = nbk.execute(name, Path(td) / f"{name}.ipynb", params, cwd=NB_DIR, notebook_folder=NB_DIR,
                               progress=sys.stderr.isatty())
        nb = clean(nbformat.read(executed, as_version=4))
    bad = machine_paths(nb)
    if bad:
        raise SystemExit(f"{name}: the executed notebook holds machine paths (print paths relative to the hub, "
                         "or not at all):\n  " + "\n  ".join(bad))
    path = NB_DIR / f"{name}.ipynb"
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)
    return path


def prepare_nbval(outdir: Path, names) -> list[Path]:
    """Copies of the committed notebooks with the ci parameters injected (outputs kept) for nbval."""
    import papermill as pm

    from ptyanalysis.fileutil import atomic_path
    from ptyanalysis.pipeline import notebook as nbk

    out = []
    for name in names:
        src = NB_DIR / f"{name}.ipynb"
        declared = nbk.declared_parameters(src)
        params = ci_parameters(name)
        nbk.validate_parameters(src, params, source=f"params/ci_{name}.yaml", declared=declared)
        for k, v in params.items():  # paths of params/ are relative to notebooks/
            if declared[k].kind == "path" and v is not None:
                params[k] = str(nbk.check_value(declared[k], v, base=NB_DIR)[0])
        dest = Path(outdir) / f"{name}.ipynb"
        with atomic_path(dest) as tmp:  # papermill --prepare-only: parameters injected, outputs kept
            pm.execute_notebook(str(src), str(tmp), parameters=params, prepare_only=True, kernel_name="python3",
                                progress_bar=False)
        out.append(dest)
    return out


def main(argv=None) -> int:
    """Run ``build`` or ``prepare-nbval``; return the exit status."""
    from ptyanalysis.pipeline import notebook as nbk

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute the sources on the ci study and write notebooks/*.ipynb")
    b.add_argument("names", nargs="*", help="notebook names (default: every source)")
    q = sub.add_parser("prepare-nbval", help="copies of notebooks/*.ipynb with the ci parameters, for nbval")
    q.add_argument("outdir", type=Path)
    q.add_argument("names", nargs="*")
    args = p.parse_args(argv)
    names = args.names or list(nbk.template_names())
    if args.command == "build":
        for name in names:
            print(f"build {name} ...", flush=True)
            print(f"wrote {build(name).relative_to(ROOT)}", flush=True)
    else:
        for path in prepare_nbval(args.outdir, names):
            print(f"prepared {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
