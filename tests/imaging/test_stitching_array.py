"""The array-backend stitching path (the GPU code) on the CPU: blocks, clipping, host staging, stand-in streams."""

import contextlib

import numpy as np
import pytest

from ptyanalysis.imaging import stitching
from ptyanalysis.imaging.stitching import (
    METHODS,
    ArrayBackend,
    Stitcher,
    _even_block,
    _HostStaging,
    gpu_backend,
    stitch,
)


def _case(n=240, N=12, seed=11, cplx=True):
    """Patches and positions on a dense scan, integer positions mixed in (bilinear weights of 0)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(8, 52, size=(n, 2))
    pos[::5] = np.round(pos[::5])
    pos[1::7, 0] = np.round(pos[1::7, 0])  # integer row, fractional column
    patches = rng.standard_normal((n, N, N)).astype(np.float32)
    if cplx:
        patches = (patches + 1j * rng.standard_normal((n, N, N))).astype(np.complex64)
    return patches, pos


def _frames(pos, N, method):
    """A derived frame (every patch inside: the spare row/col takes the zero-weight spill) and a clipping one."""
    origin, shape = stitching.scan_frame(pos, N, method=method)
    return [{"canvas_shape": shape, "origin": origin},
            {"canvas_shape": (37, 41), "origin": (14, 9)}]  # patches off every edge


def _same(method, exact):
    if exact and method != "fourier":  # numpy's and PyTorch's FFTs differ in round-off
        return np.testing.assert_array_equal
    return lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=3e-5)


def _stitch_chunks(P, pos, be, chunk, canvas_shape, origin, threads=None, **kw):
    """Stitch through one Stitcher chunk by chunk (``stitch`` itself takes host arrays only)."""
    st = Stitcher(canvas_shape, origin, P.shape[1], backend=be, threads=threads, **kw)
    for s in range(0, P.shape[0], chunk):
        st.add(P[s:s + chunk], pos[s:s + chunk])
    return st, st.result()


def _backends():
    out = [ArrayBackend("numpy")]
    try:
        import torch  # noqa: F401
    except ImportError:
        return out
    return out + [ArrayBackend("torch", "cpu")]


def _cpu_backend(name, request):
    """The array backend ``name`` on the CPU; PyTorch's comes through the ``torch`` fixture (skipped without it)."""
    if name == "numpy":
        return ArrayBackend("numpy")
    request.getfixturevalue(name)
    return ArrayBackend(name, "cpu")


