"""Reading memory-mapped arrays without holding them: blocks of rows, selected rows, released pages.

A study-size split is gigabytes (:func:`ptyanalysis.io.load_dataset` ``mmap=True`` maps its
``diffraction`` and ``Y`` onto the NPZ file). Pages read through a memory map stay mapped into
the process, so they count in its resident size (RSS) until the map is dropped, even though the
OS may reclaim them at will: a validation pass over a 1 GB file, or copying a view's rows out
of it, raised a comparison job's peak RSS by the whole file. The functions here read a mapped
array a block at a time and give each block's pages back (:func:`release_pages`) before the
next, so a scan raises the peak by one block. The pages stay in the OS's file cache: reading
them again costs a page-table fill, not a disk read.

* :func:`row_blocks`: ``(start, block)`` over the first axis, pages released after each block.
* :func:`take_rows`: rows ``index`` of an array as a new in-memory array, read block by block.
* :class:`MappedRows`: rows ``index`` of a memory map, read when asked (a view of
  non-consecutive rows that copies nothing until used).

Arrays that are not memory maps pass through all three unchanged in behaviour (no pages to
release).
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["BLOCK_BYTES", "MappedRows", "release_pages", "row_blocks", "take_rows"]

#: Bytes read per block by :func:`row_blocks` and :func:`take_rows` (at least one row).
BLOCK_BYTES = 16 << 20


def release_pages(arr) -> None:
    """Give a memory-mapped array's pages back: they leave this process's resident set.

    Parameters
    ----------
    arr : ndarray
        A :class:`numpy.memmap` or a view of one (numpy keeps the mapping on its views); anything
        else is left alone.

    Notes
    -----
    ``madvise(MADV_DONTNEED)`` on the whole read-only shared file mapping: the next access
    faults the pages in again from the OS's file cache. Where the platform lacks it, nothing
    happens (the pages are then released when the map is dropped).
    """
    m = getattr(arr, "_mmap", None)  # numpy.memmap's mmap.mmap, shared by its views
    if m is None or not hasattr(mmap, "MADV_DONTNEED") or not hasattr(m, "madvise"):
        return
    try:
        m.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):  # a closed map, or a kernel that refuses: the pages simply stay
        return


def _rows_per_block(arr) -> int:
    row = int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
    return max(1, BLOCK_BYTES // max(row, 1))


def row_blocks(arr, step: int | None = None):
    """Yield ``(start, block)`` over ``arr``'s first axis, releasing mapped pages after each block.

    Parameters
    ----------
    arr : ndarray or MappedRows
        At least 1-D.
    step : int, optional
        Rows per block (default: :data:`BLOCK_BYTES` worth).

    Yields
    ------
    start : int
    block : ndarray
        ``arr[start:start + step]`` as an in-memory array (valid until the next block is read:
        copy it to keep it).
    """
    step = int(step) if step else _rows_per_block(arr)
    for start in range(0, arr.shape[0], step):
        block = np.asarray(arr[start:start + step])
        yield start, block
        release_pages(arr)


def take_rows(arr, index) -> np.ndarray:
    """Rows ``index`` of ``arr`` as a new in-memory array, read block by block (pages released).

    Parameters
    ----------
    arr : ndarray or MappedRows
    index : array_like of int, shape (k,)

    Returns
    -------
    ndarray, shape (k,) + arr.shape[1:]
    """
    index = np.asarray(index, np.int64).reshape(-1)
    out = np.empty((index.size,) + tuple(arr.shape[1:]), arr.dtype)
    step = _rows_per_block(arr)
    for s in range(0, index.size, step):
        out[s:s + step] = arr[index[s:s + step]]
        release_pages(arr)
    return out


class MappedRows:
    """Rows ``index`` of a memory-mapped array, read when asked.

    A view of non-consecutive rows (a study's dense or sparse subsample of a split) that copies
    nothing until it is indexed: ``rows[i]``, ``rows[a:b]``, ``rows[idx]`` and ``rows[idx, ...]``
    read just those rows from the map (and release its pages); ``numpy.asarray(rows)`` reads them
    all, block by block. It has ``shape``, ``dtype``, ``ndim``, ``size``, ``nbytes`` and ``len``
    like the array it stands for, and is read-only.

    Parameters
    ----------
    base : numpy.memmap
        The mapped array (rows along its first axis).
    index : array_like of int, shape (k,)
        The rows, in order (negative values count from the end, as numpy's).
    """

    __slots__ = ("base", "index")

    def __init__(self, base, index):
        index = np.asarray(index, np.int64).reshape(-1)
        n = base.shape[0]
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"row indices range over [{index.min()}, {index.max()}] but the array has {n} rows")
        self.base = base
        self.index = np.where(index < 0, index + n, index)

    @property
    def shape(self) -> tuple:
        return (int(self.index.size),) + tuple(self.base.shape[1:])

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return int(self.index.size)

    def __repr__(self) -> str:
        return f"MappedRows(shape={self.shape}, dtype={self.dtype}, rows of a {self.base.shape} memory map)"

    def subset(self, index) -> MappedRows:
        """Rows ``index`` of these rows, still unread."""
        return MappedRows(self.base, self.index[np.asarray(index)])

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if first is Ellipsis:
            return np.asarray(self)[key]
        rows = self.index[first]
        if np.ndim(rows) == 0:
            out = np.array(self.base[int(rows)])
            release_pages(self.base)
            return out[rest] if rest else out
        out = take_rows(self.base, np.asarray(rows).reshape(-1)).reshape(np.shape(rows) + self.shape[1:])
        if rest:
            out = out[(slice(None),) * np.ndim(rows) + rest]
        return out

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("MappedRows cannot give an array without copying (its rows are read from a file)")
        out = take_rows(self.base, self.index)
        return out if dtype is None else out.astype(dtype, copy=False)
