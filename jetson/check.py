"""One run that checks edgevos' TensorRT path on a Jetson and writes a report to attach to a bug.

``jetson/check.sh [BUNDLE] [options]`` (or ``edgevos check``, or ``python -m edgevos.jetson.check``):

1. **environment**: the board and L4T / JetPack (6.1+ needed), the power mode and whether
   ``jetson_clocks`` pinned the clocks, TensorRT (10.x), the CUDA 12 runtime and its driver,
   the GPU identity engines are keyed on, the GStreamer NVMM elements, and ``edgevos doctor``'s
   facts (in the JSON).
2. **engines**, with a bundle: the precision matrix the bundle allows (:func:`variants`: ``fp16``
   from the fp32 graphs, ``int8`` from ``int8-trt``, ``int8-f16`` from ``int8-trt-f16``, ``best``;
   ``fp16-dla<N>`` with ``--dla N``) built twice, by edgevos' Python builder and by the generated
   trtexec script, each into its own copy of the bundle under the output folder (the bundle
   itself is not changed); each engine's layer information is kept.
3. **accuracy**: every engine set against ONNX Runtime on the same inputs: per stage and output
   the SNR and max |diff| against the FP32 graph and against the graph the engine was built from
   (feeds recorded from the step program on the clip), and the end-to-end mask IoU of the step
   program on the clip against ONNX Runtime FP32 and against the source graph.
4. **speed**: each stage's median time on the TensorRT backend, and trtexec's GPU compute time
   per engine of the trtexec build.
5. **power**: a ``--frames`` (300) frame run of one engine set on ``--source`` with tegrastats
   logged to ``tegrastats.log`` and summarised (mean / max watts, energy per frame).

It prints one table (check, state, detail) and writes ``check.json`` (:data:`FORMAT`) and
``check.txt`` into ``--out``; every tool's output is kept under ``--out``/logs.  Exit status: 0
when no check failed (WARN allowed), 1 when one did, 2 on bad arguments.

What runs on the board and what is decided here is split: the row judgements
(:func:`board_row`, :func:`cuda_row`, :func:`judge_stages`, :func:`judge_e2e`, ...), the argument
lists (:func:`variants`, :func:`trtexec_time_args`), the comparisons (:func:`compare_outputs`,
:func:`compare_engine`), the log parsers (:func:`parse_trtexec_time`,
:func:`summarise_tegrastats`) and the report (:func:`render_table`) are plain functions; the
board is reached through :class:`Probe` (facts) and :class:`Tools` (build, open an engine set,
time with trtexec), which tests replace.

The checks live beside this module, one concept each: ``check_report`` (rows, table, JSON),
``check_environment`` (the board's facts), ``check_engines`` (the precision matrix and the tools
that build, open and time engines), ``check_accuracy`` (SNR and IoU against ONNX Runtime) and
``check_run`` (stage times and the power run).  This module runs them in order and is the
command line; every public name of those modules is importable from here.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edgevos.errors import EdgevosError, InputError
from edgevos.jetson.check_accuracy import (IOU_FAIL, IOU_WARN, SNR_WARN_DB, _program_factory, compare_engine,
                                           compare_outputs, judge_e2e, judge_stages, mask_ious, record_references,
                                           run_stage, snr_db)
from edgevos.jetson.check_engines import (TRTEXEC, Tools, Variant, _built_stages, _close, _find_trtexec,
                                          _runs_text, _time_engines, _trtexec_time_row, copy_for_engines,
                                          parse_trtexec_time, trtexec_time_args, variants)
from edgevos.jetson.check_environment import (CUDA_MAJOR, GST_NEEDED, GST_OPTIONAL, MIN_L4T, Probe, board_row,
                                              cuda_row, environment, gpu_row, gstreamer_row, l4t_tuple, power_row,
                                              tensorrt_row, tensorrt_usable)
from edgevos.jetson.check_report import (ENGINE_COLUMNS, FORMAT, STATES, Row, engine_table, plain_json,
                                         render_table, verdict)
from edgevos.jetson.check_run import _power_run, judge_run, pick_run_set, summarise_tegrastats, time_stages

__all__ = [
    # the rows and the report
    "FORMAT", "STATES", "ENGINE_COLUMNS", "Row", "verdict", "render_table", "engine_table", "plain_json",
    # the environment
    "MIN_L4T", "CUDA_MAJOR", "GST_NEEDED", "GST_OPTIONAL", "Probe", "l4t_tuple", "board_row", "power_row",
    "tensorrt_row", "cuda_row", "gpu_row", "gstreamer_row", "environment", "tensorrt_usable",
    # the engine sets
    "TRTEXEC", "Variant", "variants", "Tools", "copy_for_engines", "trtexec_time_args", "parse_trtexec_time",
    # accuracy
    "SNR_WARN_DB", "IOU_WARN", "IOU_FAIL", "snr_db", "compare_outputs", "run_stage", "compare_engine",
    "judge_stages", "mask_ious", "judge_e2e", "record_references",
    # speed and power
    "time_stages", "summarise_tegrastats", "judge_run", "pick_run_set",
    # this module
    "check_engine_set", "Options", "run_check", "add_arguments", "options_from_args", "main", "cli",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ one run
def check_engine_set(label: str, variant: Variant, backend, feeds, ref_outputs, ref_masks, sequences,
                     bundle, e2e_frames: int, tau: float) -> tuple:
    """Stage comparisons, end-to-end masks and stage times of one opened engine set -> (rows, record)."""
    from edgevos.export.calibrate import run_program

    refs = {k: v for k, v in ref_outputs.items() if k in ("fp32", variant.source)}
    stages = compare_engine(backend, refs, feeds)
    make = _program_factory(bundle, tau)
    masks = [run_program(make(backend), seq, e2e_frames) for seq in sequences]
    e2e = {}
    for ref, ref_m in ref_masks.items():
        if ref in ("fp32", variant.source):
            per = [mask_ious(r, m) for r, m in zip(ref_m, masks)]
            e2e[ref] = {"mean": float(np.mean([p["mean"] for p in per])), "min": float(np.min([p["min"] for p in per])),
                        "frames": int(sum(p["frames"] for p in per))}
    timing = time_stages(backend, feeds)
    rows = [judge_stages(label, stages, variant.source), judge_e2e(label, e2e, variant.source)]
    return rows, {"stages": stages, "e2e": e2e, "stage_ms": timing}


@dataclass
class Options:
    bundle: Optional[Path] = None
    out: Path = Path("edgevos-check")
    clip: str = "test://1"
    clip_mask: Optional[str] = None
    e2e_frames: int = 30
    samples: int = 8
    source: Optional[str] = None
    frames: int = 300
    tau: float = 1.0
    precisions: Optional[List[str]] = None
    run_precision: Optional[str] = None
    dla: Optional[int] = None
    workspace_mb: int = 1024
    trtexec: bool = True
    power_run: bool = True
    keep: bool = False
    threads: Optional[int] = None
    argv: List[str] = field(default_factory=list)


def run_check(opts: Options, probe: Optional[Probe] = None, tools: Optional[Tools] = None,
              power_command: Optional[List[str]] = None) -> dict:
    """Every check; returns the report (also written to ``opts.out``/check.json and check.txt)."""
    from edgevos import __version__

    out = Path(opts.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    probe = probe or Probe()
    tools = tools or Tools(trtexec=_find_trtexec(), log_dir=logs)
    if tools.log_dir is None:
        tools.log_dir = logs
    t0 = time.perf_counter()
    rows, facts = environment(probe)
    report = {"format": FORMAT, "edgevos": __version__, "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "argv": list(opts.argv), "environment": facts, "engines": {}, "run": None, "out": str(out)}
    if opts.bundle is not None:
        rows += _check_bundle(opts, tools, tensorrt_usable(rows), report, out, logs, power_command)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["checks"] = [r.as_dict() for r in rows]
    report["result"] = verdict(rows)
    report = plain_json(report)
    from edgevos.files import write_json

    write_json(out / "check.json", report, indent=1, allow_nan=False)
    text = render_table(rows)
    if report["engines"]:
        text += "\n\n" + engine_table(report["engines"])
    (out / "check.txt").write_text(text + f"\n\nresult: {report['result']}\n")
    return report


def _check_bundle(opts: Options, tools: Tools, unusable: Optional[str], report: dict, out: Path, logs: Path,
                  power_command) -> List[Row]:
    from edgevos.bundle import load_bundle
    from edgevos.export.calibrate import open_sequences

    rows: List[Row] = []
    bundle = load_bundle(opts.bundle)
    matrix = variants(bundle.precisions, opts.dla, opts.precisions, opts.workspace_mb)
    report["bundle"] = {"path": str(bundle.root), "family": bundle.family, "input_size": list(bundle.input_size),
                        "precisions": bundle.precisions, "variants": [v.label for v in matrix]}
    builders = ["python"] + (["trtexec"] if opts.trtexec else [])
    if unusable:
        for v in matrix:
            rows.append(Row(f"{v.label} build", "SKIP", unusable))
        rows.append(Row("run", "SKIP", unusable))
        return rows
    sequences = open_sequences(opts.clip, mask=opts.clip_mask, max_frames=opts.e2e_frames)[:1]
    references = ["fp32"] + (["int8-trt"] if any(v.source == "int8-trt" for v in matrix) else [])
    t = time.perf_counter()
    feeds, ref_outputs, ref_masks = record_references(bundle, sequences, opts.e2e_frames, opts.samples, opts.tau,
                                                      references, opts.threads)
    report["references"] = {"clip": opts.clip, "sequence": str(getattr(sequences[0], "name", "")),
                            "frames": min(len(sequences[0]), opts.e2e_frames), "precisions": references,
                            "samples": {s: len(f) for s, f in feeds.items()}, "seconds": round(time.perf_counter() - t, 1)}
    work = out / "work"
    built: Dict[str, Path] = {}
    for v in matrix:
        for builder in builders:
            label = f"{v.label}/{builder}"
            record: dict = {"variant": v.label, "builder": builder, "source": v.source, "engines": v.key,
                            "options": {"precision": v.options.precision, "trt_float": v.options.trt_float,
                                        "dla_core": v.options.dla_core, "workspace_mb": v.options.workspace_mb}}
            report["engines"][label] = record
            dest = work / v.label / builder / "bundle"
            t = time.perf_counter()
            try:
                if dest.exists():
                    shutil.rmtree(dest)
                copy_for_engines(bundle.root, dest)
                if builder == "python":  # one timing cache for every set: later builds reuse the timings
                    cached = replace(v, options=replace(v.options, timing_cache=str(work / "timing.cache")))
                    record.update(tools.build_python(dest, cached) or {})
                else:
                    record.update(tools.build_trtexec(dest, v) or {})
            except Exception as exc:  # noqa: BLE001 - one engine set failing is a row, not the end
                logger.debug("building %s failed", label, exc_info=True)
                record["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(Row(f"{label} build", "FAIL", record["error"]))
                continue
            record["build_seconds"] = round(time.perf_counter() - t, 1)
            record["built"] = _built_stages(dest, v)
            rows.append(Row(f"{label} build", "PASS", f"{record['build_seconds']:.0f} s; " + _runs_text(record["built"])))
            try:
                backend = tools.open_engines(dest, v)
            except Exception as exc:  # noqa: BLE001
                record["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(Row(f"{label} load", "FAIL", record["error"]))
                continue
            try:
                set_rows, res = check_engine_set(label, v, backend, feeds, ref_outputs, ref_masks, sequences, bundle,
                                                 opts.e2e_frames, opts.tau)
            except Exception as exc:  # noqa: BLE001
                record["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(Row(f"{label} run", "FAIL", record["error"]))
                continue
            finally:
                _close(backend)
            record.update(res)
            rows += set_rows
            rows.append(Row(f"{label} time", "PASS", ", ".join(f"{s} {t['p50_ms']:.2f} ms" for s, t in res["stage_ms"].items())))
            if builder == "trtexec":
                record["trtexec_ms"] = _time_engines(tools, dest, v, record)
                rows.append(_trtexec_time_row(label, record["trtexec_ms"]))
            else:
                built[v.label] = dest
    if opts.power_run:
        rows.append(_power_run(opts, bundle, built, report, out, tools, power_command))
    if not opts.keep:
        shutil.rmtree(work, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgevos.parsing import number, threads_arg

    p.add_argument("bundle", nargs="?", help="bundle directory (from 'edgevos export'); without it only the "
                                             "environment is checked")
    p.add_argument("--out", default=os.environ.get("CHECK_OUT"),
                   help="folder for check.json, check.txt, logs and the tegrastats log (default: "
                        "edgevos-check-<time> here)")
    p.add_argument("--precision", help="engine sets to check, comma-separated: fp16, int8, int8-f16, best, "
                                       "fp16-dla<N> (default: every one the bundle can build)")
    p.add_argument("--dla", type=number(int, 0), default=None, metavar="N", help="also build FP16 for DLA core N")
    p.add_argument("--clip", default="test://1",
                   help="sequence for the accuracy comparisons: a DAVIS-layout folder, a video with --clip-mask, "
                        "or test://N (default test://1, synthetic)")
    p.add_argument("--clip-mask", help="first-frame mask PNG of a --clip video")
    p.add_argument("--e2e-frames", type=number(int, 1), default=30, help="frames of the clip compared end to end (default 30)")
    p.add_argument("--samples", type=number(int, 1), default=8, help="recorded feeds per stage for the SNR (default 8)")
    p.add_argument("--source", help="source URI of the power run (default: test:// at the bundle's size)")
    p.add_argument("--frames", type=number(int, 1), default=300, help="frames of the power run (default 300)")
    p.add_argument("--run-precision", help="engine set of the power run (default: int8-f16, int8, fp16 or best, "
                                           "the first built)")
    p.add_argument("--tau", type=number(float, 0.0, 1.0), default=1.0, help="reuse threshold of the programs (default 1: every frame "
                                                          "computed)")
    p.add_argument("--workspace-mb", type=number(int, 1), default=1024, help="builder workspace limit in MiB (default 1024)")
    p.add_argument("--no-trtexec", action="store_true", help="build with edgevos' Python builder only")
    p.add_argument("--no-run", action="store_true", help="skip the power run")
    p.add_argument("--keep", action="store_true", help="keep the built engines under OUT/work")
    p.add_argument("--threads", type=threads_arg(), default=None, help="ONNX Runtime threads of the references")


def options_from_args(args, argv: Sequence[str] = ()) -> Options:
    for name in ("e2e_frames", "samples", "frames", "workspace_mb"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    bundle = None
    if args.bundle:
        bundle = Path(args.bundle)
        if not (bundle / "manifest.json").is_file():
            raise InputError(f"{bundle} is not an edgevos bundle (no manifest.json): export one with 'edgevos export' "
                             f"or leave it out")
    out = Path(args.out) if args.out else Path(f"edgevos-check-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()] if args.precision else None
    return Options(bundle=bundle, out=out, clip=args.clip, clip_mask=args.clip_mask, e2e_frames=args.e2e_frames,
                   samples=args.samples, source=args.source, frames=args.frames, tau=args.tau, precisions=precisions,
                   run_precision=args.run_precision, dla=args.dla, workspace_mb=args.workspace_mb,
                   trtexec=not args.no_trtexec, power_run=not args.no_run, keep=args.keep, threads=args.threads,
                   argv=list(argv))


def main(args) -> int:
    opts = options_from_args(args, getattr(args, "argv", None) or sys.argv[1:])
    report = run_check(opts)
    print(Path(opts.out, "check.txt").read_text(), end="")
    print(f"report: {Path(opts.out) / 'check.json'} (attach it and {Path(opts.out) / 'logs'} to a bug report)")
    return 0 if report["result"] == "PASS" else 1


def cli(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="jetson/check.sh", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return main(args)
    except InputError as exc:
        print(f"check: error: {exc}", file=sys.stderr)
        return 2
    except EdgevosError as exc:
        print(f"check: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli())