# the same tests for each CPU array backend: numpy (fast), PyTorch (tf: the backend is a framework)
CPU_BACKENDS = [pytest.param("numpy", id="numpy (cpu)"),
                pytest.param("torch", id="torch (cpu)", marks=pytest.mark.tf)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("be", CPU_BACKENDS)
def test_array_path_equals_the_kernel_in_many_blocks_and_clipped(method, be, monkeypatch, request):
    # numpy and PyTorch on the CPU add in patch order: bit-identical to the CPU kernel
    be = _cpu_backend(be, request)
    monkeypatch.setattr(stitching, "_ARRAY_BLOCK", 7)  # several blocks per chunk, uneven last one
    patches, pos = _case()
    same = _same(method, exact=True)
    for frame in _frames(pos, 12, method):
        for crop in (None, 9):
            kw = dict(method=method, crop=crop, **frame)
            ref = stitch(patches, pos, backend="numpy", **kw)
            got = stitch(patches, pos, backend=be, chunk_size=50, **kw)
            assert got.backend == be.label and got.n_clipped == ref.n_clipped
            same(got.image, ref.image)
            np.testing.assert_array_equal(got.coverage, ref.coverage)
        # the raw sum too
        st = Stitcher(ref.shape, ref.origin, 12, method=method, backend=be)
        st.add(patches, pos)
        ks = Stitcher(ref.shape, ref.origin, 12, method=method)
        ks.add(patches, pos)
        same(st.weighted_sum(), ks.weighted_sum())
        same(st.result(normalise=False).image, ks.weighted_sum())
    # real patches on a real canvas
    ref = stitch(patches.real, pos, method=method, backend="numpy", **_frames(pos, 12, method)[1])
    got = stitch(patches.real, pos, method=method, backend=be, **_frames(pos, 12, method)[1])
    assert got.image.dtype == np.float32
    same(got.image, ref.image)


@pytest.mark.parametrize("method", METHODS)
def test_torch_tensors_and_numpy_patches_give_the_kernel_result(method, monkeypatch, torch):
    monkeypatch.setattr(stitching, "_ARRAY_BLOCK", 16)
    be = ArrayBackend("torch", "cpu")
    patches, pos = _case(seed=12)
    same = _same(method, exact=True)
    for frame in _frames(pos, 12, method):
        ref = stitch(patches, pos, method=method, backend="numpy", **frame)
        st = Stitcher(ref.shape, ref.origin, 12, method=method, backend=be)
        st.add(torch.from_numpy(patches[:100]), pos[:100])  # native tensors: used where they are
        st.add(patches[100:170], pos[100:170])  # numpy: the host path (no copy: contiguous, same dtype)
        st.add(patches[170:].astype(np.complex128)[..., None], pos[170:])  # host path, cast while staged
        res = st.result()
        same(res.image, ref.image)
        np.testing.assert_array_equal(res.coverage, ref.coverage)


@pytest.mark.parametrize("method", METHODS)
def test_staged_host_path_equals_the_device_path(method, monkeypatch, torch):
    # small blocks and small per-thread copies: several staged blocks, each copied by several threads
    monkeypatch.setattr(stitching, "_ARRAY_BLOCK", 24)
    monkeypatch.setattr(stitching, "_STAGE_BYTES_PER_THREAD", 1024)
    be = ArrayBackend("torch", "cpu")
    patches, pos = _case(n=300, N=16, seed=13)
    for frame in _frames(pos, 16, method):
        kw = dict(method=method, crop=11, chunk=130, **frame)  # a crop: staged blocks are copies
        st_dev, dev = _stitch_chunks(torch.from_numpy(patches), pos, be, **kw)
        assert st_dev._staging is None  # tensors: no staging
        st, host = _stitch_chunks(patches, pos, be, threads=3, **kw)
        assert st._staging is not None and st._staging._host[0] is not None  # the staging buffers were used
        np.testing.assert_array_equal(host.image, dev.image)
        np.testing.assert_array_equal(host.coverage, dev.coverage)
        ref = stitch(patches, pos, method=method, crop=11, backend="numpy", **frame)
        _same(method, exact=True)(host.image, ref.image)


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_the_cuda_staging_pipeline_with_stand_in_streams(method, monkeypatch, torch):
    """The page-locked, two-stream path of :class:`_HostStaging`, run on the CPU with stand-in streams/events.

    Checks the result and the order of the stream operations: a host buffer is
    refilled only after its copy to the device was waited for, the device copy
    waits for the arithmetic that last read its buffer, and the arithmetic waits
    for the copy.
    """
    log = []

    class Event:
        def record(self, stream=None):
            log.append(("record", self, stream))

        def synchronize(self):
            log.append(("sync", self, None))

    class Stream:
        def __init__(self, *args, **kw):
            pass

        def wait_event(self, event):
            log.append(("wait", self, event))

    compute = Stream()
    current = [compute]

    @contextlib.contextmanager
    def stream(s):
        current.append(s)
        try:
            yield
        finally:
            current.pop()

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "stream", stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current[-1])
    monkeypatch.setattr(stitching, "_ARRAY_BLOCK", 20)
    be = ArrayBackend("torch", "cpu")
    patches, pos = _case(seed=14)
    ref = stitch(patches, pos, method=method, backend="numpy")
    st = Stitcher(ref.shape, ref.origin, 12, method=method, backend=be)
    st._staging = stage = _HostStaging(be, st.M, st.dtype, streams=True)
    chunks = [(0, 90), (90, 100), (100, 240)]
    for s, e in chunks:
        st.add(patches[s:e], pos[s:e])
    np.testing.assert_array_equal(st.result().image, ref.image)
    # the expected sequence: begin(i + 1) (wait until its host buffer was read out) before finish(i)
    copied, consumed, side = stage._copied, stage._consumed, stage._stream
    expected, slot = [], 0
    for s, e in chunks:
        n = e - s
        b = _even_block(n, 20)
        slots = []
        for _ in range(0, n, b):
            slots.append(slot)
            slot ^= 1
        for i, k in enumerate(slots):
            expected.append(("sync", copied[k], None))
            if i:
                j = slots[i - 1]
                expected += [("wait", side, consumed[j]), ("record", copied[j], side),
                             ("wait", compute, copied[j]), ("record", consumed[j], compute)]
        j = slots[-1]
        expected += [("wait", side, consumed[j]), ("record", copied[j], side),
                     ("wait", compute, copied[j]), ("record", consumed[j], compute)]
    assert log == expected


