"""``edgevos bench``: the benchmark matrix a user quotes.

    edgevos bench --source test:// --out runs/bench --backend torch,onnxruntime \\
        --precision fp32,int8-cpu --tau 1,0.7 --frames 40
    edgevos bench --source ../shared/data/davis2016-train --sequences bear,boat --out runs/bench-davis
    edgevos bench --source clip.mp4 --init-mask first.png --out runs/bench-clip      # no GT: J&F n/a

Rows are family[:preset] x backend x precision x tau.  ``torch`` rows run the
checkpoint with :meth:`Session.from_model`; ``onnxruntime`` and ``tensorrt`` rows
run a bundle exported once per family (in a child process) and cached in
``OUT/bundles/<family>-<precision>-<HxW>``.  Every sequence is decoded into
memory first and played through :func:`edgevos.runtime.pipeline.run_pipeline`, so
FPS and latency measure the session, not the decoder; the first ``--warmup``
frames of every sequence (the first is the initialisation) are excluded.

Per row: status, size on disk of what the row loads (the stage files of that
precision, or the checkpoint for torch), J&F (DAVIS protocol, where ground
truth exists), reuse rate, steady-state FPS, latency p50/p95/p99 end to end and
per stage, average watts and energy per frame where tegrastats/jtop can be
read, "n/a" elsewhere.  A failing row records its error and the matrix goes on.
Writes ``results.json``, ``results.md``, ``fps_vs_jf.png`` and the
physical-limit figure (``roofline.json``, ``roofline.png``: FLOPs per stage from
the ONNX graph, achieved GFLOP/s vs a GEMM peak measured in the same run).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from edgevos.bench_bundles import build_engines, bundle_name, ensure_bundle, stage_files_mb
from edgevos.bench_data import open_bench_sequences
from edgevos.bench_matrix import BACKEND_PRECISIONS, matrix, parse_families, parse_weights
from edgevos.bench_report import (
    best_peaks,
    device_line,
    fmt_value,
    jetson_warning,
    onnx_precision,
    roofline,
    row_label,
    write_report,
)
from edgevos.bench_row import run_row
from edgevos.errors import EdgevosError, InputError
from edgevos.parsing import parse_hw, split_list

__all__ = ["BACKEND_PRECISIONS", "add_arguments", "benchmark", "build_engines", "bundle_name", "ensure_bundle",
           "main", "matrix", "open_bench_sequences", "parse_families", "parse_weights", "run_row", "stage_files_mb"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- arguments
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True,
                   help="DAVIS-layout folder, a video file (+ --init-mask), test:// or "
                        "test://?objects=2&size=240x432&speed=1, davis://ROOT")
    p.add_argument("--out", required=True, help="output folder (results.json, results.md, plots, bundles/)")
    p.add_argument("--family", default="gfrtm", help="comma-separated families, slowfast with a preset: gfrtm,slowfast:3-7")
    p.add_argument("--backend", default="torch,onnxruntime", help="comma-separated: torch, onnxruntime, tensorrt")
    p.add_argument("--precision", default="fp32,int8-cpu",
                   help="comma-separated: fp32, int8-cpu, int8-trt (onnxruntime); int8, fp16, best (tensorrt engines)")
    p.add_argument("--tau", default="1,0.7", help="reuse-gate thresholds (1 = never reuse)")
    p.add_argument("--weights", default="default",
                   help="'default' (shipped), a checkpoint path, or per family: gfrtm=PATH,slowfast=PATH")
    p.add_argument("--input-size", default="256x448", help="model input HxW, multiples of 32 (default 256x448)")
    p.add_argument("--sequences", default=None,
                   help="comma-separated sequence names (DAVIS names; synthetic-<seed> for test://, default 2 sequences)")
    p.add_argument("--frames", type=int, default=None, help="frames per sequence (default: all; 60 for test://)")
    p.add_argument("--warmup", type=int, default=5, help="frames per sequence excluded from FPS/latency (default 5)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch / ONNX Runtime and the GEMM peak")
    p.add_argument("--init-mask", default=None, help="first-frame mask PNG when --source is a video file")
    p.add_argument("--max-reuse", type=int, default=None, help="force a computed frame after N reuses")
    p.add_argument("--calib", default="test://", help="calibration source for INT8 exports (default test://)")
    p.add_argument("--rebuild", action="store_true", help="re-export bundles even when cached ones match")
    p.add_argument("--no-roofline", action="store_true", help="skip the physical-limit figure")
    p.add_argument("--no-power", action="store_true", help="do not sample tegrastats/jtop")


def benchmark(source: str, out, *, family: str = "gfrtm", backend: str = "torch,onnxruntime",
              precision: str = "fp32,int8-cpu", tau="1,0.7", weights: str = "default", input_size="256x448",
              sequences: Optional[str] = None, frames: Optional[int] = None, warmup: int = 5,
              threads: Optional[int] = None, init_mask: Optional[str] = None, max_reuse: Optional[int] = None,
              calib: str = "test://", rebuild: bool = False, measure_roofline: bool = True,
              measure_power: bool = True) -> dict:
    """The benchmark matrix: family[:preset] x backend x precision x tau (what ``edgevos bench`` does).

    Args:
        source: DAVIS-layout folder, a video file (+ ``init_mask``), ``test://`` or ``davis://ROOT``.
        out: output folder (results.json, results.md, plots, cached bundles).
        family: comma-separated families, slowfast with a preset: ``"gfrtm,slowfast:3-7"``.
        backend: comma-separated: torch, onnxruntime, tensorrt.
        precision: comma-separated: fp32, int8-cpu, int8-trt (onnxruntime); int8, fp16, best (tensorrt).
        tau: reuse-gate thresholds (a comma-separated string or a list).
        weights: ``"default"``, a checkpoint path, or per family ``"gfrtm=PATH,slowfast=PATH"``.
        input_size: model input ``"HxW"`` or (H, W), multiples of 32.
        sequences: comma-separated sequence names.
        frames: frames per sequence (default: all; 60 for test://).
        warmup: frames per sequence excluded from FPS and latency.
        threads: CPU threads for torch / ONNX Runtime and the GEMM peak.
        init_mask: first-frame mask PNG when ``source`` is a video file.
        max_reuse: force a computed frame after this many reuses.
        calib: calibration source for INT8 exports.
        rebuild: re-export bundles even when cached ones match.
        measure_roofline: time a GEMM peak and write the physical-limit figure.
        measure_power: sample tegrastats/jtop.

    Returns:
        What ``results.json`` holds: run metadata, ``rows`` (one dict per row, with ``status``)
        and ``roofline``.
    """
    import numpy as np

    from edgevos.parsing import parse_taus

    t_start = time.perf_counter()
    families = parse_families(family)
    backends, precisions = split_list(backend), split_list(precision)
    taus = parse_taus(",".join(str(t) for t in tau) if isinstance(tau, (list, tuple)) else tau)
    size = parse_hw(input_size, "--input-size", multiple=32) if isinstance(input_size, str) else tuple(input_size)
    if warmup < 0:
        raise InputError(f"--warmup {warmup} must be >= 0")
    if frames is not None and frames < 3:
        raise InputError(f"--frames {frames}: need at least 3 frames per sequence")
    plan, skipped = matrix(families, backends, precisions, taus)
    if not plan:
        raise InputError(f"no row to run: backends {backends} x precisions {precisions} has no valid pair "
                         f"(torch: fp32; onnxruntime: fp32, int8-cpu, int8-trt; tensorrt: int8, fp16, best)")
    weights = parse_weights(weights, families)
    sequences, has_gt, src_desc = open_bench_sequences(source, split_list(sequences), frames, init_mask)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    from edgevos.doctor import collect

    device = collect()
    warning = jetson_warning(device)
    if warning:
        log.warning(warning.removeprefix("WARNING: "))
    log.info(f"[bench] device: {device_line(device)}")
    log.info(f"[bench] source: {src_desc}; {len(plan)} rows" + (f" (skipped: {', '.join(skipped)})" if skipped else ""))

    from edgevos.models.registry import get_family
    from edgevos.models.weights import resolve
    from edgevos.runtime.power import PowerMonitor
    from edgevos.runtime.session import Session

    models: Dict[tuple, object] = {}
    bundles: Dict[tuple, Path] = {}
    bundle_errors: Dict[tuple, str] = {}
    ckpt_paths: Dict[tuple, Path] = {}

    def checkpoint(fam, preset):
        """The checkpoint a (family, preset) runs: the user's, or one rebuilt with the preset."""
        key = (fam, preset)
        if key not in ckpt_paths:
            path = resolve(fam, weights[fam])
            if preset is not None:
                from edgevos.models.weights import save_checkpoint

                model = get_model(fam, preset)
                path = save_checkpoint(out / "bundles" / f"{fam}-{preset}.pt", fam, model)
            ckpt_paths[key] = Path(path)
        return ckpt_paths[key]

    def get_model(fam, preset):
        key = (fam, preset)
        if key not in models:
            overrides = {"preset": preset} if preset else {}
            path = resolve(fam, weights[fam])
            try:
                models[key] = get_family(fam).build(weights=str(path), input_size=size, **overrides)
            except RuntimeError as exc:  # e.g. a checkpoint of another preset: layer shapes differ
                first = str(exc).strip().splitlines()[0]
                raise InputError(f"{fam} weights {path} do not fit{' preset ' + preset if preset else ''} "
                                 f"({first}): pass weights trained with it, e.g. --weights {fam}=PATH") from exc
        return models[key]

    # bundles first (child processes), before anything in this process touches GStreamer or runs long
    need: Dict[tuple, List[str]] = {}
    for r in plan:
        if r["backend"] == "torch":
            continue
        p = onnx_precision(r["backend"], r["precision"])
        lst = need.setdefault((r["family"], r["preset"]), ["fp32"])
        if p not in lst:
            lst.append(p)
    for (fam, preset), precs in need.items():
        try:
            bundles[(fam, preset)] = ensure_bundle(out, fam, preset, checkpoint(fam, preset), precs, size,
                                                   calib, threads, rebuild)
        except Exception as exc:  # this family's bundle rows fail; the others run
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            bundle_errors[(fam, preset)] = msg if isinstance(exc, EdgevosError) else f"{type(exc).__name__}: {msg}"
            log.warning(f"[bench] {fam}{':' + preset if preset else ''}: {bundle_errors[(fam, preset)]}")
    # a bundle for the roofline when only torch rows were asked for is not exported: FLOPs come from bundles

    from edgevos.roofline import measure_peak

    peaks_before = None
    if measure_roofline:
        log.info(f"[bench] physical limit: timing a large GEMM ({threads or 'default'} threads)")
        peaks_before = measure_peak(threads)
    rows = []
    interrupted = False
    for k, spec in enumerate(plan, 1):
        r = dict(spec)
        key = (r["family"], r["preset"])
        label = f"{row_label(r)} tau={r['tau']:g}"
        log.info(f"[bench] {k}/{len(plan)} {label}")
        t0 = time.perf_counter()
        try:
            if r["backend"] == "torch":
                model = get_model(*key)
                r["size_mb"] = checkpoint(*key).stat().st_size / 1e6
                r["size_of"] = "checkpoint"
                make = lambda m=model, r=r: Session.from_model(m, tau=r["tau"], threads=threads,  # noqa: E731
                                                               max_reuse=max_reuse, family=r["family"])
            else:
                if key in bundle_errors:
                    raise EdgevosError(bundle_errors[key])
                bdir = bundles[key]
                prec = r["precision"] if r["backend"] == "onnxruntime" else f"trt-{r['precision']}"
                from edgevos.bundle import load_bundle

                b = load_bundle(bdir)
                r["bundle"] = str(bdir)
                r["size_mb"] = stage_files_mb(b, prec) if prec in b.precisions else None
                r["size_of"] = f"{prec} stage files"
                if r["backend"] == "tensorrt" and prec not in b.precisions:
                    b = build_engines(bdir, r["precision"])
                    r["size_mb"] = stage_files_mb(b, prec)
                make = lambda r=r, bdir=bdir: Session.from_bundle(  # noqa: E731
                    bdir, backend=r["backend"], precision=r["precision"], tau=r["tau"], threads=threads,
                    max_reuse=max_reuse)
            power = None if not measure_power else PowerMonitor()
            r.update(run_row(make, sequences, warmup, power=power))
            r["status"] = "ok"
        except KeyboardInterrupt:
            r["status"] = "interrupted"
            interrupted = True
        except Exception as exc:  # a failing row is recorded, the matrix goes on
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            r["status"] = f"error: {msg}" if isinstance(exc, EdgevosError) else f"error: {type(exc).__name__}: {msg}"
        r["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(r)
        if r["status"] == "ok":
            log.info(f"[bench]     {r['fps'] or float('nan'):.2f} FPS, reuse {fmt_value(r['reuse_rate'], '{:.2f}')}, "
                     f"J&F {fmt_value(r['J&F'], scale=100)} ({r['seconds']:.0f} s)")
        else:
            log.info(f"[bench]     {r['status']}")
        if interrupted:
            break

    roof = None
    if measure_roofline and not interrupted:
        try:
            roof = roofline(rows, bundles, best_peaks(peaks_before, measure_peak(threads)))
        except EdgevosError as exc:
            log.warning(f"[bench] physical-limit figure skipped: {exc}")

    # ------------------------------------------------------------------ write
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    frames_per_seq = [len(s) for s in sequences]
    meta = {
        "date": date,
        "command": "edgevos bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:]),
        "source": source,
        "source_description": src_desc,
        "ground_truth": has_gt,
        "sequences": [s.name for s in sequences],
        "frames_per_sequence": frames_per_seq,
        "frames_total": int(np.sum(frames_per_seq)),
        "warmup_per_sequence": warmup,
        "threads": threads,
        "input_size": list(size),
        "weights": {f: str(w) for f, w in weights.items()},
        "skipped": skipped,
        "device": device,
        "device_summary": device_line(device),
        "warning": warning,
        "interrupted": interrupted,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    results = {**meta, "rows": rows, "roofline": roof}
    print()
    print("\n".join(write_report(out, results)))
    if warning:
        log.warning(warning.removeprefix("WARNING: "))
    return results


def main(args) -> int:
    results = benchmark(args.source, args.out, family=args.family, backend=args.backend, precision=args.precision,
                        tau=args.tau, weights=args.weights, input_size=args.input_size, sequences=args.sequences,
                        frames=args.frames, warmup=args.warmup, threads=args.threads, init_mask=args.init_mask,
                        max_reuse=args.max_reuse, calib=args.calib, rebuild=args.rebuild,
                        measure_roofline=not args.no_roofline, measure_power=not args.no_power)
    if results["interrupted"]:
        return 130
    return 0 if any(r["status"] == "ok" for r in results["rows"]) else 1
