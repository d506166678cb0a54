"""File sinks besides video: ``MaskSink`` (DAVIS-layout indexed PNGs, written atomically by a
background thread) and ``JsonSink`` (one JSON line per frame)."""
from __future__ import annotations

import json
import os
import queue
import re
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from edgevos.data.masks import write_mask
from edgevos.errors import InputError, SourceError
from edgevos.runtime.sink_base import QueuedSink, Sink, prepare_output_dir, result_mask
from edgevos.runtime.uri import URI


_MASK_NAME = re.compile(r"^(\d{5,}\.png|\.\d{5,}\.png\..*\.tmp)$")  # a mask, or one being written


def _claim_mask_dir(path: Path, uri: URI, overwrite: bool) -> None:
    """A masks directory must hold no PNGs, so one run's masks never mix with another's (other
    files, such as this run's video or JSON, may share it); with ``overwrite`` the masks of an
    earlier run (``NNNNN.png``) are deleted first."""
    def pngs():
        try:
            return sorted(n for n in os.listdir(path) if n.lower().endswith((".png", ".tmp")))
        except OSError as exc:
            raise SourceError(f"{uri}: cannot list output directory {path}: {exc.strerror}") from exc

    found = pngs()
    if found and overwrite:
        for name in found:
            if _MASK_NAME.match(name):
                try:
                    (path / name).unlink()
                except OSError as exc:
                    raise SourceError(f"{uri}: cannot delete the old mask {path / name}: {exc.strerror}") from exc
        found = pngs()
        if found:
            raise InputError(f"{uri}: output directory {path} holds PNGs that are not masks (e.g. '{found[0]}'): "
                             "choose a new directory")
    if found:
        raise InputError(
            f"{uri}: output directory {path} already holds masks ({len(found)} files, e.g. '{found[0]}'): two "
            "runs' masks would mix; choose a new directory, or add ?overwrite=1 to delete them first")


class MaskSink(QueuedSink):
    """DAVIS-layout indexed PNGs, written atomically by one background thread."""

    def __init__(self, uri: URI, queue_size: int = 16):
        super().__init__(uri)
        self.dir = Path(uri.path)
        if uri.query.get("seq"):
            self.dir = self.dir / uri.query["seq"]
        unknown = set(uri.query) - {"seq", "overwrite"}
        if unknown:
            raise InputError(f"{uri}: unknown option(s) {sorted(unknown)}; known: seq, overwrite")
        overwrite = uri.query.get("overwrite", "0").strip().lower()
        if overwrite not in ("0", "1", "true", "false", "yes", "no"):
            raise InputError(f"{uri}: overwrite={uri.query['overwrite']!r} must be 1 or 0")
        prepare_output_dir(self.dir, uri)
        _claim_mask_dir(self.dir, uri, overwrite in ("1", "true", "yes"))
        self._write_mask = write_mask
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="edgevos-masks", daemon=True)
        self._thread.start()
        self.written = 0

    def path_for(self, frame_index: int) -> Path:
        return self.dir / f"{int(frame_index):05d}.png"

    def _handle(self, item) -> None:
        self._write_mask(self.path_for(item[0]), item[1])
        self.written += 1

    def _raise_error(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SourceError(f"{self.uri}: writing masks to {self.dir} failed: {reason}") from exc

    def write(self, frame_index: int, rgb, result) -> None:
        self._check_open()
        self._raise_error()
        mask = result_mask(result)
        if mask.dtype != np.uint8:
            if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > 255:
                raise InputError(f"{self.uri}: mask must hold ids 0..255, got dtype {mask.dtype}")
            mask = mask.astype(np.uint8)
        self._queue.put((int(frame_index), np.array(mask, copy=True)))
        self.frames += 1

    def flush(self) -> None:
        """Block until every queued mask is on disk."""
        self._queue.join()
        self._raise_error()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.put(None)
        self._thread.join()
        self.frames = self.written  # what is on disk, not what was queued
        self._raise_error()


class JsonSink(Sink):
    """One JSON object per line and frame: gate decision, timings, object areas."""

    def __init__(self, uri: URI):
        super().__init__(uri)
        self.path = Path(uri.path)
        prepare_output_dir(self.path.parent if str(self.path.parent) else Path("."), uri)
        try:
            self._fh = open(self.path, "w", buffering=1)
        except OSError as exc:
            raise SourceError(f"{uri}: cannot write {self.path}: {exc.strerror}") from exc

    def write(self, frame_index: int, rgb, result) -> None:
        self._check_open()
        mask = result_mask(result)
        counts = np.bincount(mask.reshape(-1), minlength=256) if mask.dtype == np.uint8 else None
        if counts is None:
            ids, counts = np.unique(mask, return_counts=True)
        else:
            ids = np.flatnonzero(counts)
            counts = counts[ids]
        rec = {
            "frame": int(frame_index),
            "reused": getattr(result, "reused", None),
            "p_gate": _num(getattr(result, "p_gate", None)),
            "total_ms": _num(getattr(result, "total_ms", None)),
            "stage_ms": {k: _num(v) for k, v in (getattr(result, "stage_ms", None) or {}).items()},
            "object_pixels": {str(int(i)): int(c) for i, c in zip(ids, counts) if 0 < i < 255},
        }
        try:
            self._fh.write(json.dumps(rec) + "\n")
        except OSError as exc:
            raise SourceError(f"{self.uri}: cannot write {self.path}: {exc.strerror}") from exc
        self.frames += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fh.close()


def _num(v):
    if v is None:
        return None
    return round(float(v), 4)
