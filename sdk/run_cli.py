"""``edgevos run SOURCE [SINK ...] --bundle B (--init-mask PNG | --init-box x,y,w,h)``.

Options may come before, between or after the source and sinks; a box with negative
values is written as it is (``--init-box -5,3,10,10``) or with ``=``.

The argument layer over :func:`edgevos.run`: segments a source URI frame by
frame and writes every sink, then prints a summary table.  The exit code says
how the run ended: 0 end of stream / --max-frames, 1 source or input error,
129 SIGHUP (terminal closed), 130 Ctrl-C, 143 SIGTERM.
"""
from __future__ import annotations

import logging
import re
import sys
import time

from edgevos.backend import BACKENDS
from edgevos.parsing import number, threads_arg

log = logging.getLogger(__name__)


#: the source and sinks may stand between options (edgevos.cli.parse)
INTERMIXED = True
#: a value that starts with '-' and a digit is a value, not an option (--init-box -5,3,10,10)
NEGATIVE_VALUE = re.compile(r"^-\.?\d[\d.,eE+-]*$")


def add_arguments(p) -> None:
    p._negative_number_matcher = NEGATIVE_VALUE  # argparse's own pattern takes only a lone number
    p.add_argument("source", help="source URI: file://clip.mp4, v4l2:///dev/video0, csi://0, rtsp://host/x, test://, davis://ROOT?seq=NAME")
    p.add_argument("sinks", nargs="*", help="sink URIs: file://out.mp4, masks://DIR, display://0, json://stats.jsonl")
    p.add_argument("--bundle", required=True, help="bundle directory (from edgevos export)")
    p.add_argument("--backend", default="onnxruntime", choices=list(BACKENDS), help="a registered backend")
    p.add_argument("--precision", default=None, help="bundle precision to load, e.g. int8-cpu, fp32, fp16, int8")
    p.add_argument("--tau", type=number(float, 0.0, 1.0), default=None, help="reuse-gate threshold (1 = never reuse)")
    p.add_argument("--max-reuse", type=number(int, 0), default=None, help="force a full step after this many reuses (default: the longest gap the weights' gate was trained on, when recorded)")
    p.add_argument("--reuse-max-area", type=number(float, 0.0, 1.0, low_open=True), default=None,
                   help="gfrtm: always compute an object covering more than this share of the frame (default: the "
                        "weights' own, GfrtmConfig.reuse_max_area; 1: no rule)")
    p.add_argument("--target-fps", type=number(float, 0.0, low_open=True), default=None,
                   help="FPS budget mode: steer tau live to hold this frame rate with the least reuse")
    p.add_argument("--threads", type=threads_arg(), default=None, help="CPU threads for the backend")
    p.add_argument("--pin-inference", metavar="CORES", default=None,
                   help="Linux: run inference on these cores (e.g. 0 or 0,1) and decoding/encoding/writing on the "
                        "others; --threads defaults to the number of these cores")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--init-mask", help="first-frame mask PNG (ids; DAVIS layout)")
    g.add_argument("--init-box", action="append",
                   help="x,y,w,h of an object in the first frame (GrabCut, refined by the model); repeat per object")
    p.add_argument("--no-refine-box", action="store_true", help="with --init-box: GrabCut's mask as it is")
    p.add_argument("--unsupervised", action="store_true",
                   help="an unsupervised model finds the primary moving object itself: no --init-mask / --init-box")
    p.add_argument("--max-frames", type=number(int, 1), default=None)
    p.add_argument("--warmup", type=number(int, 0), default=10, help="frames excluded from steady-state statistics")
    p.add_argument("--log", help="write the summary and per-frame stats as JSON here")
    p.add_argument("--timeout", type=number(float, 0.0, low_open=True), default=None, help="seconds without a frame before a source counts as stalled")
    p.add_argument("--reconnect", type=number(int, 0), default=0, help="live sources: reconnect attempts after a stall/disconnect")
    p.add_argument("--no-power", action="store_true", help="do not sample tegrastats/jtop")
    p.add_argument("--quiet", action="store_true", help="no live status line")


def _status_printer():
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(line: str) -> None:
        try:
            if tty:
                sys.stderr.write("\r" + line[:160] + "\x1b[K")
                sys.stderr.flush()
            elif time.perf_counter() - last[0] >= 5.0:
                log.info(line)
                last[0] = time.perf_counter()
        except OSError:  # the terminal went away (SIGHUP follows): the run itself goes on to a clean end
            pass

    return show, tty


def main(args) -> int:
    from edgevos.runtime.pipeline import run

    show, tty = _status_printer()
    summary = run(args.source, args.sinks, bundle=args.bundle, backend=args.backend, precision=args.precision,
                  tau=args.tau, max_reuse=args.max_reuse, reuse_max_area=args.reuse_max_area, target_fps=args.target_fps, threads=args.threads, first_mask=args.init_mask,
                  init_box=args.init_box, refine_box=not args.no_refine_box, unsupervised=args.unsupervised, pin_inference=args.pin_inference, max_frames=args.max_frames,
                  warmup=args.warmup, timeout=args.timeout, reconnect=args.reconnect, power=not args.no_power,
                  status=None if args.quiet else show, log=args.log)
    if tty and not args.quiet:
        sys.stderr.write("\n")
    print(summary.table())
    print(f"stopped by: {summary.stopped_by}" + (f" ({summary.error})" if summary.error else ""))
    if summary.dropped:
        log.warning(f"the source lost {summary.dropped} frame(s) (a live source outran, or a file's decoder "
                    "dropped them); outputs keep the source's frame numbers")
    for uri, frames in zip(summary.sinks, summary.sink_frames):
        if frames:
            print(f"wrote {uri} ({frames} frames)")
    return int(summary.exit_code)
