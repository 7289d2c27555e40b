"""The command line a newcomer reads: --version, help without markup, error messages naming real commands."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ptyanalysis
from ptyanalysis import cli
from ptyanalysis import hub as hubs
from ptyanalysis.conventions import arm_status_text, zero_text
from ptyanalysis.errors import PtyAnalysisError

PACKAGE = Path(ptyanalysis.__file__).parent
MARKUP = re.compile(r"``|:(?:class|func|mod|data|meth|attr):`")
#: Words that follow "ptyanalysis " in messages without naming a command (the package, not the CLI).
NOT_COMMANDS = {"comparison", "convention", "layout", "reference"}


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ptyanalysis {ptyanalysis.__version__}"


def test_help_has_no_rest_markup():
    parser = cli.build_parser()
    texts = [parser.format_help()]
    sub = next(a for a in parser._actions if a.dest == "command")
    texts += [p.format_help() for p in sub.choices.values()]
    assert len(texts) == len(cli.COMMANDS) + 1
    for t in texts:
        assert not MARKUP.search(t), t
    assert "--version" in texts[0]


def test_plain_text():
    assert cli.plain_text("run ``ptyanalysis grid`` with :func:`~ptyanalysis.pipeline.grid.run_grid`") == \
        "run ptyanalysis grid with run_grid"
    assert cli.plain_text(":mod:`ptyanalysis.hub`") == "ptyanalysis.hub"


def _message_strings():
    """(file, line, text) of every string literal of the package that is not a docstring."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    docs.add(id(first.value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                yield path, node.lineno, node.value, False
            elif id(node) in docs:
                yield path, node.lineno, node.value, True


def test_every_suggested_command_exists():
    """Any 'ptyanalysis WORD' in a message (and any backquoted one in a docstring) names a real subcommand."""
    assert not NOT_COMMANDS & set(cli.COMMANDS)
    bad, seen, io_hint = [], 0, False
    for path, line, text, is_doc in _message_strings():
        io_hint |= path.name == "io.py" and "ptyanalysis simulate" in text  # the truncated-file hint
        pattern = r"`+ptyanalysis ([a-z][a-z_-]*)" if is_doc else r"ptyanalysis ([a-z][a-z_-]*)"
        for m in re.finditer(pattern, text):
            seen += 1
            word = m.group(1)
            if word not in cli.COMMANDS and (is_doc or word not in NOT_COMMANDS):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: 'ptyanalysis {word}'")
    assert seen > 10 and io_hint  # the scan does find the suggestions
    assert not bad, "messages suggest commands that do not exist:\n" + "\n".join(bad)


def test_zero_arm_text():
    assert arm_status_text("zero", {"output_stats": {"nonzero": 0, "size": 2629632}}) == \
        "zero (all 2,629,632 outputs are 0)"
    assert zero_text() == "zero (all outputs are 0)"
    assert arm_status_text("missing", {"error": "/x does not exist"}) == "missing (/x does not exist)"
    assert arm_status_text("ok") == "ok"


def _tiny_hub(root: Path) -> Path:
    for d in (1000, 10000):
        p = hubs.dataset_path(root, d, "train")
        p.parent.mkdir(parents=True)
        np.savez(p, x=np.zeros(1))
        np.savez(hubs.dataset_path(root, d, "test"), x=np.zeros(1))
        (root / "data" / "phase_e" / f"dose_{d}" / "dense" / "gs2").mkdir(parents=True)
    return root


def test_hub_grid_and_check(tmp_path):
    hub = _tiny_hub(tmp_path / "hub")
    assert hubs.hub_grid(hub) == {"doses": [1000, 10000], "views": ["dense"], "splits": ["test", "train"]}
    hubs.check_in_hub(hub, 1000, "dense", "test")
    with pytest.raises(PtyAnalysisError) as exc:
        hubs.check_in_hub(hub, 500, "sparce", "val")
    msg = str(exc.value)
    assert "dose 500 (the hub has 1000, 10000)" in msg and "'sparce' (the hub has dense)" in msg
    assert "split 'val' (the hub has test, train)" in msg
    with pytest.raises(PtyAnalysisError, match="no study data"):
        hubs.check_in_hub(tmp_path / "empty", 1000)


def test_compare_rejects_what_the_hub_lacks(tmp_path):
    """Exit status 2 and a message listing the hub's doses and views, before any work."""
    hub = _tiny_hub(tmp_path / "hub")
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", "compare", str(hub), "--dose", "500", "--view", "sparce",
                        "--split", "test"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    assert "the hub has 1000, 10000" in r.stderr and "the hub has dense" in r.stderr
    assert "Traceback" not in r.stderr


