import numpy as np
import pytest

from edgevos.errors import InputError
from edgevos.ring import SLACK, RingBuffer, StridedRing, mirrored_slots

LAYOUTS = ["mirrored", "sliding"]


def _item(i, shape=(2, 3)):
    return np.full(shape, i, dtype=np.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_wraparound_over_many_pushes_keeps_last_items_in_order(layout):
    rb = RingBuffer(5, (2, 3), "float32", layout=layout)
    for i in range(1, 38):  # 7+ full wraps
        rb.push(_item(i))
        n = min(i, 5)
        assert len(rb) == n
        w = rb.window(n)
        assert w.shape == (n, 2, 3)
        np.testing.assert_array_equal(w[:, 0, 0], np.arange(i - n + 1, i + 1))
        assert rb.latest[0, 0] == i
    assert rb.full and rb.pushes == 37


@pytest.mark.parametrize("layout", LAYOUTS)
def test_stride_sampling_matches_reference_list(layout):
    rb = RingBuffer(9, (4,), "int32", layout=layout)
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
            for lag in (1, s - 1):
                if span + lag <= len(rb):
                    np.testing.assert_array_equal(rb.window(k, s, lag=lag)[:, 0], history[-span - lag::s][:k])
                    assert rb.window(k, s, lag=lag)[-1, 0] == i - lag


@pytest.mark.parametrize("layout", LAYOUTS)
def test_windows_are_views_not_copies(layout):
    rb = RingBuffer(8, (3, 5, 7), "float32", layout=layout)
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


@pytest.mark.parametrize("layout", LAYOUTS)
def test_clear_and_iteration(layout):
    rb = RingBuffer(3, (), "int64", layout=layout)
    for i in range(7):
        rb.push(i)
    assert [int(x) for x in rb] == [4, 5, 6]
    rb.clear()
    assert len(rb) == 0 and not rb.full and list(rb) == []
    rb.push(42)
    assert rb.window(1)[0] == 42


def test_ring_buffer_nbytes_and_dtype():
    fast, slow = RingBuffer(8, (2, 3, 4), "float32"), RingBuffer(3, (5,), "float16")
    assert slow.dtype == np.float16 and fast.capacity == 8
    for i in range(10):
        fast.push(np.full((2, 3, 4), i, np.float32))
        slow.push(np.full(5, i, np.float16))
    assert fast.window(3, stride=3)[:, 0, 0, 0].tolist() == [3, 6, 9]
    assert slow.window(3)[:, 0].tolist() == [7, 8, 9]
    slots = [SLACK * 8 if fast.layout == "sliding" else mirrored_slots(8, 96),
             SLACK * 3 if slow.layout == "sliding" else mirrored_slots(3, 10)]
    assert fast.nbytes + slow.nbytes == slots[0] * 96 + slots[1] * 10
    fast.clear()
    assert len(fast) == 0


def test_mirrored_layout_has_contiguous_windows_across_the_wrap_and_never_moves_items():
    rb = RingBuffer(5, (3, 7), "float32", layout="mirrored")
    m = mirrored_slots(5, 3 * 7 * 4)
    assert m > 5 and (m * 3 * 7 * 4) % 4096 == 0
    assert rb.nbytes == m * 3 * 7 * 4
    first = None
    for i in range(3 * m + 2):  # wraps the physical storage three times
        slot = rb.reserve()
        slot[...] = i
        rb.commit()
        if first is None:
            first = rb.latest
        w = rb.window(len(rb))
        assert w.flags["C_CONTIGUOUS"], f"window not contiguous after {i + 1} pushes"
        np.testing.assert_array_equal(w[:, 0, 0], np.arange(i - len(rb) + 1, i + 1))
    # the first slot was rewritten in place by later items: nothing is moved or reallocated
    assert first[0, 0] == ((3 * m + 1) // m) * m
    del rb
    np.testing.assert_array_equal(w[:, 0, 0], np.arange(3 * m + 2 - 5, 3 * m + 2))  # views outlive the ring


def test_layout_choice_and_errors():
    assert RingBuffer(2, (4,), layout="sliding").layout == "sliding"
    assert RingBuffer(2, (4,)).layout in LAYOUTS
    with pytest.raises(InputError, match="layout 'ring' is unknown"):
        RingBuffer(2, (4,), layout="ring")
    assert RingBuffer(2, (0,)).layout == "sliding"  # empty items: nothing to map
    with pytest.raises(InputError, match="mirrored ring buffer needs"):
        RingBuffer(2, (0,), layout="mirrored")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_strided_ring_windows_are_contiguous_and_match_a_plain_ring(layout):
    """k items at stride s, ending 0..s-1 pushes before the latest: same items as a plain ring, no copy."""
    k, s = 2, 3
    strided = StridedRing(k, s, (4, 5), "float32", layout=layout)
    plain = RingBuffer(k * s, (4, 5), "float32", layout=layout)
    for i in range(40):
        slot = strided.reserve()
        if strided.full:  # the window the stage reads while the new item is written (lag s - 1)
            w = strided.window(k, s, lag=s - 1)
            np.testing.assert_array_equal(w, plain.window(k, s, lag=s - 1))
            assert w.flags["C_CONTIGUOUS"] and not np.shares_memory(w, slot)
        slot[...] = i
        strided.commit()
        plain.push(np.full((4, 5), i, np.float32))
        assert strided.latest[0, 0] == i and len(strided) == len(plain)
        for lag in range(s):
            if (k - 1) * s + 1 + lag <= len(plain):
                np.testing.assert_array_equal(strided.window(k, s, lag=lag), plain.window(k, s, lag=lag))
        if i % 4 == 0:
            strided.push(strided.latest)
            plain.push(plain.latest)
    with pytest.raises(InputError, match="serves windows at stride 3"):
        strided.window(2, 1)
    strided.clear()
    assert len(strided) == 0 and not strided.full


def test_mirrored_ring_is_not_shared_with_a_forked_child():
    """A forked child writes into its own copy of a mirrored ring, never into the parent's."""
    import os

    rb = RingBuffer(3, (1024,), "float32", layout="mirrored")
    for i in range(5):
        rb.push(np.full(1024, i, np.float32))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            ok = rb.window(3)[:, 0].tolist() == [2, 3, 4]  # the parent's items are there
            for i in range(10, 20):
                rb.push(np.full(1024, i, np.float32))
            ok = ok and rb.window(3)[:, 0].tolist() == [17, 18, 19] and rb.window(3).flags["C_CONTIGUOUS"]
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1", "the child did not see the parent's items, or its own pushes broke its ring"
    assert rb.window(3)[:, 0].tolist() == [2, 3, 4]  # untouched by the child
    rb.push(np.full(1024, 5, np.float32))
    assert rb.window(3)[:, 0].tolist() == [3, 4, 5]
