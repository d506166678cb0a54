"""The accuracy checks of ``edgevos check`` (:mod:`edgevos.jetson.check`): an engine set against
ONNX Runtime on the same inputs, per stage and output (SNR and max |diff| on feeds recorded from
the step program, :func:`record_references`) and end to end (mask IoU of the step program on the
clip), and the rows that judge them (:func:`judge_stages`, :func:`judge_e2e`)."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from edgevos.jetson.check_engines import _close
from edgevos.jetson.check_report import Row

#: an output whose SNR against the graph it was built from is below this is suspect (WARN):
#: FP16 float layers between INT8 regions already cost 12-27 dB on the shipped encoders
SNR_WARN_DB = 10.0
#: end-to-end mask IoU against ONNX Runtime on the same graph below which a set is suspect (WARN)
IOU_WARN = 0.9
#: end-to-end mask IoU against ONNX Runtime FP32 below which the masks are wrong (FAIL)
IOU_FAIL = 0.5


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - got)^2); inf when equal."""
    r = np.asarray(ref, np.float64)
    g = np.asarray(got, np.float64)
    noise = float(((r - g) ** 2).sum())
    if noise == 0.0:
        return float("inf")
    return float(10.0 * np.log10(max(float((r ** 2).sum()), 1e-30) / noise))


def compare_outputs(refs: Sequence[Mapping[str, np.ndarray]], gots: Sequence[Mapping[str, np.ndarray]]) -> Dict[str, dict]:
    """Per output over paired samples: SNR (dB, all samples pooled), max |diff|, max |ref| and
    whether every value was finite."""
    acc: Dict[str, dict] = {}
    for ref, got in zip(refs, gots):
        for name, r in ref.items():
            g = np.asarray(got[name], np.float64)
            r = np.asarray(r, np.float64)
            a = acc.setdefault(name, {"noise": 0.0, "signal": 0.0, "max_abs_diff": 0.0, "max_abs_ref": 0.0,
                                      "finite": True, "samples": 0})
            finite = bool(np.isfinite(g).all())
            a["finite"] &= finite
            d = np.abs(r - g) if finite else np.zeros_like(r)
            a["noise"] += float((d ** 2).sum())
            a["signal"] += float((r ** 2).sum())
            a["max_abs_diff"] = max(a["max_abs_diff"], float(d.max()) if d.size else 0.0)
            a["max_abs_ref"] = max(a["max_abs_ref"], float(np.abs(r).max()) if r.size else 0.0)
            a["samples"] += 1
    out = {}
    for name, a in acc.items():
        if not a["finite"]:
            snr = None
        elif a["noise"] == 0.0:
            snr = float("inf")
        else:
            snr = float(10.0 * np.log10(max(a["signal"], 1e-30) / a["noise"]))
        out[name] = {"snr_db": snr, "max_abs_diff": a["max_abs_diff"], "max_abs_ref": a["max_abs_ref"],
                     "finite": a["finite"], "samples": a["samples"]}
    return out