def test_compare_help_documents_options():
    parser = cli.build_parser({"compare": cli.COMMANDS["compare"]})
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["compare"].format_help()
    for opt in ("--dose", "--view", "--split"):
        assert opt in text
    assert "checked against the hub" in text and "dense | sparse" in text


def test_filtered_stderr_drops_only_startup_lines(tmp_path):
    code = ("import os, sys\n"
            "from ptyanalysis.quiet import filtered_stderr\n"
            "with filtered_stderr():\n"
            "    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on. x\\n')\n"
            "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
            "    os.write(2, b'a real problem\\n')\n"
            "print('out')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0
    assert r.stderr == "a real problem\n"
    assert r.stdout == "out\n"


@pytest.mark.slow
def test_compare_exits_2_when_an_arm_is_missing(ci_hub, tmp_path):
    """A hub without models: the table names each missing arm and why, and the exit status is 2 (was 0, all NaN)."""
    hub = tmp_path / "no_models"
    (hub / "data").mkdir(parents=True)
    for part in ("phase_c", "phase_f"):
        (hub / "data" / part).symlink_to(Path(ci_hub) / "data" / part)
    dose = hubs.hub_grid(hub)["doses"][0]
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", "compare", str(hub), "--dose", str(dose), "--view", "dense",
                        "--split", "test"], capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 2, r.stderr
    assert "2 arm(s) could not be compared" in r.stderr and "ptyanalysis train" in r.stderr
    assert "missing (" in r.stdout and "gs2 does not exist" in r.stdout
    assert "oneDNN" not in r.stderr and "absl::InitializeLog" not in r.stderr  # TensorFlow's start-up lines filtered


def test_recorded_version_is_the_running_code():
    from ptyanalysis.provenance import software_versions

    assert software_versions()["ptyanalysis"] == ptyanalysis.__version__


def test_a_folder_that_is_not_a_hub_or_a_file_gets_exit_2_and_nothing_written(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["verify", str(empty)]) == 2
    assert "has no analysis/ folder" in capsys.readouterr().err and not any(empty.iterdir())
    f = tmp_path / "notes.txt"
    f.write_text("x")
    for cmd in (["phase-g", str(f)], ["verify", str(f)]):
        assert cli.main(cmd) == 2
        assert "is a file, not a study hub" in capsys.readouterr().err


def test_a_dot_keras_file_that_is_not_one_is_named_before_keras_is_imported(tmp_path):
    bad = tmp_path / "m.keras"
    bad.write_text("not a model")
    h5 = tmp_path / "old.keras"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    code = ("import sys\nfrom ptyanalysis.inference.loading import check_keras_file\n"
            "for p in sys.argv[1:]:\n    try:\n        check_keras_file(p)\n    except Exception as e:\n"
            "        print(e)\nprint('keras' in sys.modules, 'tensorflow' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code, str(bad), str(h5)], capture_output=True, text=True, timeout=120)
    lines = r.stdout.splitlines()
    assert "is not a Keras .keras file: it is not a zip archive" in lines[0]
    assert "an HDF5 file (a legacy .h5 model: rename it to .h5)" in lines[1]
    assert lines[2] == "False False"


def test_every_checked_choice_says_did_you_mean_before_any_heavy_import(tmp_path):
    """Bad choices of every kind exit 2 with the closest valid choice, and nothing heavy is imported for it."""
    hub = _tiny_hub(tmp_path / "hub")
    cases = {
        "phase-gg": "did you mean 'phase-g'?",
        f"compare {hub} --dose 1000 --view dnese --split test": "did you mean 'dense'?",
        f"compare {hub} --dose 1000 --view dense --split tset": "did you mean 'test'?",
        f"compare {hub} --dose 1000 --view dense --split test --placement per-member": "did you mean 'per_member'?",
        "bisect --model m --failing f --passing p --out o --feed trainde": "did you mean 'trained'?",
        "bisect --model m --failing f --passing p --out o --criterion al-zero": "did you mean 'all-zero'?",
        "demo --size stduy": "did you mean 'study'?",
        "train x --backend jxa": "did you mean 'jax'?",
    }
    code = ("import sys, shlex, contextlib, io\nfrom ptyanalysis import cli\nfor c in sys.argv[1:]:\n"
            "    err = io.StringIO()\n    with contextlib.redirect_stderr(err):\n"
            "        try:\n            rc = cli.main(shlex.split(c))\n        except SystemExit as e:\n"
            "            rc = e.code\n    print(rc, err.getvalue().strip().splitlines()[-1])\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code, *cases], capture_output=True, text=True, timeout=120, check=False)
    lines = r.stdout.splitlines()
    assert len(lines) == len(cases) + 1, r.stderr
    for line, (case, hint) in zip(lines, cases.items()):
        assert line.startswith("2 ") and hint in line, (case, line)
    assert lines[-1] == "[]"
