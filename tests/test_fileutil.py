"""Atomic writers: no half-written file, the permissions of a plain write, no global side effect at import."""

import os
import stat
import subprocess
import sys

import pytest

from ptyanalysis import fileutil


def test_import_does_not_touch_the_umask():
    code = ("import os\n"
            "def refuse(*a):\n    raise AssertionError('os.umask called at import')\n"
            "os.umask = refuse\n"
            "import ptyanalysis.fileutil\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_files_and_dirs_get_the_permissions_a_plain_write_gives(tmp_path, umask):
    code = (f"import os, sys\nfrom pathlib import Path\nos.umask({umask})\n"
            "from ptyanalysis import fileutil\n"
            "root = Path(sys.argv[1])\n"
            "fileutil.write_text(root / 'a.txt', 'x')\n"
            "with fileutil.atomic_dir(root / 'd') as d:\n    (d / 'f').write_text('y')\n"
            "(root / 'plain.txt').write_text('z')\n(root / 'plaind').mkdir()\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    assert mode(tmp_path / "a.txt") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert mode(tmp_path / "d") == mode(tmp_path / "plaind") == 0o777 & ~umask


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "t.json"
    fileutil.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), fileutil.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]
    with pytest.raises(RuntimeError), fileutil.atomic_dir(tmp_path / "dir") as d:
        (d / "x").write_text("x")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


def test_write_netcdf_is_atomic_and_errors_name_the_file(tmp_path):
    import xarray as xr

    from ptyanalysis.errors import PtyAnalysisError
    from ptyanalysis.fileutil import write_netcdf

    ds = xr.Dataset({"v": ("x", [1.0, 2.0])}, attrs={"parameters": "{}"})
    path = write_netcdf(tmp_path / "r.nc", ds)
    assert xr.load_dataset(path, engine="h5netcdf")["v"].values.tolist() == [1.0, 2.0]
    bad = xr.Dataset({"v": ("x", [1.0])}, attrs={"nested": {"not": "allowed"}})  # netCDF refuses dict attrs
    with pytest.raises(PtyAnalysisError, match="bad.nc"):
        write_netcdf(tmp_path / "bad.nc", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path):
    from ptyanalysis.errors import PtyAnalysisError
    from ptyanalysis.fileutil import check_output_dir

    f = tmp_path / "taken"
    f.write_text("keep me")
    with pytest.raises(PtyAnalysisError, match="is a file, not a folder"):
        check_output_dir(f)
    with pytest.raises(PtyAnalysisError, match=r"--out .*sub: .*taken is a file"):
        check_output_dir(f / "sub")
    assert f.read_text() == "keep me"
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_output_dir(None) is None