def run_stage(backend, stage: str, feeds: Sequence[Mapping[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    """The stage's outputs on every feed, copied to the host."""
    return [{k: np.array(v) for k, v in backend.run(stage, f).items()} for f in feeds]


def compare_engine(candidate, references: Mapping[str, Mapping[str, List[dict]]],
                   feeds: Mapping[str, Sequence[Mapping[str, np.ndarray]]]) -> List[dict]:
    """Rows ``{stage, output, samples, finite, snr_vs_<ref>_db, max_abs_diff_vs_<ref>}`` of one
    engine set on the recorded ``feeds``, against each reference's outputs on the same feeds
    (``references[name][stage]``: outputs per feed)."""
    rows = []
    for stage, samples in feeds.items():
        if not samples or not candidate.has(stage):
            continue
        got = run_stage(candidate, stage, samples)
        by_output: Dict[str, dict] = {}
        for ref_name, ref in references.items():
            if stage not in ref:
                continue
            for output, c in compare_outputs(ref[stage], got).items():
                row = by_output.setdefault(output, {"stage": stage, "output": output, "samples": c["samples"],
                                                    "finite": c["finite"]})
                row["finite"] = row["finite"] and c["finite"]
                row[f"snr_vs_{ref_name}_db"] = c["snr_db"]
                row[f"max_abs_diff_vs_{ref_name}"] = c["max_abs_diff"]
        rows.extend(by_output.values())
    return rows


def judge_stages(label: str, rows: Sequence[dict], source: str) -> Row:
    """One row for an engine set's stage comparisons: FAIL on a non-finite output, WARN when an
    output's SNR against the graph it was built from is below :data:`SNR_WARN_DB`."""
    name = f"{label} stages"
    if not rows:
        return Row(name, "SKIP", "no recorded feeds")
    bad = [f"{r['stage']}.{r['output']}" for r in rows if not r["finite"]]
    if bad:
        return Row(name, "FAIL", f"non-finite outputs: {', '.join(bad)}")
    key = f"snr_vs_{source}_db"

    def worst(k):
        have = [r for r in rows if r.get(k) is not None]
        return min(have, key=lambda r: r[k]) if have else None

    w_fp32, w_src = worst("snr_vs_fp32_db"), worst(key)
    parts = []
    if w_fp32:
        parts.append(f"min SNR vs ORT fp32 {_db(w_fp32['snr_vs_fp32_db'])} ({w_fp32['stage']}.{w_fp32['output']})")
    if w_src and source != "fp32":
        parts.append(f"vs ORT {source} {_db(w_src[key])} ({w_src['stage']}.{w_src['output']})")
    state = "WARN" if w_src and w_src[key] < SNR_WARN_DB else "PASS"
    if state == "WARN":
        parts.append(f"below {SNR_WARN_DB:g} dB against the graph it was built from")
    return Row(name, state, "; ".join(parts))


def _db(v) -> str:
    return "inf dB" if v is not None and math.isinf(v) else ("-" if v is None else f"{v:.1f} dB")


def mask_ious(reference: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict:
    """Mean and min mask IoU over frames 1.. (frame 0 is the given mask)."""
    from edgevos.metrics import agreement_iou

    ious = [agreement_iou(r, m) for r, m in zip(list(reference)[1:], list(masks)[1:])]
    return {"mean": float(np.mean(ious)) if ious else 1.0, "min": float(np.min(ious)) if ious else 1.0,
            "frames": len(ious)}


def judge_e2e(label: str, e2e: Mapping[str, dict], source: str) -> Row:
    """``e2e[ref]`` = mask IoU (mean, min) against ONNX Runtime on ``ref``: FAIL below
    :data:`IOU_FAIL` against FP32, WARN below :data:`IOU_WARN` against the source graph."""
    name = f"{label} masks"
    if not e2e:
        return Row(name, "SKIP", "no clip")
    fp32 = e2e.get("fp32")
    src = e2e.get(source, fp32)
    parts = []
    if fp32:
        parts.append(f"IoU vs ORT fp32 {fp32['mean']:.3f} (min {fp32['min']:.3f})")
    if source != "fp32" and source in e2e:
        parts.append(f"vs ORT {source} {src['mean']:.3f} (min {src['min']:.3f})")
    if fp32 and fp32["mean"] < IOU_FAIL:
        return Row(name, "FAIL", "; ".join(parts) + f": below {IOU_FAIL} against FP32, the masks are wrong")
    if src and src["mean"] < IOU_WARN:
        return Row(name, "WARN", "; ".join(parts) + f": below {IOU_WARN} against the graph it was built from")
    return Row(name, "PASS", "; ".join(parts))


def _program_factory(bundle, tau: float):
    from edgevos.models.registry import get_family

    fam = get_family(bundle.family)
    return lambda backend, t=tau: fam.make_program(backend, bundle.config, tau=t)


def record_references(bundle, sequences, e2e_frames: int, samples: int, tau: float, references: Sequence[str],
                      threads: Optional[int] = None) -> tuple:
    """ONNX Runtime on each reference precision: the feeds every stage receives (recorded on
    FP32 over the first sequence at tau and at 0, so reuse-path stages run too), each
    reference's outputs on those feeds, and its masks on every sequence at ``tau``."""
    from edgevos.backend import open_backend
    from edgevos.export.calibrate import RecordingBackend, run_program

    make = _program_factory(bundle, tau)
    fp32 = open_backend("onnxruntime", bundle, "fp32", threads)
    rec = RecordingBackend(fp32, max_samples_per_stage=samples, seed=0)
    for t in sorted({float(tau), 0.0}, reverse=True):
        run_program(make(rec, t), sequences[0], min(len(sequences[0]), max(samples, 2)))
    feeds = {s: list(v) for s, v in rec.samples.items() if v}
    outputs, masks = {}, {}
    for ref in references:
        be = fp32 if ref == "fp32" else open_backend("onnxruntime", bundle, ref, threads)
        outputs[ref] = {s: run_stage(be, s, f) for s, f in feeds.items()}
        masks[ref] = [run_program(make(be), seq, e2e_frames) for seq in sequences]
        if be is not fp32:
            _close(be)
    _close(fp32)
    return feeds, outputs, masks