def test_bilinear_corner_scatters_agree_to_round_off(monkeypatch, torch):
    monkeypatch.setattr(stitching, "_BILINEAR_CORNERS", True)
    monkeypatch.setattr(stitching, "_ARRAY_BLOCK", 32)
    patches, pos = _case(seed=15)
    for be in _backends():
        for frame in _frames(pos, 12, "bilinear"):  # the clipped frame mixes in the one-scatter split
            ref = stitch(patches, pos, method="bilinear", backend="numpy", **frame)
            got = stitch(patches, pos, method="bilinear", backend=be, **frame)
            np.testing.assert_allclose(got.image, ref.image, rtol=0, atol=3e-5)
            np.testing.assert_array_equal(got.coverage, ref.coverage)


def test_host_memory_is_not_device_memory_for_a_gpu_backend(torch):
    t = torch.zeros((2, 4, 4))
    assert ArrayBackend("torch", "cuda").native(t) is None  # a CPU tensor is staged like numpy
    assert ArrayBackend("torch", "cpu").native(t) is t
    assert ArrayBackend("torch", "cpu").native(np.zeros((2, 4, 4))) is None


@pytest.mark.fast
def test_block_sizes():
    for n in (1, 7, 100, 4096, 20000):
        for most in (1, 3, 1000, 4096, 10**6):
            b = _even_block(n, most)
            nb = -(-n // b)
            assert 1 <= b <= max(1, most) and nb == -(-n // max(1, most))
            assert b * (nb - 1) < n <= b * nb  # no empty or tiny trailing block
    st = Stitcher((600, 600), (0, 0), 64, method="bilinear", backend=ArrayBackend("numpy"))
    assert st._block_bytes() * 2000 < stitching._ARRAY_BLOCK_BYTES  # 64 x 64 complex64: thousands per block


@pytest.mark.tf  # a GPU array backend: CuPy or PyTorch
@pytest.mark.skipif(gpu_backend() is None, reason="no GPU array backend (CuPy or PyTorch with a GPU)")
@pytest.mark.parametrize("method", METHODS)
def test_gpu_staged_and_device_paths_agree_with_the_kernel(method, monkeypatch):
    be = gpu_backend()
    monkeypatch.setattr(stitching, "_ARRAY_BLOCK", 64)
    patches, pos = _case(n=600, N=16, seed=16)
    for frame in _frames(pos, 16, method):
        ref = stitch(patches, pos, method=method, backend="numpy", **frame)
        _, host = _stitch_chunks(patches, pos, be, chunk=250, method=method, **frame)
        _, dev = _stitch_chunks(be.asarray(patches), pos, be, chunk=250, method=method, **frame)
        for got in (host, dev):
            np.testing.assert_allclose(got.image, ref.image, rtol=0, atol=3e-5)
            np.testing.assert_allclose(got.coverage, ref.coverage, rtol=0, atol=1e-9)
            np.testing.assert_array_equal(got.coverage == 0, ref.coverage == 0)
