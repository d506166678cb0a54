"""``edgevos run SOURCE [SINK ...] --bundle B (--init-mask PNG | --init-box x,y,w,h)``.

Segments a source URI frame by frame with a :class:`~edgevos.runtime.session.Session`
and writes every sink.  The loop is :func:`run_pipeline`, reusable by
benchmarks and samples.  On Ctrl-C, SIGTERM, end of stream or a source error
the sinks are finalized (the video is playable, every computed mask is on
disk), a summary table is printed and the exit code says how the run ended:
0 end of stream / --max-frames, 1 source or input error, 130 Ctrl-C, 143 SIGTERM.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Callable, Optional, Sequence

import numpy as np

from edgevos.errors import EdgevosError, InputError, SourceError

EXIT_CODES = {"end of stream": 0, "max frames": 0, "SIGINT": 130, "SIGTERM": 143}


def _check_first_mask(mask, rgb: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise InputError(f"first mask must be (H, W) ids, got shape {m.shape}")
    if m.shape != rgb.shape[:2]:
        raise InputError(
            f"first mask is {m.shape[1]}x{m.shape[0]} but the frame is {rgb.shape[1]}x{rgb.shape[0]}: "
            "pass a mask of the frame's size"
        )
    if m.dtype == bool:
        m = m.astype(np.uint8)
    if not np.issubdtype(m.dtype, np.integer) or (m.size and (m.min() < 0 or m.max() > 255)):
        raise InputError(f"first mask must hold integer ids 0..255, got dtype {m.dtype}")
    m = m.astype(np.uint8, copy=False)
    if not ((m > 0) & (m < 255)).any():
        raise InputError("first mask has no object pixels: mark at least one object (ids 1..254)")
    return m


#: GIL switch interval while a pipeline runs (Python's default is 5 ms)
SWITCH_INTERVAL_S = 0.001


def run_pipeline(source, sinks: Sequence, session, *, first_mask=None, max_frames: Optional[int] = None,
                 warmup: int = 10, status: Optional[Callable[[str], None]] = None, status_every: float = 0.5,
                 power=None, handle_signals: bool = True, stop_event: Optional[threading.Event] = None,
                 core_split=None, prefetch: int = 3) -> dict:
    """Run ``session`` over ``source`` and write ``sinks``; returns the summary dict.

    ``first_mask``: (H, W) ids, a callable ``rgb -> mask`` (e.g. GrabCut from a
    box), or None to use ``source.first_mask`` (test://, davis://).
    ``power``: a :class:`~edgevos.runtime.power.PowerMonitor` (started here).
    ``handle_signals``: in the main thread, SIGINT/SIGTERM end the run cleanly.
    ``core_split``: a :class:`~edgevos.runtime.affinity.CoreSplit` (inference on its
    cores, every other thread off them), applied as the source and sinks start
    their threads and restored on return.
    ``prefetch``: frames a lossless source (file, test://, davis://) is read ahead
    in a background thread (0: in this thread); live sources are read here.
    The summary has ``stopped_by``, ``exit_code`` and ``error`` besides the stats;
    sinks and the source are closed in every case.
    """
    from edgevos.runtime.stats import FrameRecord, RunStats, mask_iou

    stats = RunStats(warmup)
    state = {"stopped_by": None}
    # the sink and source threads hand the GIL back within 1 ms instead of Python's default
    # 5 ms, so the inference loop does not stall behind a writer thread (restored on return)
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(min(old_switch, SWITCH_INTERVAL_S))
    stop_event = stop_event or threading.Event()

    def on_signal(signum, _frame):
        state["stopped_by"] = signal.Signals(signum).name
        stop_event.set()
        source.stop()

    old = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
    error: Optional[str] = None
    pending: Optional[BaseException] = None
    if power is not None:
        power.start()
    last_status = 0.0
    dropped_seen = 0
    t_prev = time.perf_counter()
    prefetcher = None
    try:
        from edgevos.runtime.sources import frames_of

        it, prefetcher = frames_of(source, prefetch)
        if core_split is not None:
            core_split.apply()  # after the frame reader thread started
        while True:
            if stop_event.is_set():
                break
            if max_frames is not None and len(stats) >= max_frames:
                state["stopped_by"] = "max frames"
                break
            try:
                frame = next(it)
            except StopIteration:
                break
            t_recv = time.perf_counter()
            t0 = time.perf_counter()
            if len(stats) == 0:
                mask = first_mask(frame.rgb) if callable(first_mask) else first_mask
                if mask is None:
                    mask = getattr(source, "first_mask", None)
                if mask is None:
                    raise InputError(f"{source.uri} carries no first mask: pass --init-mask PNG or --init-box x,y,w,h")
                result = session.start(frame.rgb, _check_first_mask(mask, frame.rgb))
            else:
                result = session.step(frame.rgb)
            t1 = time.perf_counter()
            for sink in sinks:
                sink.write(frame.index, frame.rgb, result)
            t2 = time.perf_counter()
            dropped = int(getattr(source, "dropped", 0))
            j = None
            if frame.gt is not None and len(stats) > 0:
                j = mask_iou(result.mask, frame.gt)
            stats.add(FrameRecord(
                index=frame.index, t_end=t2, e2e_ms=(t2 - t_recv) * 1e3, step_ms=(t1 - t0) * 1e3,
                sink_ms=(t2 - t1) * 1e3, wait_ms=(t_recv - t_prev) * 1e3,
                stage_ms=dict(getattr(result, "stage_ms", None) or {}),
                reused=getattr(result, "reused", None), p_gate=getattr(result, "p_gate", None),
                dropped=dropped - dropped_seen, j=j,
            ))
            dropped_seen = dropped
            t_prev = t2
            if core_split is not None and len(stats) in (1, warmup):  # sinks start their threads on frame 0
                core_split.apply()
            if status is not None and t2 - last_status >= status_every:
                status(stats.status_line())
                last_status = t2
    except EdgevosError as exc:
        error = str(exc)
        state["stopped_by"] = state["stopped_by"] or ("source error" if isinstance(exc, SourceError) else "error")
    except BaseException as exc:  # finalize outputs, then re-raise
        pending = exc
        state["stopped_by"] = state["stopped_by"] or type(exc).__name__
    finally:
        close_errors = []
        if prefetcher is not None:
            prefetcher.close()
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:  # keep closing the others
                close_errors.append(f"{sink}: {exc}")
        try:
            source.close()
        except Exception as exc:
            close_errors.append(f"{source}: {exc}")
        power_summary = power.stop(frames=len(stats.steady())) if power is not None else None
        if core_split is not None:
            core_split.restore()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        sys.setswitchinterval(old_switch)
    if pending is not None:
        raise pending
    stopped_by = state["stopped_by"] or "end of stream"
    if close_errors:
        error = "; ".join(([error] if error else []) + close_errors)
    summary = stats.summary(power=power_summary)
    summary.update({
        "source": str(source.uri),
        "sinks": [str(s.uri) for s in sinks],
        "stopped_by": stopped_by,
        "error": error,
        "reconnects": int(getattr(source, "reconnects", 0)),
        "affinity": core_split.describe() if core_split is not None else None,
        "exit_code": EXIT_CODES.get(stopped_by, 1) if not error else (EXIT_CODES.get(stopped_by, 1) or 1),
    })
    summary["_stats"] = stats
    return summary


# ----------------------------------------------------------------------------
# first mask from a box
# ----------------------------------------------------------------------------
def parse_box(text: str):
    try:
        x, y, w, h = (int(round(float(v))) for v in text.split(","))
    except ValueError:
        raise InputError(f"--init-box '{text}' must be x,y,w,h in pixels, e.g. 120,80,200,150") from None
    if w <= 0 or h <= 0:
        raise InputError(f"--init-box '{text}': width and height must be positive")
    return x, y, w, h


def grabcut_mask(rgb: np.ndarray, boxes, iterations: int = 5) -> np.ndarray:
    """First-frame mask from boxes (x, y, w, h): object k+1 is GrabCut inside box k,
    or the filled box when GrabCut finds nothing."""
    import cv2

    H, W = rgb.shape[:2]
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    out = np.zeros((H, W), np.uint8)
    for k, (x, y, w, h) in enumerate(boxes, start=1):
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(W, x + w), min(H, y + h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise InputError(f"box {x},{y},{w},{h} lies outside the {W}x{H} frame: give a box inside it")
        gc = np.zeros((H, W), np.uint8)
        fg = None
        try:
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            cv2.grabCut(bgr, gc, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
            fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        except cv2.error:
            fg = None
        if fg is None or not fg.any():
            fg = np.zeros((H, W), bool)
            fg[y0:y1, x0:x1] = True
        out[fg & (out == 0)] = k
    return out


# ----------------------------------------------------------------------------
# the verb
# ----------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("source", help="source URI: file://clip.mp4, v4l2:///dev/video0, csi://0, rtsp://host/x, test://, davis://ROOT?seq=NAME")
    p.add_argument("sinks", nargs="*", help="sink URIs: file://out.mp4, masks://DIR, display://0, json://stats.jsonl")
    p.add_argument("--bundle", required=True, help="bundle directory (from edgevos export)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch", "tensorrt"])
    p.add_argument("--precision", default=None, help="bundle precision to load, e.g. int8-cpu, fp32, fp16, int8")
    p.add_argument("--tau", type=float, default=None, help="reuse-gate threshold (1 = never reuse)")
    p.add_argument("--max-reuse", type=int, default=None, help="force a full step after this many reuses")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the backend")
    p.add_argument("--pin-inference", metavar="CORES", default=None,
                   help="Linux: run inference on these cores (e.g. 0 or 0,1) and decoding/encoding/writing on the "
                        "others; --threads defaults to the number of these cores")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--init-mask", help="first-frame mask PNG (ids; DAVIS layout)")
    g.add_argument("--init-box", action="append", help="x,y,w,h of an object in the first frame (GrabCut); repeat per object")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--warmup", type=int, default=10, help="frames excluded from steady-state statistics")
    p.add_argument("--log", help="write the summary and per-frame stats as JSON here")
    p.add_argument("--timeout", type=float, default=None, help="seconds without a frame before a source counts as stalled")
    p.add_argument("--reconnect", type=int, default=0, help="live sources: reconnect attempts after a stall/disconnect")
    p.add_argument("--no-power", action="store_true", help="do not sample tegrastats/jtop")
    p.add_argument("--quiet", action="store_true", help="no live status line")


def _status_printer():
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(line: str) -> None:
        if tty:
            sys.stderr.write("\r" + line[:160] + "\x1b[K")
            sys.stderr.flush()
        elif time.perf_counter() - last[0] >= 5.0:
            print(line, file=sys.stderr, flush=True)
            last[0] = time.perf_counter()

    return show, tty


def main(args) -> int:
    from edgevos.runtime.power import PowerMonitor
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source
    from edgevos.runtime.stats import format_table
    from edgevos.runtime.uri import parse_sink, parse_source

    src_uri = parse_source(args.source)
    sink_uris = [parse_sink(s) for s in args.sinks]  # validate every URI before opening anything
    first_mask = None
    if args.init_mask:
        from edgevos.data.masks import read_mask

        first_mask = read_mask(args.init_mask)
    elif args.init_box:
        boxes = [parse_box(b) for b in args.init_box]
        first_mask = lambda rgb: grabcut_mask(rgb, boxes)  # noqa: E731
    elif src_uri.scheme not in ("test", "davis"):
        raise InputError(f"{src_uri} has no ground truth: pass --init-mask PNG or --init-box x,y,w,h")

    from edgevos.runtime.session import Session

    kwargs = {"backend": args.backend}
    for name in ("precision", "tau", "threads", "max_reuse"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    split = None
    if args.pin_inference is not None:
        from edgevos.runtime.affinity import CoreSplit, parse_cores

        split = CoreSplit(parse_cores(args.pin_inference))
        if args.threads is None and args.backend != "tensorrt":
            kwargs["threads"] = len(split.cores)  # one intra-op thread per inference core, not one per machine core
    make = lambda: Session.from_bundle(args.bundle, **kwargs)  # noqa: E731
    session = split.build(make) if split is not None else make()  # the backend's threads count as inference

    options = {"reconnect": args.reconnect}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    source = open_source(src_uri, **options) if src_uri.scheme not in ("test", "davis") else open_source(src_uri)
    sinks = []
    try:
        for u in sink_uris:
            sinks.append(open_sink(u, fps=source.fps))
    except BaseException:
        for s in sinks:
            s.close()
        source.close()
        raise
    show, tty = _status_printer()
    power = None if args.no_power else PowerMonitor()
    summary = run_pipeline(source, sinks, session, first_mask=first_mask, max_frames=args.max_frames,
                           warmup=args.warmup, status=None if args.quiet else show, power=power, core_split=split)
    stats = summary.pop("_stats")
    if tty and not args.quiet:
        sys.stderr.write("\n")
    if args.log:
        stats.write_json(args.log, summary)
    print(format_table(summary))
    print(f"stopped by: {summary['stopped_by']}" + (f" ({summary['error']})" if summary["error"] else ""))
    for sink in sinks:
        if sink.frames:
            print(f"wrote {sink.uri} ({sink.frames} frames)")
    return int(summary["exit_code"])
