"""Preallocated ring buffers that hand out contiguous windows without copying.

A sliding buffer: storage holds ``SLACK * capacity`` slots and items are written
one after another; the last ``k`` items always sit contiguously at
``[end - k, end)``, so ``window(k)`` is a plain numpy slice (a view), and
``window(k, stride)`` a strided slice of it (still a view).  When the write
position reaches the end of the storage, the newest ``capacity - 1`` items move
to the front (one block copy).  ``push`` is O(1): one slot copy, plus the move
amortised over ``(SLACK - 1) * capacity + 1`` pushes, so about 1.3 slot copies per
push with ``SLACK = 4`` (a mirrored buffer, which writes every item twice, needs 2).

A streaming model keeps one buffer per pathway (and per cached activation)::

    rings = RingBuffers.from_specs({
        "fast": (8, (64, 60, 108), "float32"),
        "slow": (3, (512, 15, 27), "float32"),
    })
    rings["fast"].push(feat)                 # once per frame
    x = rings["fast"].window(8)              # (8, 64, 60, 108), oldest first
    s = rings["fast"].window(3, stride=3)    # frames t-6, t-3, t
"""
from __future__ import annotations

from typing import Dict, Iterator, Mapping, Sequence, Tuple, Union

import numpy as np

from edgevos.errors import InputError

Shape = Tuple[int, ...]

#: storage slots per capacity slot (see the module docs)
SLACK = 4


class RingBuffer:
    """Fixed-capacity FIFO of equally shaped arrays with zero-copy windows.

    Windows are ordered oldest first.  They are views into the buffer: they
    stay valid until the next ``push`` overwrites the slots they cover, so a
    caller that needs the data later must copy it.
    """

    def __init__(self, capacity: int, item_shape: Sequence[int], dtype="float32"):
        if int(capacity) != capacity or capacity < 1:
            raise InputError(f"ring buffer capacity must be a positive integer, got {capacity!r}")
        shape = tuple(int(s) for s in item_shape)
        if any(s < 0 for s in shape):
            raise InputError(f"ring buffer item shape must be non-negative, got {tuple(item_shape)}")
        self.capacity = int(capacity)
        self.item_shape: Shape = shape
        self.dtype = np.dtype(dtype)
        self._data = np.zeros((SLACK * self.capacity,) + shape, dtype=self.dtype)
        self._end = 0  # one past the latest item; the next push writes here
        self._count = 0
        self.pushes = 0  # total pushes since creation / clear

    # -- writing -------------------------------------------------------------
    def push(self, item) -> None:
        """Append one item (copied in); the oldest falls out when full."""
        a = np.asarray(item)
        if a.shape != self.item_shape:
            raise InputError(
                f"ring buffer item has shape {a.shape} but the buffer holds {self.item_shape}: "
                "push arrays of the buffer's item shape"
            )
        end = self._end
        if end == len(self._data):  # slide: keep the newest capacity - 1 items at the front
            keep = self.capacity - 1
            if keep:
                self._data[:keep] = self._data[end - keep:end]
            end = keep
        self._data[end] = a
        self._end = end + 1
        if self._count < self.capacity:
            self._count += 1
        self.pushes += 1

    def clear(self) -> None:
        """Forget every item (storage is kept, not reallocated)."""
        self._end = 0
        self._count = 0
        self.pushes = 0

    # -- reading -------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count == self.capacity

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    @property
    def latest(self) -> np.ndarray:
        """The most recent item (a view)."""
        if self._count == 0:
            raise InputError("ring buffer is empty: push an item before reading 'latest'")
        return self._data[self._end - 1]

    def window(self, k: int, stride: int = 1) -> np.ndarray:
        """The last ``k`` items taken every ``stride``-th, oldest first; a view.

        ``window(k, s)[-1]`` is always the latest item; ``window(k, s)[i]`` is
        the item pushed ``(k - 1 - i) * s`` pushes before it.
        """
        if int(k) != k or k < 1:
            raise InputError(f"window size must be a positive integer, got {k!r}")
        if int(stride) != stride or stride < 1:
            raise InputError(f"window stride must be a positive integer, got {stride!r}")
        span = (int(k) - 1) * int(stride) + 1
        if span > self._count:
            raise InputError(
                f"window of {k} items at stride {stride} spans {span} items but the buffer holds "
                f"{self._count} (capacity {self.capacity}): push more items first or ask for a "
                "smaller window"
            )
        end = self._end  # one past the latest item
        return self._data[end - span:end:int(stride)]

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._count:
            yield from self.window(self._count)

    def __repr__(self) -> str:
        return (
            f"RingBuffer(capacity={self.capacity}, item_shape={self.item_shape}, "
            f"dtype={self.dtype.name}, len={self._count})"
        )


SpecValue = Union[Tuple[int, Sequence[int], str], Tuple[int, Sequence[int]]]


class RingBuffers:
    """A named set of ring buffers, e.g. one per pathway."""

    def __init__(self, buffers: Mapping[str, RingBuffer]):
        self._buffers: Dict[str, RingBuffer] = dict(buffers)

    @classmethod
    def from_specs(cls, specs: Mapping[str, SpecValue]) -> "RingBuffers":
        """Build from ``{name: (capacity, item_shape[, dtype])}``."""
        buffers = {}
        for name, spec in specs.items():
            if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
                raise InputError(
                    f"ring spec for '{name}' must be (capacity, shape[, dtype]), got {spec!r}"
                )
            capacity, shape = spec[0], spec[1]
            dtype = spec[2] if len(spec) == 3 else "float32"
            buffers[name] = RingBuffer(capacity, shape, dtype)
        return cls(buffers)

    def __getitem__(self, name: str) -> RingBuffer:
        try:
            return self._buffers[name]
        except KeyError:
            raise InputError(f"no ring buffer named '{name}'; have {sorted(self._buffers)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._buffers

    def __iter__(self):
        return iter(self._buffers)

    def __len__(self) -> int:
        return len(self._buffers)

    def items(self):
        return self._buffers.items()

    def push(self, items: Mapping[str, np.ndarray]) -> None:
        """Push one item into each named buffer."""
        for name, item in items.items():
            self[name].push(item)

    def clear(self) -> None:
        for b in self._buffers.values():
            b.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}: {b!r}" for n, b in self._buffers.items())
        return f"RingBuffers({{{inner}}})"
