"""Parity of exported stages against the PyTorch FP32 reference.

Per stage and precision: max/mean |diff| and SNR (dB) of every output against
the reference backend on held-out recorded feeds.  End to end: the same step
program runs on the reference and on each candidate backend over held-out
sequences; per-frame mask IoU against the reference and the J&F of each
against the ground truth.  Results are a JSON-ready dict and a printed table.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from edgevos.metrics import agreement_iou, evaluate_sequence
from edgevos.backend import Backend


def _accumulate(acc: dict, ref: np.ndarray, got: np.ndarray) -> None:
    r = np.asarray(ref, np.float64)
    g = np.asarray(got, np.float64)
    d = np.abs(r - g)
    acc["max_abs_diff"] = max(acc.get("max_abs_diff", 0.0), float(d.max()) if d.size else 0.0)
    acc["_sum_abs"] = acc.get("_sum_abs", 0.0) + float(d.sum())
    acc["_sum_sq_noise"] = acc.get("_sum_sq_noise", 0.0) + float((d**2).sum())
    acc["_sum_sq_ref"] = acc.get("_sum_sq_ref", 0.0) + float((r**2).sum())
    acc["_n"] = acc.get("_n", 0) + d.size
    acc["max_abs_ref"] = max(acc.get("max_abs_ref", 0.0), float(np.abs(r).max()) if r.size else 0.0)


def _finish(acc: dict) -> dict:
    n = max(acc.pop("_n", 0), 1)
    noise = acc.pop("_sum_sq_noise", 0.0)
    signal = acc.pop("_sum_sq_ref", 0.0)
    acc["mean_abs_diff"] = acc.pop("_sum_abs", 0.0) / n
    acc["snr_db"] = float("inf") if noise == 0 else float(10 * np.log10(max(signal, 1e-30) / noise))
    return acc


def stage_parity(
    reference: Backend,
    candidates: Mapping[str, Backend],
    feeds: Mapping[str, Sequence[Mapping[str, np.ndarray]]],
) -> List[dict]:
    """Rows ``{stage, precision, output, samples, max_abs_diff, mean_abs_diff, snr_db, max_abs_ref}``."""
    rows = []
    for stage, samples in feeds.items():
        if not samples:
            continue
        refs = [reference.run(stage, f) for f in samples]
        for precision, backend in candidates.items():
            accs: Dict[str, dict] = {}
            for f, ref in zip(samples, refs):
                got = backend.run(stage, f)
                for name, r in ref.items():
                    _accumulate(accs.setdefault(name, {}), r, got[name])
            for name, acc in accs.items():
                row = {"stage": stage, "precision": precision, "output": name, "samples": len(samples)}
                runs_in = getattr(backend, "stage_precision", {}).get(stage)
                if runs_in and runs_in != precision:
                    row["runs_in"] = runs_in
                row.update(_finish(acc))
                rows.append(row)
    return rows


def sequence_jf(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray],
                protocol: str = "semi") -> Optional[dict]:
    """``{"J&F", "J", "F"}`` means over objects via edgevos.metrics (``None`` without ground truth);
    ``protocol`` as :func:`edgevos.metrics.evaluate_sequence`."""
    if any(m is None for m in gt_masks) or len(gt_masks) < 3:
        return None
    res = evaluate_sequence(list(gt_masks), list(pred_masks), protocol=protocol)
    stats = list(res["stats"].values())
    return {
        "J&F": float(np.mean([s["J&F-Mean"] for s in stats])),
        "J": float(np.mean([s["J-Mean"] for s in stats])),
        "F": float(np.mean([s["F-Mean"] for s in stats])),
    }


def end_to_end(
    program_factory: Callable[[Backend], object],
    reference: Backend,
    candidates: Mapping[str, Backend],
    sequences: Sequence,
    max_frames: Optional[int] = None,
    progress: bool = False,
) -> dict:
    """Run the step program on every backend over ``sequences``; per precision: mask IoU
    against the reference per frame and the J&F change against the ground truth."""
    from edgevos.export.calibrate import run_program

    out = {"sequences": [], "per_precision": {}}
    backends = {"reference": reference, **candidates}
    for seq in sequences:
        n = len(seq) if max_frames is None else min(len(seq), int(max_frames))
        gt = [seq.mask(i) for i in range(n)]
        masks, protocol = {}, "semi"
        for key, backend in backends.items():
            program = program_factory(backend)
            protocol = "semi" if getattr(program, "semi", True) else "unsupervised"
            masks[key] = run_program(program, seq, n)
        entry = {"name": str(getattr(seq, "name", "")), "frames": n,
                 "reference": sequence_jf(gt, masks["reference"], protocol)}
        for precision in candidates:
            ious = [agreement_iou(r, c) for r, c in zip(masks["reference"][1:], masks[precision][1:])]
            entry[precision] = {
                "iou_vs_reference_mean": float(np.mean(ious)) if ious else 1.0,
                "iou_vs_reference_min": float(np.min(ious)) if ious else 1.0,
                "jf": sequence_jf(gt, masks[precision], protocol),
            }
        out["sequences"].append(entry)
    for precision in candidates:
        ious = [e[precision]["iou_vs_reference_mean"] for e in out["sequences"]]
        mins = [e[precision]["iou_vs_reference_min"] for e in out["sequences"]]
        summary = {"iou_vs_reference_mean": float(np.mean(ious)) if ious else None,
                   "iou_vs_reference_min": float(np.min(mins)) if mins else None}
        pairs = [(e["reference"], e[precision]["jf"]) for e in out["sequences"]]
        pairs = [(r, c) for r, c in pairs if r and c]
        for key in ("J&F", "J"):
            vals = [(r[key], c[key]) for r, c in pairs if r.get(key) is not None and c.get(key) is not None]
            if vals:
                summary[f"{key}_reference"] = float(np.mean([v[0] for v in vals]))
                summary[key] = float(np.mean([v[1] for v in vals]))
                summary[f"{key}_change"] = summary[key] - summary[f"{key}_reference"]
        out["per_precision"][precision] = summary
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if np.isinf(v):
            return "inf"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def format_table(rows: Sequence[Mapping], cols: Sequence[str]) -> str:
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def format_report(report: Mapping) -> str:
    """The stage table and the end-to-end table of a parity report, as text."""
    parts = []
    if report.get("stages"):
        parts.append("per-stage parity vs PyTorch FP32 (held-out recorded feeds)")
        parts.append(format_table(report["stages"], ["stage", "precision", "output", "runs_in", "samples", "max_abs_diff", "mean_abs_diff", "snr_db"]))
    e2e = report.get("end_to_end")
    if e2e and e2e.get("per_precision"):
        rows = [{"precision": p, **v} for p, v in e2e["per_precision"].items()]
        parts.append(f"end to end vs PyTorch on {len(e2e['sequences'])} held-out sequence(s)")
        parts.append(format_table(rows, ["precision", "iou_vs_reference_mean", "iou_vs_reference_min", "J&F_reference", "J&F", "J&F_change"]))
    return "\n".join(parts)


def end_to_end_from_bundle(bundle_dir, heldout: str, names: Sequence[str] = (), max_frames: Optional[int] = 30, threads: Optional[int] = 1) -> dict:
    """Torch-free: J&F per precision of a bundle on held-out sequences (reference: its fp32)."""
    from edgevos.backend import open_backend
    from edgevos.bundle import load_bundle
    from edgevos.export.calibrate import open_sequences
    from edgevos.models.registry import get_family

    bundle = load_bundle(bundle_dir)
    fam = get_family(bundle.family)
    config = bundle.config

    def factory(backend):
        return fam.make_program(backend, config, tau=float(config.get("tau", 1.0)))

    onnx_precisions = [p for p in bundle.precisions if p in ("fp32", "int8-cpu", "int8-trt")]
    reference = open_backend("onnxruntime", bundle, "fp32", threads)
    cands = {p: open_backend("onnxruntime", bundle, p, threads) for p in onnx_precisions if p != "fp32"}
    seqs = open_sequences(heldout, names)
    return end_to_end(factory, reference, cands, seqs, max_frames)
