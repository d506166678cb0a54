"""Parsers for the small text values every verb takes: sizes ``HxW`` and comma lists."""
from __future__ import annotations

import re
from typing import List, Tuple

from edgevos.errors import InputError


def parse_hw(text: str, what: str = "size", multiple: int = 1) -> Tuple[int, int]:
    """``"HxW"`` -> ``(H, W)``.

    Args:
        text: height and width joined by ``x`` (``"480x864"``; ``X`` and spaces allowed).
        what: how the value is named in an error (``"--input-size"``).
        multiple: both sides must be positive multiples of this.

    Returns:
        (height, width) as integers.
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise InputError(f"{what} '{text}' is not a size: write it as HEIGHTxWIDTH, e.g. 256x448")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 1 or w < 1 or h % multiple or w % multiple:
        need = "positive" if multiple == 1 else f"positive multiples of {multiple}"
        raise InputError(f"{what} '{text}': both sides must be {need} (e.g. 256x448)")
    return h, w


#: more backend threads than this only costs memory (each ONNX Runtime thread holds its own arena)
MAX_THREADS = 256


def number(kind, low=None, high=None, low_open: bool = False):
    """An argparse ``type``: a ``kind`` (int or float) within [low, high] (``low_open``: above low).

    A value out of range, not a number or not finite is refused by argparse (exit 2) with
    the option's name, the value and the range.

    Args:
        kind: ``int`` or ``float``.
        low, high: the range (None: open on that side).
        low_open: the value must be above ``low``, not just at least ``low``.

    Returns:
        The parse function.
    """
    import argparse
    import math

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not {'a whole number' if kind is int else 'a number'}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
        if low is not None and (v <= low if low_open else v < low):
            raise argparse.ArgumentTypeError(f"{text} must be {'above' if low_open else 'at least'} {low}")
        if high is not None and v > high:
            raise argparse.ArgumentTypeError(f"{text} must be at most {high}")
        return v

    return parse


def threads_arg():
    """The argparse ``type`` of every verb's ``--threads``: 1 .. :data:`MAX_THREADS`."""
    return number(int, 1, MAX_THREADS)


def split_list(text) -> List[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (None or empty: ``[]``)."""
    return [t.strip() for t in str(text or "").split(",") if t.strip()]


def parse_taus(text) -> List[float]:
    """``"1,0.7"`` -> ``[1.0, 0.7]``: reuse-gate thresholds, each in [0, 1].

    Args:
        text: comma-separated numbers, or one number.

    Returns:
        The thresholds in the given order.
    """
    try:
        taus = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--tau '{text}' is not a comma-separated list of numbers in [0, 1]") from None
    bad = [t for t in taus if not 0.0 <= t <= 1.0]
    if not taus or bad:
        raise InputError(f"--tau values {bad or text} must lie in [0, 1] (1 = never reuse)")
    return taus


def check_writable(path, what: str, *, directory: bool = False):
    """Check that ``path`` can be written, before any work is done.

    A file's parent (or a directory itself) must exist and be writable, or be
    creatable under a writable ancestor; a file path must not be a directory.
    Nothing is created.

    Args:
        path: where the output will go.
        what: how the value is named in an error (``"--log"``).
        directory: the output is a directory (a bundle, a masks folder).

    Returns:
        The path as a :class:`pathlib.Path`.
    """
    import os
    from pathlib import Path

    p = Path(path)
    if not str(path).strip():
        raise InputError(f"{what} is empty: give a path to write")
    if not directory and p.is_dir():
        raise InputError(f"{what} '{path}' is a directory: give a file name inside it")
    if directory and p.exists() and not p.is_dir():
        raise InputError(f"{what} '{path}' is a file, not a directory: choose another location")
    probe = p if directory and p.is_dir() else p.parent if str(p.parent) else Path(".")
    while not probe.exists():  # the first ancestor that exists decides
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(f"{what} '{path}': '{probe}' is a file, so no directory can be made there")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{what} '{path}': directory '{probe}' is not writable: choose another location")
    if not directory and p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{what} '{path}' exists and is read-only: choose another name or make it writable")
    return p


def same_file(a, b) -> bool:
    """True when two paths name the same file or directory (symlinks, ``..`` and hard links
    resolved); paths that do not exist yet compare by their resolved names."""
    import os

    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)
