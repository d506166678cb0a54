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
