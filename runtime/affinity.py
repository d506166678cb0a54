"""Keep inference on its own CPU cores, and the camera/file I/O off them (Linux).

A pipeline runs inference in the calling thread (plus the backend's intra-op
threads) while GStreamer decodes, converts and encodes in its own threads and
the sinks write in theirs.  Left to the scheduler, those threads land on the
inference core now and then and stretch single steps.  ``CoreSplit`` pins the
inference threads to chosen cores and every other thread of the process to
the remaining ones, and puts everything back afterwards::

    split = CoreSplit({0})
    session = split.build(lambda: Session.from_bundle(...))  # its thread pool counts as inference
    ...                                     # start the source and sinks
    split.apply()                           # again whenever threads were started
    split.restore()

``apply`` sees every thread that exists when it runs (``/proc/self/task``);
threads started later inherit the affinity of the thread that starts them, so
``run_pipeline`` applies again after the first frame (sinks start their
pipelines on it) and at the end of the warm-up.
"""
from __future__ import annotations

import os
import threading
from typing import Dict, Iterable, Optional, Set

from edgevos.errors import InputError

TASKS = "/proc/self/task"


def parse_cores(text: str) -> Set[int]:
    """``"0"`` or ``"0,1"`` or ``"2-3"`` -> a set of core numbers."""
    cores: Set[int] = set()
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                cores.update(range(int(a), int(b) + 1))
            elif part:
                cores.add(int(part))
    except ValueError:
        raise InputError(f"--pin-inference '{text}': give core numbers like 0 or 0,1 or 2-3") from None
    if not cores or min(cores) < 0:
        raise InputError(f"--pin-inference '{text}': give core numbers like 0 or 0,1 or 2-3")
    return cores


def _threads() -> Iterable[int]:
    try:
        return [int(t) for t in os.listdir(TASKS)]
    except OSError:
        return []


class CoreSplit:
    """Inference threads on ``cores``, every other thread of this process on the other allowed cores."""

    def __init__(self, cores: Iterable[int]):
        if not hasattr(os, "sched_setaffinity") or not os.path.isdir(TASKS):
            raise InputError("pinning inference to cores needs Linux (sched_setaffinity, /proc): drop --pin-inference")
        self.cores = set(int(c) for c in cores)
        self.allowed = os.sched_getaffinity(0)
        missing = self.cores - self.allowed
        if missing:
            raise InputError(f"cores {sorted(missing)} are not available to this process "
                             f"(allowed: {sorted(self.allowed)}): choose among those")
        self.others = self.allowed - self.cores
        if not self.others:
            raise InputError(f"pinning inference to {sorted(self.cores)} leaves no core for decoding and writing "
                             f"(allowed: {sorted(self.allowed)}): leave at least one core out")
        self.inference: Set[int] = {threading.get_native_id()}
        self._before = set(_threads())
        self._saved: Dict[int, Set[int]] = {}
        self.moved = 0

    def mark_inference(self) -> None:
        """Threads started since construction (a backend's intra-op pool) count as inference."""
        self.inference |= set(_threads()) - self._before

    def build(self, make):
        """``make()`` (e.g. building a session), with the threads it starts counted as inference."""
        result = make()
        self.mark_inference()
        return result

    def apply(self) -> int:
        """Pin every current thread; returns how many were (re)pinned."""
        n = 0
        for tid in _threads():
            target = self.cores if tid in self.inference else self.others
            try:
                cur = os.sched_getaffinity(tid)
                if tid not in self._saved:
                    self._saved[tid] = cur
                if cur != target:
                    os.sched_setaffinity(tid, target)
                    n += 1
            except OSError:  # the thread ended meanwhile
                continue
        self.moved += n
        return n

    def restore(self) -> None:
        """Every thread still alive gets back the affinity it had before."""
        for tid, mask in self._saved.items():
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:
                continue
        self._saved.clear()

    def describe(self) -> Dict[str, object]:
        return {"inference_cores": sorted(self.cores), "io_cores": sorted(self.others),
                "inference_threads": len(self.inference), "threads_pinned": self.moved}


def thread_affinity(tid: Optional[int] = None) -> Set[int]:
    """The affinity of a thread of this process (default: the calling one)."""
    return os.sched_getaffinity(threading.get_native_id() if tid is None else tid)
