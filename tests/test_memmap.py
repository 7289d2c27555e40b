"""Reading memory maps without holding them (ptyanalysis.memmap) and the datasets that use it."""

import numpy as np
import psutil
import pytest

from ptyanalysis import io as pio
from ptyanalysis import memmap as mm


@pytest.fixture
def mapped(tmp_path):
    a = np.arange(40 * 6 * 5, dtype=np.float32).reshape(40, 6, 5)
    p = tmp_path / "a.npy"
    np.save(p, a)
    return a, np.load(p, mmap_mode="r")


def test_mapped_rows_index_as_the_rows_they_stand_for(mapped):
    a, m = mapped
    idx = np.array([3, 1, 7, 8, 9, 30, -1])
    rows = mm.MappedRows(m, idx)
    want = a[idx]
    assert rows.shape == want.shape and rows.dtype == want.dtype and len(rows) == 7 and rows.ndim == 3
    assert rows.nbytes == want.nbytes and rows.size == want.size
    for key in (0, -1, slice(1, 5), slice(None, None, 2), np.array([4, 0, 0]), np.array([[1, 2], [3, 4]]),
                (np.array([2, 5]), 1), (slice(2, 4), slice(None), 3), (1, 2, 3), np.arange(7) % 2 == 0,
                (Ellipsis, 0)):
        np.testing.assert_array_equal(rows[key], want[key])
    np.testing.assert_array_equal(np.asarray(rows), want)
    np.testing.assert_array_equal(np.asarray(rows, dtype=np.float64), want.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(rows.subset([6, 0])), want[[6, 0]])
    with pytest.raises(IndexError, match="40 rows"):
        mm.MappedRows(m, [0, 40])


def test_blocks_and_taken_rows_are_the_array(mapped, monkeypatch):
    a, m = mapped
    monkeypatch.setattr(mm, "BLOCK_BYTES", 3 * 6 * 5 * 4)  # three rows a block
    starts = []
    for start, block in mm.row_blocks(m):
        np.testing.assert_array_equal(block, a[start:start + len(block)])
        starts.append(start)
    assert starts == list(range(0, 40, 3))
    idx = np.array([39, 0, 5, 5, 12, 2, 17])
    np.testing.assert_array_equal(mm.take_rows(m, idx), a[idx])
    np.testing.assert_array_equal(mm.take_rows(a, idx), a[idx])  # plain arrays too
    mm.release_pages(a)  # not a map: nothing to do


def test_released_pages_leave_the_resident_set(tmp_path):
    n = 96 << 20
    p = tmp_path / "big.npy"
    np.lib.format.open_memmap(p, mode="w+", dtype=np.uint8, shape=(n,))[:] = 1
    m = np.load(p, mmap_mode="r")
    proc = psutil.Process()
    before = proc.memory_info().rss
    assert int(m[:: 4096].sum()) == n // 4096  # touch every page
    touched = proc.memory_info().rss
    mm.release_pages(m[10:])  # a view releases its map's pages
    released = proc.memory_info().rss
    assert touched - before > n // 2, "reading through the map should have mapped its pages"
    assert touched - released > n // 2, "the pages should have left the resident set"
    assert int(m[:: 4096].sum()) == n // 4096  # and the data is still there


def _dataset(tmp_path, n=50, N=8):
    rng = np.random.default_rng(3)
    d = pio.PtychoData(diffraction=rng.random((n, N, N), np.float32), xcoords=rng.uniform(10, 40, n),
                       ycoords=rng.uniform(10, 40, n), probe=np.ones((N, N), np.complex64),
                       obj=np.ones((64, 64), np.complex64),
                       Y=(rng.random((n, N, N)) + 1j * rng.random((n, N, N))).astype(np.complex64))
    p = tmp_path / "d.npz"
    pio.save_dataset(p, d)
    return d, p


def test_a_mapped_datasets_scattered_rows(tmp_path):
    full, p = _dataset(tmp_path)
    data = pio.load_dataset(p, mmap=True)
    assert isinstance(data.diffraction, np.memmap) and isinstance(data.Y, np.memmap)
    idx = np.array([4, 9, 10, 11, 30, 2])
    sub = data.subset(idx)
    # diffraction is read into memory; Y stays unread until indexed, and reads the right rows
    assert type(sub.diffraction) is np.ndarray
    assert isinstance(sub.Y, mm.MappedRows)
    np.testing.assert_array_equal(sub.diffraction, full.diffraction[idx])
    np.testing.assert_array_equal(sub.Y[[1, 5]], full.Y[idx][[1, 5]])
    np.testing.assert_array_equal(pio.ground_truth_patches(sub, [0, 3]), full.Y[idx][[0, 3]])
    again = sub.subset([5, 0])
    assert isinstance(again.Y, mm.MappedRows)
    np.testing.assert_array_equal(np.asarray(again.Y), full.Y[idx[[5, 0]]])
    np.testing.assert_array_equal(again.diffraction, full.diffraction[idx[[5, 0]]])
    pio.validate_dataset(sub)  # checks scan MappedRows block by block
    q = tmp_path / "sub.npz"
    pio.save_dataset(q, again)
    np.testing.assert_array_equal(pio.load_dataset(q).Y, full.Y[idx[[5, 0]]])
    # consecutive rows stay views of the file
    run = data.subset(slice(5, 20))
    assert isinstance(run.diffraction, np.memmap) and isinstance(run.Y, np.memmap)
