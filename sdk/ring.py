"""Preallocated ring buffers that hand out contiguous windows without copying.

Two storage layouts, the same interface:

* **mirrored** (Linux, the default there): ``M > capacity`` slots of shared
  memory mapped twice, back to back, so slot ``i`` and slot ``i + M`` are the
  same bytes.  Any run of up to ``M`` consecutive items is then contiguous in
  the doubled view, across the wrap-around: ``window(k)`` is a plain numpy
  slice, ``push`` writes one slot, and nothing is ever moved.  ``M`` is the
  smallest count above ``capacity`` whose bytes fill whole memory pages.
* **sliding** (everywhere): ``SLACK * capacity`` slots written one after
  another; when the write position reaches the end, the newest ``capacity``
  items move to the front (one block copy every ``(SLACK - 1) * capacity``
  pushes, a third of a slot copy per push with ``SLACK = 4``).

In both, the last ``k`` items sit contiguously at ``[end - k, end)``, so
``window(k)`` is a view and ``window(k, stride)`` a strided view of it.

A producer can write the next item in place, so an item is never copied at all:
``reserve()`` hands out the slot the next item goes to (a writable, contiguous
view; the windows over the items already held stay valid while it is filled),
``commit()`` adds it.  The runtime binds that slot as the output buffer of the
stage that computes the item (ONNX Runtime I/O binding), so pushing a feature map
costs no copy; ``push(item)`` is reserve + copy + commit for everything else.

A streaming model keeps one buffer per pathway (and per cached activation)::

    fast = RingBuffer(8, (64, 60, 108), "float32")
    fast.push(feat)                 # once per frame (or reserve() ... commit())
    x = fast.window(8)              # (8, 64, 60, 108), oldest first
    s = fast.window(3, stride=3)    # frames t-6, t-3, t
"""
from __future__ import annotations

import ctypes
import math
import mmap
import os
import sys
import weakref
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from edgevos.errors import InputError

Shape = Tuple[int, ...]

#: storage slots per capacity slot of the sliding layout (see the module docs)
SLACK = 4
LAYOUTS = ("auto", "mirrored", "sliding")


_PROT_RW, _MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANON = 3, 1, 2, 0x10, 0x20


class _Mirror:
    """``nbytes`` of shared memory mapped twice at adjacent addresses (Linux memfd + mmap).

    Exposes the doubled range through ``__array_interface__``; numpy views keep
    this object alive, and the mapping is released when the last one goes.
    The memory is shared only between the two views: a forked child gets its own
    copy at the same addresses (``_remap_after_fork``), as it would for ordinary
    process memory, instead of writing into the parent's rings.
    """

    _libc = None
    _live: "weakref.WeakSet[_Mirror]" = weakref.WeakSet()

    def __init__(self, nbytes: int, dtype: np.dtype, shape: Shape):
        libc = _Mirror._lib()
        self.addr, self.size, self.half = None, 2 * nbytes, nbytes
        try:
            base = libc.mmap(None, self.size, 0, _MAP_PRIVATE | _MAP_ANON, -1, 0)  # reserve 2 x nbytes
            if base in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), "mmap reserve failed")
            self.addr = base
            self._map_halves()
        except BaseException:
            self.close()
            raise
        _Mirror._live.add(self)
        self.__array_interface__ = {
            "shape": shape, "typestr": dtype.str, "data": (base, False), "version": 3,
        }

    @classmethod
    def _lib(cls):
        if cls._libc is None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_long)
            libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
            cls._libc = libc
        return cls._libc

    def _map_halves(self, contents: Optional[bytes] = None) -> None:
        """Map one new memfd at both halves (MAP_FIXED over what is there), optionally filled."""
        fd = os.memfd_create("edgevos-ring", 0)
        try:
            os.ftruncate(fd, self.half)
            if contents:
                os.pwrite(fd, contents, 0)
            for off in (0, self.half):
                got = self._libc.mmap(self.addr + off, self.half, _PROT_RW, _MAP_SHARED | _MAP_FIXED, fd, 0)
                if got != self.addr + off:
                    raise OSError(ctypes.get_errno(), "mmap of a ring half failed")
        finally:
            os.close(fd)  # the mappings keep the memory

    def close(self):
        if self.addr is not None:
            self._libc.munmap(self.addr, self.size)
            self.addr = None

    def __del__(self):
        self.close()


def _remap_after_fork() -> None:
    """In a forked child: every mirrored ring gets private memory with the same contents."""
    for m in list(_Mirror._live):
        if m.addr is not None:
            m._map_halves(ctypes.string_at(m.addr, m.half))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_remap_after_fork)


