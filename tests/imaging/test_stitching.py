"""Stitching: round trips with extract, exactness (chunks, threads, backends), the study's reassembly, bad input."""

import itertools

import numpy as np
import pytest

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.imaging.stitching import (
    METHODS,
    ArrayBackend,
    Stitcher,
    _fourier_shift_block,
    _naive_reassemble,
    _row_bands,
    extract,
    gpu_backend,
    ptychopinn_reassemble,
    scan_frame,
    stitch,
)


def _complex_obj(shape=(160, 170), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex128)


def _smooth_obj(shape=(160, 170)):
    y, x = np.indices(shape, dtype=np.float64)
    amp = 1.0 + 0.3 * np.sin(2 * np.pi * x / 37.0) * np.cos(2 * np.pi * y / 29.0)
    ph = 0.8 * np.sin(2 * np.pi * (x + 0.5 * y) / 41.0)
    return amp * np.exp(1j * ph)


def _frame(obj, res):
    (r0, c0), (H, W) = res.origin, res.shape
    return obj[r0:r0 + H, c0:c0 + W]


@pytest.mark.parametrize("method", METHODS)
def test_integer_round_trip_is_exact(method):
    obj = _complex_obj()
    rng = np.random.default_rng(1)
    pos = rng.integers(20, 140, size=(150, 2)).astype(float)
    N = 24
    patches = extract(obj, pos, N, method=method)
    # the convention: patch at integer (r, c) is obj[r - N//2 : ..., c - N//2 : ...]
    r, c = (int(v) for v in pos[0])
    np.testing.assert_array_equal(patches[0], obj[r - N // 2:r - N // 2 + N, c - N // 2:c - N // 2 + N])
    res = stitch(patches, pos, method=method, backend="numpy", dtype=np.complex128)
    assert res.origin == scan_frame(pos, N, method=method)[0]
    m = res.coverage > 0
    np.testing.assert_allclose(res.image[m], _frame(obj, res)[m], rtol=0, atol=1e-12)
    assert np.all(res.image[~m] == 0)
    # integer coverage: a count of patches per pixel
    np.testing.assert_array_equal(res.coverage, np.round(res.coverage))


def test_single_patch_lands_where_the_convention_says():
    N = 8
    p = np.arange(N * N, dtype=np.float32).reshape(1, N, N)
    res = stitch(p, [[10, 20]], canvas_shape=(32, 32), origin=(0, 0), method="nearest", backend="numpy")
    np.testing.assert_array_equal(res.image[10 - N // 2:10 - N // 2 + N, 20 - N // 2:20 - N // 2 + N], p[0])
    assert res.coverage.sum() == N * N
    # derived canvas: bounding box starting at the patch corner
    res2 = stitch(p, [[10, 20]], method="nearest", backend="numpy")
    assert res2.origin == (10 - N // 2, 20 - N // 2) and res2.shape == (N, N)


@pytest.mark.parametrize("method,tol,mean_tol", [("bilinear", 0.1, 0.02), ("fourier", 1e-9, 1e-10)])
def test_subpixel_round_trip(method, tol, mean_tol):
    # bilinear: interpolating then splatting smooths twice (error ~ f'' / 4 on this object);
    # fourier: the shift and its inverse are exact on each patch
    obj = _smooth_obj()
    rng = np.random.default_rng(2)
    pos = rng.uniform(25, 135, size=(200, 2))
    patches = extract(obj, pos, 24, method=method)
    res = stitch(patches, pos, method=method, backend="numpy", dtype=np.complex128)
    m = res.coverage > 0.5
    err = np.abs(res.image[m] - _frame(obj, res)[m])
    assert err.max() < tol and err.mean() < mean_tol, (err.max(), err.mean())


def test_bilinear_subpixel_moves_content():
    # a delta patch at a fractional position splits over 4 pixels with bilinear weights
    p = np.zeros((1, 5, 5), np.float64)
    p[0, 2, 2] = 1.0
    res = stitch(p, [[10.25, 20.5]], canvas_shape=(30, 30), origin=(0, 0), backend="numpy")
    total = res.image * res.coverage  # undo normalisation -> raw weighted sum
    np.testing.assert_allclose(total[10:12, 20:22], [[0.75 * 0.5, 0.75 * 0.5], [0.25 * 0.5, 0.25 * 0.5]])
    assert res.coverage.sum() == pytest.approx(25.0)


def test_chunked_equals_one_shot():
    obj = _complex_obj()
    rng = np.random.default_rng(3)
    pos = rng.uniform(20, 140, size=(300, 2))
    pos[::4] = np.round(pos[::4])  # integer positions mixed in
    patches = extract(obj, pos, 16, method="bilinear").astype(np.complex64)
    for method in METHODS:
        one = stitch(patches, pos, method=method, backend="numpy", chunk_size=10_000)
        st = Stitcher(one.shape, one.origin, 16, method=method)
        for s in range(0, 300, 37):
            st.add(patches[s:s + 37], pos[s:s + 37])
        many = st.result()
        np.testing.assert_array_equal(many.image, one.image)
        np.testing.assert_array_equal(many.coverage, one.coverage)


def test_crop_keeps_the_central_part():
    obj = _complex_obj()
    pos = np.array([[50.0, 60.0], [70.0, 64.0]])
    full = extract(obj, pos, 32, method="nearest")
    res = stitch(full, pos, crop=10, method="nearest", backend="numpy")
    small = stitch(extract(obj, pos, 10, method="nearest"), pos, method="nearest", backend="numpy")
    assert res.origin == small.origin and res.shape == small.shape
    np.testing.assert_allclose(res.image, small.image)


def test_canvas_clipping_counts_patches():
    p = np.ones((3, 8, 8), np.float32)
    res = stitch(p, [[10, 10], [2, 2], [100, 100]], canvas_shape=(20, 20), origin=(0, 0), backend="numpy")
    assert res.n_clipped == 2
    assert res.coverage[0, 0] == 1.0 and res.coverage.max() == 1.0


def _reference_sum(patches, pos, method, shape, origin, crop=None):
    """An independent, slow weighted sum: one patch at a time with numpy slice-adds.

    The bilinear split is the separable one (rows, then columns) in the canvas's
    real dtype, which is what every backend computes.
    """
    P = np.asarray(patches)
    N = P.shape[1]
    M = N if crop is None else crop
    a = N // 2 - M // 2
    P = P[:, a:a + M, a:a + M]
    H, W = shape
    acc = np.zeros((H + 2 * (M + 2), W + 2 * (M + 2)), P.dtype)  # padded: no clipping logic
    pad = M + 2
    rd = np.float32 if P.dtype in (np.float32, np.complex64) else np.float64
    for p, q in zip(P, np.asarray(pos, np.float64)):
        if method == "bilinear":
            base = np.floor(q)
            fy, fx = (rd(v) for v in q - base)
            R = np.zeros((M + 1, M), P.dtype)
            R[:M] = p * (1 - fy)
            R[1:] += p * fy
            S = np.zeros((M + 1, M + 1), P.dtype)
            S[:, :M] = R * (1 - fx)
            S[:, 1:] += R * fx
        elif method == "fourier":
            base = np.rint(q)
            S = _fourier_shift_block(p[None], (q - base)[None])[0]
        else:
            base = np.rint(q)
            S = p
        r, c = (int(v) - M // 2 - o + pad for v, o in zip(base, origin))
        acc[r:r + S.shape[0], c:c + S.shape[1]] += S
    return acc[pad:pad + H, pad:pad + W]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.complex64, np.float64])
def test_weighted_sum_matches_an_independent_loop_exactly(method, dtype):
    rng = np.random.default_rng(7)
    pos = rng.uniform(5, 75, size=(250, 2))
    pos[::5] = np.round(pos[::5])
    patches = rng.standard_normal((250, 20, 20)).astype(dtype)
    if np.iscomplexobj(patches):
        patches = patches + 1j * rng.standard_normal((250, 20, 20)).astype(np.float32)
    # a canvas smaller than the scan: patches on every edge are clipped
    for crop in (None, 13):
        st = Stitcher((70, 64), (8, 12), 20, dtype=dtype, method=method, crop=crop)
        st.add(patches, pos)
        ref = _reference_sum(patches, pos, method, (70, 64), (8, 12), crop)
        np.testing.assert_array_equal(st.weighted_sum(), ref)
        assert st.n_clipped > 0


@pytest.mark.parametrize("method", METHODS)
def test_threaded_equals_serial(method):
    rng = np.random.default_rng(8)
    n = 600
    pos = rng.uniform(0, 120, size=(n, 2))
    patches = (rng.standard_normal((n, 16, 16)) + 1j * rng.standard_normal((n, 16, 16))).astype(np.complex64)
    serial = stitch(patches, pos, method=method, backend="numpy", threads=1)
    for threads in (2, 3, 7):
        for chunk in (n, 101):
            par = stitch(patches, pos, method=method, backend="numpy", threads=threads, chunk_size=chunk)
            np.testing.assert_array_equal(par.image, serial.image)
            np.testing.assert_array_equal(par.coverage, serial.coverage)
    # clipped canvas, crop, real patches
    kw = {"method": method, "backend": "numpy", "canvas_shape": (90, 100), "origin": (10, -4), "crop": 11}
    a = stitch(patches.real, pos, threads=1, **kw)
    b = stitch(patches.real, pos, threads=4, chunk_size=64, **kw)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.n_clipped == b.n_clipped > 0


def test_row_bands_partition_the_canvas():
    rng = np.random.default_rng(0)
    for H, n, t in ((533, 4096, 2), (533, 4096, 16), (5, 4096, 8), (1000, 20, 8), (64, 4096, 1)):
        bands, workers = _row_bands(H, rng.integers(-40, H, n), 33, t)
        assert 1 <= workers <= t and (len(bands) == 1) == (workers == 1)
        assert bands[0][0] == 0 and bands[-1][1] == H
        assert all(b[1] == c[0] for b, c in itertools.pairwise(bands))
        assert all(r1 > r0 for r0, r1 in bands)


def test_row_bands_share_a_strip_between_threads():
    # a raster chunk covers a strip of the canvas (rows 600-712 of 1000): equal row bands of the whole
    # canvas would give it to one thread; bands cut by work give each thread about half of it
    H, rows = 1000, 65
    tops = np.repeat(np.arange(600, 648, 3), 256)
    bands, workers = _row_bands(H, tops, rows, 2)
    assert workers == 2
    cover = np.zeros(H)
    for t in tops:
        cover[t:t + rows] += 1
    work = [cover[r0:r1].sum() for r0, r1 in bands]
    assert max(work) <= 1.5 * cover.sum() / len(bands)
    half = len(bands) // 2  # the bands are taken from a queue; the first and second halves hold equal work
    assert abs(sum(work[:half]) - sum(work[half:])) <= 0.2 * cover.sum()


def test_nearest_equals_the_plain_slice_add_loop():
    rng = np.random.default_rng(9)
    N = 32
    pos = rng.uniform(0, 200, size=(500, 2))
    patches = (rng.standard_normal((500, N, N)) + 1j * rng.standard_normal((500, N, N))).astype(np.complex64)
    tl = np.rint(pos).astype(int) - N // 2
    origin = tl.min(axis=0)
    tl -= origin
    canvas = np.zeros(tuple(tl.max(axis=0) + N), np.complex64)
    for p, (y, x) in zip(patches, tl):
        canvas[y:y + N, x:x + N] += p
    st = Stitcher(canvas.shape, tuple(origin), N, method="nearest", threads=2)
    st.add(patches, pos)
    np.testing.assert_array_equal(st.weighted_sum(), canvas)


def _backend_cases(be, exact: bool):
    """Compare backend ``be`` with the CPU kernel in every mode, from host and (if native) device arrays."""
    rng = np.random.default_rng(4)
    pos = rng.uniform(10, 50, size=(300, 2))
    pos[::6] = np.round(pos[::6])
    patches = (rng.standard_normal((300, 12, 12)) + 1j * rng.standard_normal((300, 12, 12))).astype(np.complex64)
    check = np.testing.assert_array_equal if exact else (
        lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=2e-5))
    for method in METHODS:
        a = stitch(patches, pos, method=method, backend="numpy")
        b = stitch(patches, pos, method=method, backend=be, chunk_size=70)
        assert b.backend == be.label
        if method == "fourier":  # FFTs of two libraries: float32 round-off
            np.testing.assert_allclose(b.image, a.image, rtol=0, atol=2e-5)
        else:
            check(b.image, a.image)
        if exact:
            np.testing.assert_array_equal(b.coverage, a.coverage)
        else:  # a GPU sums the float64 coverage in another order; its zeros are exact
            np.testing.assert_allclose(b.coverage, a.coverage, rtol=0, atol=1e-9)
            np.testing.assert_array_equal(b.coverage == 0, a.coverage == 0)
    kw = {"canvas_shape": (30, 40), "origin": (5, 5), "crop": 9}
    a = stitch(patches.real, pos, backend="numpy", **kw)
    b = stitch(patches.real, pos, backend=be, **kw)
    check(b.image, a.image)
    assert a.n_clipped == b.n_clipped > 0
    # ptychopinn_reassemble through the backend
    offs = np.stack([pos[:, 1], pos[:, 0]], axis=1)[:, None, :, None]
    np.testing.assert_allclose(ptychopinn_reassemble(patches, offs, M=8, backend=be).image,
                               ptychopinn_reassemble(patches, offs, M=8).image, rtol=0, atol=2e-5)
    return patches, pos


def test_array_backend_numpy_reproduces_the_kernel():
    # the GPU code path, run with numpy as the array module (np.add.at adds in patch order)
    _backend_cases(ArrayBackend("numpy"), exact=True)


def test_torch_cpu_backend_matches_the_kernel(torch):
    be = ArrayBackend("torch", "cpu")
    patches, pos = _backend_cases(be, exact=True)  # CPU index_add_ is sequential
    a = stitch(patches, pos, method="bilinear", backend="numpy")
    st = Stitcher(a.shape, a.origin, 12, backend=be)
    st.add(torch.from_numpy(patches[:100]), pos[:100])  # native tensors, no host copy
    st.add(torch.from_numpy(patches[100:, :, :, None]), pos[100:])
    np.testing.assert_array_equal(st.result().image, a.image)
    try:  # other device arrays come in through DLPack, without a host copy
        import jax.numpy as jnp
    except ImportError:
        return
    st = Stitcher(a.shape, a.origin, 12, backend=be)
    st.add(jnp.asarray(patches), pos)
    np.testing.assert_array_equal(st.result().image, a.image)


@pytest.mark.tf  # a GPU array backend: CuPy or PyTorch
@pytest.mark.skipif(gpu_backend() is None, reason="no GPU array backend (CuPy or PyTorch with a GPU)")
def test_gpu_backend_matches_the_kernel_to_float32_round_off():
    be = gpu_backend()
    patches, pos = _backend_cases(be, exact=False)
    assert stitch(patches, pos).backend == be.label  # "auto" picks it
    a = stitch(patches, pos, method="bilinear", backend="numpy")
    st = Stitcher(a.shape, a.origin, 12, backend=be)
    st.add(be.asarray(patches), pos)  # patches already on the device
    np.testing.assert_allclose(st.result().image, a.image, rtol=0, atol=2e-5)


def test_auto_without_a_gpu_is_the_cpu_kernel(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_backend() is None
    res = stitch(np.ones((2, 8, 8), np.float32), [[10, 10], [12, 13]])
    assert res.backend == "numpy"


@pytest.mark.tf  # probes torch and CuPy for a GPU
def test_gpu_backends_without_a_gpu_say_what_to_do():
    if gpu_backend() is not None:
        pytest.skip("a GPU is usable here")
    for name in ("cupy", "torch"):
        with pytest.raises(PtyAnalysisError, match="no"):
            Stitcher((10, 10), (0, 0), 4, backend=name)
    with pytest.raises(PtyAnalysisError, match="torch"):
        Stitcher((10, 10), (0, 0), 4, backend="tensorflow")
    for bad in (("numpy", "cuda"), ("cupy", "cpu"), ("jax", "cpu"), ("torch", "tpu")):
        with pytest.raises(PtyAnalysisError):
            ArrayBackend(*bad)


# --------------------------------------------------------------------------- #
# the study's reassemble_position
# --------------------------------------------------------------------------- #
def _offsets(rc):
    rc = np.asarray(rc, dtype=np.float64)
    return np.stack([rc[:, 1], rc[:, 0]], axis=1)[:, None, :, None]  # (n, 1, 2, 1) [x, y]


def test_ptychopinn_reassemble_hand_example():
    # two 4x4 patches, M = 2: the central crop is rows/cols 1..2
    p = np.zeros((2, 4, 4), np.complex64)
    p[0, 1:3, 1:3] = [[1, 2], [3, 4]]
    p[1, 1:3, 1:3] = [[10, 20], [30, 40]]
    # offsets (row, col): (0, 0) and (0, 1) -> mean (0, 0.5) -> adjusted (0, -0.5), (0, 0.5)
    # pad = ceil(0.5) = 1 -> even 2; canvas side = 2 + 2*2 = 6
    res = ptychopinn_reassemble(p, _offsets([[0, 0], [0, 1]]), M=2)
    assert res.image.shape == (6, 6)
    # crop pixel (i, j) of patch k sits at canvas (pad + i + dy, pad + j + dx), split bilinearly
    expected_sum = np.zeros((6, 6))
    expected_cnt = np.zeros((6, 6))
    for crop, dx in ((np.array([[1, 2], [3, 4]]), -0.5), (np.array([[10, 20], [30, 40]]), 0.5)):
        for i in range(2):
            for j in range(2):
                x = 2 + j + dx
                x0 = int(np.floor(x))
                f = x - x0
                for xx, w in ((x0, 1 - f), (x0 + 1, f)):
                    expected_sum[2 + i, xx] += w * crop[i, j]
                    expected_cnt[2 + i, xx] += w
    expected = expected_sum / (expected_cnt + 1e-9)
    np.testing.assert_allclose(res.image.real, expected, rtol=1e-6, atol=1e-6)
    # by hand, row 2: crop values land at x = 1.5, 2.5 (patch 0) and 2.5, 3.5 (patch 1), each split 50/50
    # col 1: 0.5*1 / 0.5; col 2: (0.5*1 + 0.5*2 + 0.5*10) / 1.5; col 3: (0.5*2 + 0.5*10 + 0.5*20) / 1.5;
    # col 4: 0.5*20 / 0.5; col 5: nothing
    np.testing.assert_allclose(res.image.real[2, 1:6], [1.0, 6.5 / 1.5, 16.0 / 1.5, 20.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(res.coverage[2], [0, 0.5, 1.5, 1.5, 0.5, 0])
    assert np.all(res.image[[0, 1, 4, 5]] == 0)


def test_ptychopinn_reassemble_constant_shift_invariance_and_naive_agreement():
    rng = np.random.default_rng(5)
    rc = rng.uniform(100, 160, size=(60, 2))
    p = (rng.standard_normal((60, 32, 32)) + 1j * rng.standard_normal((60, 32, 32))).astype(np.complex64)
    a = ptychopinn_reassemble(p, _offsets(rc), M=20)
    b = ptychopinn_reassemble(p, _offsets(rc + [123.0, -57.0]), M=20)
    np.testing.assert_allclose(a.image, b.image, atol=1e-5)
    ref = _naive_reassemble(p, _offsets(rc), M=20)
    m = a.coverage > 0.05
    np.testing.assert_allclose(a.image[m], ref[m], atol=1e-4)
    assert np.all(ref[a.coverage == 0] == 0)


def test_ptychopinn_reassemble_accepts_trailing_channel():
    rng = np.random.default_rng(6)
    p = rng.standard_normal((5, 16, 16, 1)).astype(np.complex64)
    res = ptychopinn_reassemble(p, _offsets(rng.uniform(0, 9, (5, 2))), M=8)
    assert res.image.ndim == 2


# --------------------------------------------------------------------------- #
# bad input
# --------------------------------------------------------------------------- #
def test_count_mismatch_raises():
    p = np.zeros((5, 8, 8), np.float32)
    with pytest.raises(PtyAnalysisError, match="counts must match"):
        stitch(p, np.zeros((4, 2)))
    with pytest.raises(PtyAnalysisError):
        ptychopinn_reassemble(p, _offsets(np.zeros((163, 2))), M=4)
    st = Stitcher((20, 20), (0, 0), 8)
    with pytest.raises(PtyAnalysisError):
        st.add(p, np.zeros((6, 2)))


@pytest.mark.parametrize(
    "patches,positions",
    [
        (np.zeros((3, 8, 9)), np.zeros((3, 2))),  # not square
        (np.zeros((8, 8)), np.zeros((1, 2))),  # not a stack
        (np.zeros((3, 8, 8)), np.zeros((3, 3))),  # positions not (n, 2)
        (np.zeros((2, 8, 8)), np.array([[1.0, np.nan], [2.0, 3.0]])),  # NaN
        (np.zeros((2, 8, 8)), np.array([[1.0, np.inf], [2.0, 3.0]])),  # Inf
        (np.zeros((0, 8, 8)), np.zeros((0, 2))),  # empty
    ],
)
def test_bad_input_raises(patches, positions):
    with pytest.raises(PtyAnalysisError):
        stitch(patches, positions)


def test_bad_options_raise():
    p = np.zeros((2, 8, 8))
    pos = np.zeros((2, 2)) + 10
    for kw in ({"method": "cubic"}, {"crop": 9}, {"crop": 0}, {"backend": "tensorflow"}, {"backend": "jax"},
               {"chunk_size": 0}, {"threads": 0}, {"threads": 1.5},
               {"canvas_shape": (0, 5)}, {"canvas_shape": (10, 10), "origin": (0.5, 0)}):
        with pytest.raises(PtyAnalysisError):
            stitch(p, pos, **kw)
    with pytest.raises(PtyAnalysisError):
        Stitcher((10, 10), (0, 0), 8, dtype=np.int32)
    with pytest.raises(PtyAnalysisError):
        Stitcher((10, 10), (0, 0), 8, dtype=np.float32).add(np.ones((1, 8, 8), np.complex64), [[5, 5]])
    with pytest.raises(PtyAnalysisError):
        Stitcher((10, 10), (0, 0), 8).add(np.ones((1, 6, 6)), [[5, 5]])


@pytest.mark.parametrize("method", METHODS)
def test_extract_outside_image_raises(method):
    img = np.zeros((40, 40))
    with pytest.raises(PtyAnalysisError, match="outside"):
        extract(img, [[3, 20]], 8, method=method)
    with pytest.raises(PtyAnalysisError, match="outside"):
        extract(img, [[20, 37]], 8, method=method)
    extract(img, [[4, 4]], 8, method=method)  # exactly fits


@pytest.mark.parametrize("dtype", [np.complex64, np.float64])
def test_extract_matches_an_independent_loop_and_any_thread_count(dtype):
    rng = np.random.default_rng(10)
    img = rng.standard_normal((90, 100)).astype(dtype)
    if np.iscomplexobj(img):
        img = img + 1j * rng.standard_normal((90, 100)).astype(np.float32)
    pos = rng.uniform(10, 80, size=(400, 2))
    pos[::3] = np.round(pos[::3])
    N = 16
    rd = np.float32 if dtype == np.complex64 else np.float64
    src = np.zeros((91, 101), img.dtype)
    src[:90, :100] = img
    ref = np.empty((400, N, N), img.dtype)
    for i, q in enumerate(pos):  # bilinear interpolation, rows then columns, in the image's precision
        r, c = (int(v) - N // 2 for v in np.floor(q))
        fy, fx = q - np.floor(q)
        win = src[r:r + N + 1, c:c + N + 1]
        rows = win[:N] * rd(1 - fy) + win[1:] * rd(fy)
        ref[i] = rows[:, :N] * rd(1 - fx) + rows[:, 1:] * rd(fx)
    for method in METHODS:
        one = extract(img, pos, N, method=method, threads=1)
        assert one.dtype == img.dtype
        np.testing.assert_array_equal(extract(img, pos, N, method=method, threads=3), one)
        if method == "bilinear":
            np.testing.assert_array_equal(one, ref)


def test_extract_bad_input_raises():
    with pytest.raises(PtyAnalysisError):
        extract(np.zeros((4, 4, 4)), [[2, 2]], 2)
    with pytest.raises(PtyAnalysisError):
        extract(np.zeros((40, 40)), [[np.nan, 2]], 2)
    with pytest.raises(PtyAnalysisError):
        extract(np.zeros((40, 40)), [[20, 20]], 0)
    # bilinear needs one more row/col at a fractional position
    with pytest.raises(PtyAnalysisError):
        extract(np.zeros((40, 40)), [[20, 36.5]], 8, method="bilinear")
