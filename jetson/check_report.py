"""The rows and the report of ``edgevos check`` (:mod:`edgevos.jetson.check`): one :class:`Row` per
check (PASS / WARN / FAIL / SKIP), the verdict, the table printed on the board, the table of engine
sets and the report as strict JSON."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

#: the report's format tag (``check.json``)
FORMAT = "edgevos-check/1"
STATES = ("PASS", "WARN", "FAIL", "SKIP")


@dataclass
class Row:
    """One line of the table: a check, its state (PASS / WARN / FAIL / SKIP) and what it found."""

    name: str
    state: str
    detail: str

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError(f"state {self.state!r} is not one of {STATES}")

    def as_dict(self) -> dict:
        return {"name": self.name, "state": self.state, "detail": self.detail}


def verdict(rows: Sequence[Row]) -> str:
    """'FAIL' when a row failed, else 'PASS'."""
    return "FAIL" if any(r.state == "FAIL" for r in rows) else "PASS"


def render_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned ``check  state  detail`` table."""
    width = max([len("check")] + [len(r.name) for r in rows])
    lines = [f"{'check'.ljust(width)}  state  detail"]
    lines += [f"{r.name.ljust(width)}  {r.state.ljust(5)}  {r.detail}" for r in rows]
    return "\n".join(lines)


ENGINE_COLUMNS = ("engine set", "from", "min SNR fp32", "min SNR src", "IoU fp32", "IoU src", "stages ms",
                  "trtexec ms")


def engine_table(engines: Mapping[str, Mapping]) -> str:
    """One line per engine set of a report: worst stage SNR (dB) against ONNX Runtime FP32 and the
    source graph, mean mask IoU against each, the sum of the stages' median times on the backend
    and of trtexec's GPU compute means ('-' where not measured)."""
    def num(v, fmt):
        if v is None:
            return "-"
        if isinstance(v, str):
            return v
        return "inf" if math.isinf(v) else format(v, fmt)

    body = []
    for label, e in engines.items():
        src = e.get("source", "fp32")
        stages = e.get("stages") or []
        e2e = e.get("e2e") or {}
        ms = e.get("stage_ms") or {}
        tx = [t.get("mean_ms") for t in (e.get("trtexec_ms") or {}).values() if t]
        body.append((
            label, src,
            num(_min(_snr(r.get("snr_vs_fp32_db")) for r in stages), ".1f"),
            num(_min(_snr(r.get(f"snr_vs_{src}_db")) for r in stages), ".1f") if src != "fp32" else "-",
            num((e2e.get("fp32") or {}).get("mean"), ".3f"),
            num((e2e.get(src) or {}).get("mean"), ".3f") if src != "fp32" else "-",
            num(sum(t["p50_ms"] for t in ms.values()) if ms else None, ".2f"),
            num(sum(tx) if tx and None not in tx else None, ".3f"),
        ) if not e.get("error") else (label, src, "error: " + str(e["error"])[:60], "", "", "", "", ""))
    rows = [ENGINE_COLUMNS] + body
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(ENGINE_COLUMNS))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _snr(v):
    """An SNR as stored in a report ('inf' after JSON) back to a float."""
    if isinstance(v, str):
        return float(v)
    return v


def _min(values):
    vals = [v for v in values if v is not None]
    return min(vals) if vals else None


def plain_json(obj):
    """``obj`` with non-finite floats as the strings 'inf', '-inf', 'nan' (strict JSON) and paths as text."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return plain_json(obj.item())
    return obj