def mirrored_slots(capacity: int, item_nbytes: int) -> int:
    """Slots of a mirrored ring: the fewest above ``capacity`` whose bytes are whole pages."""
    step = mmap.PAGESIZE // math.gcd(item_nbytes, mmap.PAGESIZE)
    return -(-(capacity + 1) // step) * step


def _mirrored_storage(capacity: int, shape: Shape, dtype: np.dtype) -> Optional[np.ndarray]:
    """The doubled ``(2M,) + shape`` view of a mirrored ring, or None where it cannot be made."""
    item = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not sys.platform.startswith("linux") or not hasattr(os, "memfd_create") or item == 0:
        return None
    m = mirrored_slots(capacity, item)
    try:
        mirror = _Mirror(m * item, dtype, (2 * m,) + shape)
    except OSError:
        return None
    return np.asarray(mirror)


class RingBuffer:
    """Fixed-capacity FIFO of equally shaped arrays with zero-copy windows.

    Windows are ordered oldest first.  They are views into the buffer: they
    stay valid until the next ``push`` overwrites the slots they cover, so a
    caller that needs the data later must copy it.
    """

    def __init__(self, capacity: int, item_shape: Sequence[int], dtype="float32", layout: str = "auto"):
        if int(capacity) != capacity or capacity < 1:
            raise InputError(f"ring buffer capacity must be a positive integer, got {capacity!r}")
        shape = tuple(int(s) for s in item_shape)
        if any(s < 0 for s in shape):
            raise InputError(f"ring buffer item shape must be non-negative, got {tuple(item_shape)}")
        self.capacity = int(capacity)
        self.item_shape: Shape = shape
        self.dtype = np.dtype(dtype)
        if layout not in LAYOUTS:
            raise InputError(f"ring buffer layout '{layout}' is unknown: use one of {list(LAYOUTS)}")
        data = _mirrored_storage(self.capacity, shape, self.dtype) if layout != "sliding" else None
        if data is None and layout == "mirrored":
            raise InputError("a mirrored ring buffer needs Linux shared memory (memfd_create, mmap) and a "
                             "non-empty item: use layout='sliding' or 'auto'")
        self.layout = "mirrored" if data is not None else "sliding"
        if data is None:
            data = np.zeros((SLACK * self.capacity,) + shape, dtype=self.dtype)
        self._data = data
        self._slots = len(data) // 2 if self.layout == "mirrored" else len(data)  # distinct slots
        self._end = 0  # one past the latest item; the next push writes here (mirrored: at end - M)
        self._slot_views = [data[i, ...] for i in range(self._slots)]  # views (also of 0-d items)
        self._count = 0
        self._reserved = False
        self.pushes = 0  # total pushes since creation / clear

    # -- writing -------------------------------------------------------------
    def reserve(self) -> np.ndarray:
        """The slot the next item goes to: a writable, C-contiguous view.

        Fill it, then :meth:`commit`.  Windows over the items already held (and
        views of them, e.g. ``latest``) stay valid while the slot is filled.
        Calling ``reserve`` again before ``commit`` returns the same slot.
        """
        end = self._end
        if self.layout == "mirrored":
            self._reserved = True
            return self._slot_views[end % self._slots]
        if end == len(self._data):  # slide: the newest items (up to capacity) move to the front
            keep = self._count
            if keep:
                self._data[:keep] = self._data[end - keep:end]
            self._end = end = keep
        self._reserved = True
        return self._slot_views[end]

    def commit(self) -> None:
        """Add the item written into the slot from :meth:`reserve`; the oldest falls out when full."""
        if not self._reserved:
            raise InputError("ring buffer commit() without a reserved slot: call reserve() and fill it first")
        self._reserved = False
        end = self._end + 1
        if self.layout == "mirrored":  # keep end in (M, 2M]: the held items end there contiguously
            end = end % self._slots + self._slots
        self._end = end
        if self._count < self.capacity:
            self._count += 1
        self.pushes += 1

    def advance(self) -> None:
        """Add the item at the next slot without a :meth:`reserve` call: for a producer that
        keeps the slot views it was handed for each :attr:`period` position (a streaming
        program's per-frame binding table) and fills them itself."""
        self._reserved = True
        self.commit()

    @property
    def period(self) -> Optional[int]:
        """Pushes after which a full mirrored ring is back in the same state (its slot and
        window views repeat); None for the sliding layout."""
        return self._slots if self.layout == "mirrored" else None

    def push(self, item) -> None:
        """Append one item (copied in); the oldest falls out when full.

        ``item`` may be a view of this buffer (e.g. ``latest``): the slide in
        :meth:`reserve` never writes where the held items are.
        """
        a = np.asarray(item)
        if a.shape != self.item_shape:
            raise InputError(
                f"ring buffer item has shape {a.shape} but the buffer holds {self.item_shape}: "
                "push arrays of the buffer's item shape"
            )
        self.reserve()[...] = a
        self.commit()

    def clear(self) -> None:
        """Forget every item (storage is kept, not reallocated)."""
        self._end = 0
        self._count = 0
        self._reserved = False
        self.pushes = 0

    # -- reading -------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count == self.capacity

    @property
    def nbytes(self) -> int:
        """Bytes of memory held (a mirrored ring's two views share theirs)."""
        return self._slots * (self._data.nbytes // len(self._data)) if len(self._data) else 0

    @property
    def latest(self) -> np.ndarray:
        """The most recent item (a view)."""
        if self._count == 0:
            raise InputError("ring buffer is empty: push an item before reading 'latest'")
        return self._data[self._end - 1]

    def window(self, k: int, stride: int = 1, lag: int = 0) -> np.ndarray:
        """The last ``k`` items taken every ``stride``-th, oldest first; a view.

        ``window(k, s)[-1]`` is the latest item; ``window(k, s)[i]`` is the item
        pushed ``(k - 1 - i) * s`` pushes before it.  ``lag`` ends the window that
        many pushes before the latest (``window(k, s, lag=s - 1)`` is the ``k``
        items at ``t - k*s, ..., t - s`` when the latest is ``t - 1``).
        """
        if int(k) != k or k < 1:
            raise InputError(f"window size must be a positive integer, got {k!r}")
        if int(stride) != stride or stride < 1:
            raise InputError(f"window stride must be a positive integer, got {stride!r}")
        if int(lag) != lag or lag < 0:
            raise InputError(f"window lag must be a non-negative integer, got {lag!r}")
        span = (int(k) - 1) * int(stride) + 1 + int(lag)
        if span > self._count:
            raise InputError(
                f"window of {k} items at stride {stride} (lag {lag}) spans {span} items but the buffer holds "
                f"{self._count} (capacity {self.capacity}): push more items first or ask for a "
                "smaller window"
            )
        end = self._end - int(lag)  # one past the window's last item
        return self._data[end - span + int(lag):end:int(stride)]

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._count:
            yield from self.window(self._count)

    def __repr__(self) -> str:
        return (
            f"RingBuffer(capacity={self.capacity}, item_shape={self.item_shape}, "
            f"dtype={self.dtype.name}, len={self._count}, layout={self.layout})"
        )


class StridedRing:
    """A ring read at one fixed stride, with those windows contiguous (no gather copy).

    Items go to ``stride`` lanes by push count (item ``t`` to lane ``t mod
    stride``), each lane a :class:`RingBuffer` of ``k`` items, so the ``k`` items
    ``t, t - stride, ..., t - (k - 1) * stride`` are consecutive in one lane: a
    contiguous view that a stage can take as its input as is, where a strided
    view of a plain ring would be copied first.  Same interface as
    :class:`RingBuffer` for the windows it can serve (``lag < stride``).
    """

    def __init__(self, k: int, stride: int, item_shape: Sequence[int], dtype="float32", layout: str = "auto"):
        if int(stride) != stride or stride < 1:
            raise InputError(f"strided ring stride must be a positive integer, got {stride!r}")
        self.k, self.stride = int(k), int(stride)
        self.lanes = [RingBuffer(k, item_shape, dtype, layout) for _ in range(self.stride)]
        self.capacity = self.k * self.stride
        self.item_shape, self.dtype, self.layout = self.lanes[0].item_shape, self.lanes[0].dtype, self.lanes[0].layout
        self.pushes = 0

    def reserve(self) -> np.ndarray:
        return self.lanes[self.pushes % self.stride].reserve()

    def commit(self) -> None:
        self.lanes[self.pushes % self.stride].commit()
        self.pushes += 1

    def advance(self) -> None:
        self.lanes[self.pushes % self.stride].advance()
        self.pushes += 1

    @property
    def period(self) -> Optional[int]:
        p = self.lanes[0].period
        return None if p is None else self.stride * p

    def push(self, item) -> None:
        self.lanes[self.pushes % self.stride].push(item)
        self.pushes += 1

    def clear(self) -> None:
        for lane in self.lanes:
            lane.clear()
        self.pushes = 0

    def __len__(self) -> int:
        return min(self.pushes, self.capacity)

    @property
    def full(self) -> bool:
        return self.pushes >= self.capacity

    @property
    def nbytes(self) -> int:
        return sum(lane.nbytes for lane in self.lanes)

    @property
    def latest(self) -> np.ndarray:
        if not self.pushes:
            raise InputError("ring buffer is empty: push an item before reading 'latest'")
        return self.lanes[(self.pushes - 1) % self.stride].latest

    def window(self, k: int, stride: int, lag: int = 0) -> np.ndarray:
        """The ``k`` items ending ``lag`` pushes before the latest, every ``stride``-th: a contiguous view."""
        if stride != self.stride or not 0 <= lag < self.stride:
            raise InputError(
                f"this ring serves windows at stride {self.stride} with lag 0..{self.stride - 1}; "
                f"asked for stride {stride}, lag {lag}: use a RingBuffer for other reads"
            )
        if self.pushes - lag <= 0:
            raise InputError(f"window ends {lag} pushes before the latest but the buffer holds {len(self)}: "
                             "push more items first")
        return self.lanes[(self.pushes - 1 - lag) % self.stride].window(k)

    def __repr__(self) -> str:
        return (f"StridedRing(k={self.k}, stride={self.stride}, item_shape={self.item_shape}, "
                f"dtype={self.dtype.name}, len={len(self)}, layout={self.layout})")
