"""The sink interface every output implements, and what the sinks share: the result's id
mask, the output folder check, and a background writer thread."""
from __future__ import annotations

import os
from typing import Optional
from pathlib import Path

import numpy as np

from edgevos.errors import InputError, SourceError
from edgevos.runtime.uri import URI


class Sink:
    """Base class: ``write`` per frame, ``close`` once (idempotent)."""

    def __init__(self, uri: URI):
        self.uri = uri
        self.closed = False
        self.frames = 0

    def write(self, frame_index: int, rgb: np.ndarray, result) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _check_open(self) -> None:
        if self.closed:
            raise InputError(f"{self.uri}: write after close")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri})"


def result_mask(result) -> np.ndarray:
    """The (H, W) id map of a step result (its ``.mask``) or of a bare array."""
    mask = getattr(result, "mask", result)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"result mask must be (H, W), got shape {mask.shape}")
    return mask


def prepare_output_dir(path: Path, uri: URI) -> None:
    """Create an output folder (and its parents); SourceError when it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SourceError(f"{uri}: cannot create output directory {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise SourceError(f"{uri}: output directory {path} is not writable: choose another location")


class QueuedSink(Sink):
    """A sink whose work runs in one background thread fed by ``self._queue``
    (None ends it).  The first error stops the work for good (``self._failed``) and
    is kept in ``self._error`` for the next write or close to raise."""

    #: the first error; once set no further item is handled, even after it was raised
    _failed: Optional[BaseException] = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._failed is None:
                    self._handle(item)
            except BaseException as exc:  # reported on the next write/close
                self._error = self._failed = exc
            finally:
                self._queue.task_done()

    def _handle(self, item) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
