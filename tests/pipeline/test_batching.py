"""How a network arm's batch size and chunk length follow the size of its samples (no TensorFlow)."""

import pytest

from ptyanalysis.inference.runtime import BATCH_VALUES, CPU_BATCH_VALUES, DEFAULT_BATCH_SIZE, auto_batch_size
from ptyanalysis.pipeline.compare import CHUNK_BATCHES, CHUNK_BYTES, CompareConfig, arm_batching


@pytest.mark.parametrize("values,expected", [(4 * 64 * 64, 256), (64 * 64, 256), (4 * 128 * 128, 64),
                                             (128 * 128, 256), (4 * 256 * 256, 16), (BATCH_VALUES * 3, 1)])
def test_auto_batch_size_keeps_a_call_within_the_budget(values, expected):
    bs = auto_batch_size(values)
    assert bs == expected
    assert bs == 1 or bs * values <= BATCH_VALUES
    assert bs <= DEFAULT_BATCH_SIZE and bs & (bs - 1) == 0  # a power of two
    assert bs == DEFAULT_BATCH_SIZE or bs == 1 or 2 * bs * values > BATCH_VALUES  # the largest that fits


def test_arm_batching_sizes_the_study_geometry_by_memory_and_device():
    """N = 128 gridsize 2 (the study's PtychoPINN): on a GPU 64 groups per call, on a CPU 8; chunks of 16 MiB."""
    auto = CompareConfig()
    gpu = arm_batching(2, 128, auto, on_gpu=True)
    assert (gpu["batch_size"], gpu["chunk"]) == (64, 4 * 64)  # one batch is 16 MiB: CHUNK_BATCHES of them
    cpu = arm_batching(2, 128, auto)
    assert (cpu["batch_size"], cpu["chunk"]) == (8, 64)
    assert cpu["chunk"] * 4 * 128 * 128 * 4 <= CHUNK_BYTES
    assert cpu["batch_size"] * 4 * 128 * 128 <= CPU_BATCH_VALUES < 2 * cpu["batch_size"] * 4 * 128 * 128
    assert "automatic" in cpu["source"] and "CPU" in cpu["source"] and "GPU" in gpu["source"]
    assert (arm_batching(1, 128, auto)["batch_size"], arm_batching(1, 128, auto)["chunk"]) == (32, 256)
    assert arm_batching(1, 128, auto, on_gpu=True)["batch_size"] == DEFAULT_BATCH_SIZE
    assert arm_batching(2, 64, auto, on_gpu=True)["batch_size"] == DEFAULT_BATCH_SIZE
    for on_gpu in (False, True):
        b = arm_batching(2, 64, auto, on_gpu=on_gpu)
        assert b["chunk"] % b["batch_size"] == 0 and b["chunk"] >= CHUNK_BATCHES * b["batch_size"]
        huge = arm_batching(2, 1024, auto, on_gpu=on_gpu)  # one group is larger than the chunk budget
        assert huge["chunk"] >= huge["batch_size"] >= 1


def test_arm_batching_keeps_what_the_user_asked_for():
    b = arm_batching(2, 128, CompareConfig(batch_size=256, chunk=7))
    assert (b["batch_size"], b["chunk"]) == (256, 7)
    assert "requested" in b["source"] and "automatic" not in b["source"]
