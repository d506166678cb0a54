import numpy as np
import pytest

from edgevos.errors import InputError
from edgevos.runtime.ring import RingBuffer, RingBuffers


def _item(i, shape=(2, 3)):
    return np.full(shape, i, dtype=np.float32)


def test_wraparound_over_many_pushes_keeps_last_items_in_order():
    rb = RingBuffer(5, (2, 3), "float32")
    for i in range(1, 38):  # 7+ full wraps
        rb.push(_item(i))
        n = min(i, 5)
        assert len(rb) == n
        w = rb.window(n)
        assert w.shape == (n, 2, 3)
        np.testing.assert_array_equal(w[:, 0, 0], np.arange(i - n + 1, i + 1))
        assert rb.latest[0, 0] == i
    assert rb.full and rb.pushes == 37


def test_stride_sampling_matches_reference_list():
    rb = RingBuffer(9, (4,), "int32")
    history = []
    for i in range(50):
        rb.push(np.full(4, i, np.int32))
        history.append(i)
        for k, s in [(1, 1), (3, 4), (5, 2), (9, 1), (2, 8)]:
            span = (k - 1) * s + 1
            if span > len(rb):
                with pytest.raises(InputError, match="spans"):
                    rb.window(k, s)
                continue
            expect = history[-span::s]
            np.testing.assert_array_equal(rb.window(k, s)[:, 0], expect)
            assert rb.window(k, s)[-1, 0] == i  # always ends at the latest item


def test_windows_are_views_not_copies():
    rb = RingBuffer(8, (3, 5, 7), "float32")
    for i in range(13):
        rb.push(_item(i, (3, 5, 7)))
    w = rb.window(8)
    s = rb.window(3, stride=3)
    assert np.shares_memory(w, rb._data) and np.shares_memory(s, rb._data)
    assert w.base is not None and s.base is not None
    assert w.flags["C_CONTIGUOUS"]  # contiguous window at stride 1
    assert np.shares_memory(rb.latest, rb._data)


def test_errors_for_bad_use():
    rb = RingBuffer(4, (2,), "float32")
    with pytest.raises(InputError, match="holds 0"):
        rb.window(1)
    with pytest.raises(InputError, match="empty"):
        rb.latest
    rb.push(np.zeros(2, np.float32))
    with pytest.raises(InputError, match="spans 2 items"):
        rb.window(2)
    with pytest.raises(InputError, match="shape"):
        rb.push(np.zeros(3, np.float32))
    with pytest.raises(InputError):
        rb.window(0)
    with pytest.raises(InputError):
        rb.window(1, stride=0)
    with pytest.raises(InputError):
        RingBuffer(0, (2,))


def test_clear_and_iteration():
    rb = RingBuffer(3, (), "int64")
    for i in range(7):
        rb.push(i)
    assert [int(x) for x in rb] == [4, 5, 6]
    rb.clear()
    assert len(rb) == 0 and not rb.full and list(rb) == []
    rb.push(42)
    assert rb.window(1)[0] == 42


def test_ring_buffers_from_specs():
    rings = RingBuffers.from_specs({"fast": (8, (2, 3, 4), "float32"), "slow": (3, (5,), "float16")})
    assert rings["slow"].dtype == np.float16 and rings["fast"].capacity == 8
    for i in range(10):
        rings.push({"fast": np.full((2, 3, 4), i, np.float32), "slow": np.full(5, i, np.float16)})
    assert rings["fast"].window(3, stride=3)[:, 0, 0, 0].tolist() == [3, 6, 9]
    assert rings["slow"].window(3)[:, 0].tolist() == [7, 8, 9]
    from edgevos.runtime.ring import SLACK

    assert rings.nbytes == SLACK * (8 * 24 * 4 + 3 * 5 * 2)
    with pytest.raises(InputError, match="no ring buffer named 'mid'"):
        rings["mid"]
    rings.clear()
    assert len(rings["fast"]) == 0


def test_capacity_one_and_slides_keep_order():
    """Capacity 1 (nothing to keep when the storage slides) and many slides in a row."""
    rb = RingBuffer(1, (3,), "float32")
    for i in range(25):
        rb.push(np.full(3, i, np.float32))
        assert len(rb) == 1 and rb.latest[0] == i and rb.window(1)[0, 0] == i
    rb = RingBuffer(3, (), "int64")
    for i in range(100):
        rb.push(np.int64(i))
        if i >= 2:
            assert rb.window(3).tolist() == [i - 2, i - 1, i]
            assert rb.window(2, 2).tolist() == [i - 2, i]
