"""The run loop: a source URI through a :class:`~edgevos.runtime.session.Session` into sinks.

``run(source, sinks, bundle=...)`` opens everything from URIs and returns a
:class:`RunSummary`; ``run_pipeline(source, sinks, session)`` is the loop itself
for callers that open their own source, sinks and session (benchmarks, tests).
On Ctrl-C, SIGTERM, SIGHUP (the terminal closed), end of stream or a source error the sinks are finalized
(the video is playable, every computed mask is on disk) and the summary says
how the run ended: exit code 0 end of stream / max frames, 1 source or input
error, 129 SIGHUP, 130 Ctrl-C, 143 SIGTERM.  An MP4 output is written in fragments, so
even a run that cannot finalize (SIGKILL, power loss) leaves a playable ``NAME.partial-*.mp4``
holding every frame up to the last fragment.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from edgevos.errors import EdgevosError, InputError, SourceError
from edgevos.runtime.stats import RunStats

logger = logging.getLogger(__name__)

EXIT_CODES = {"end of stream": 0, "max frames": 0, "SIGHUP": 129, "SIGINT": 130, "SIGTERM": 143}
#: signals that end a run cleanly (outputs finalized): Ctrl-C, kill, and the terminal or ssh session closing
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

#: GIL switch interval while a pipeline runs (Python's default is 5 ms)
SWITCH_INTERVAL_S = 0.001


@dataclass
class RunSummary:
    """How a run went: steady-state statistics plus how it ended.

    ``as_dict()`` is the JSON form (what ``edgevos run --log`` writes and
    :func:`~edgevos.runtime.stats.format_table` prints); ``stats`` keeps every
    per-frame record.
    """

    frames: int  # frames handled over the whole run
    warmup: int
    steady_frames: int
    fps: Optional[float]  # steady-state frames per second
    wall_s: float
    reuse_rate: Optional[float]
    dropped: int
    latency_ms: Dict[str, Optional[dict]]  # e2e / step / sink / wait -> p50, p95, p99, mean, max
    stage_ms: Dict[str, Optional[dict]]  # stage -> p50, p95, p99, mean, max
    mean_j: Optional[float]  # mean IoU with the source's ground truth, when it has one
    power: Optional[dict]
    source: str
    sinks: List[str]
    stopped_by: str  # "end of stream", "max frames", "SIGINT", "SIGTERM", "SIGHUP", "source error", "error"
    error: Optional[str]
    reconnects: int
    affinity: Optional[dict]
    exit_code: int
    window_frames: Optional[int] = None  # set when latency/FPS describe only a recent window
    sink_frames: List[int] = field(default_factory=list)  # frames each sink wrote
    budget: Optional[dict] = None  # FPS budget mode: target and achieved FPS, reuse rate, tau over time
    stats: Optional[RunStats] = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """The summary as plain JSON-ready data (no per-frame records)."""
        out = {k: getattr(self, k) for k in ("frames", "warmup", "steady_frames", "fps", "wall_s", "reuse_rate",
                                             "dropped", "latency_ms", "stage_ms", "mean_j", "power")}
        if self.window_frames is not None:
            out["window_frames"] = self.window_frames
        out.update({k: getattr(self, k) for k in ("source", "sinks", "stopped_by", "error", "reconnects",
                                                  "affinity", "exit_code")})
        if self.budget is not None:
            out["budget"] = self.budget
        return out

    def table(self) -> str:
        """The summary as a table a person can read."""
        from edgevos.runtime.stats import format_table

        return format_table(self.as_dict())

    def write_json(self, path) -> Path:
        """The summary and every per-frame record, written atomically to ``path``."""
        return self.stats.write_json(path, self.as_dict())


def mask_from_boxes(session, rgb: np.ndarray, boxes: Sequence, refine: bool = True) -> np.ndarray:
    """The first mask from boxes: GrabCut inside each box, then (``refine``) the model's own
    segmentation of the same frame, its target model fitted on the GrabCut mask, kept inside
    each (slightly grown) box.  An object the model loses falls back to its GrabCut mask.

    On the first frames of the six held-out DAVIS 2016 train sequences (box = the ground
    truth's bounding box) the refinement raised J from 0.752 to 0.767; on all 30, 0.683 to 0.735.

    Args:
        session: the Session that will track the objects (its state is replaced by ``start``).
        rgb: the first frame, uint8 (H, W, 3).
        boxes: one (x, y, w, h) per object, in pixels.
        refine: run the model's refinement (else GrabCut only).

    Returns:
        uint8 (H, W) object ids 1..len(boxes), 0 background.
    """
    from edgevos.data.boxes import box_region, grabcut_mask

    mask = grabcut_mask(rgb, boxes)
    if not refine:
        return mask
    program = getattr(session, "program", session)  # the program itself: no FPS-budget bookkeeping
    program.start(rgb, mask)
    ids = program.step(rgb).mask
    out = np.zeros_like(mask)
    for k, box in enumerate(boxes, start=1):
        mine = (ids == k) & box_region(mask.shape, box)
        out[(mine if mine.sum() >= 0.2 * (mask == k).sum() else mask == k) & (out == 0)] = k
    return out


def run_pipeline(source, sinks: Sequence, session, *, first_mask=None, max_frames: Optional[int] = None,
                 warmup: int = 10, status: Optional[Callable[[str], None]] = None, status_every: float = 0.5,
                 power=None, handle_signals: bool = True, stop_event: Optional[threading.Event] = None,
                 core_split=None, prefetch: int = 3, max_records: int = 5000) -> RunSummary:
    """Run ``session`` over an open ``source`` and write open ``sinks``.

    Args:
        source: an open source (:func:`~edgevos.runtime.sources.open_source`).
        sinks: open sinks (:func:`~edgevos.runtime.sinks.open_sink`); closed here in every case.
        session: a started-or-not :class:`~edgevos.runtime.session.Session` (or anything with
            ``start(rgb, mask)`` and ``step(rgb)``).
        first_mask: (H, W) ids, a callable ``rgb -> mask`` (e.g. GrabCut from a box), or None
            to use ``source.first_mask`` (test://, davis://).
        max_frames: stop after this many frames.
        warmup: frames excluded from steady-state statistics.
        status: called with a one-line live status every ``status_every`` seconds.
        power: a :class:`~edgevos.runtime.power.PowerMonitor` (started here).
        handle_signals: in the main thread, SIGINT/SIGTERM/SIGHUP end the run cleanly.
        stop_event: set it from another thread to end the run.
        core_split: a :class:`~edgevos.runtime.affinity.CoreSplit` (inference on its cores,
            every other thread off them), applied as the source and sinks start their
            threads and restored on return.
        prefetch: frames a lossless source (file, test://, davis://) is read ahead in a
            background thread (0: in this thread); live sources are read here.
        max_records: per-frame records held (and logged); totals and the steady FPS
            cover the whole run regardless.

    Returns:
        A :class:`RunSummary`; errors of the source, the input or a sink end the run and
        are reported in it (``error``, ``exit_code``); other exceptions are re-raised
        after the sinks are finalized.
    """
    from edgevos.metrics import mean_object_iou
    from edgevos.programs.base import check_mask
    from edgevos.runtime.stats import FrameRecord

    stats = RunStats(warmup, max_records=max_records)
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
        for sig in STOP_SIGNALS:
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
            if len(stats) == 0 and not getattr(session, "supervised", True):  # the model finds the object itself
                result = session.start(frame.rgb)
            elif len(stats) == 0:
                mask = first_mask(frame.rgb) if callable(first_mask) else first_mask
                if mask is None:
                    mask = getattr(source, "first_mask", None)
                if mask is None:
                    raise InputError(f"{source.uri} carries no first mask: pass --init-mask PNG or --init-box x,y,w,h")
                mask, _ = check_mask(np.asarray(mask), frame.rgb.shape[:2])
                result = session.start(frame.rgb, mask)
            else:
                result = session.step(frame.rgb)
            t1 = time.perf_counter()
            for sink in sinks:
                sink.write(frame.index, frame.rgb, result)
            t2 = time.perf_counter()
            dropped = int(getattr(source, "dropped", 0))
            j = None
            if frame.gt is not None and len(stats) > 0:
                j = mean_object_iou(result.mask, frame.gt)
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
    return RunSummary(
        **stats.summary(power=power_summary),
        source=str(source.uri),
        sinks=[str(s.uri) for s in sinks],
        stopped_by=stopped_by,
        error=error,
        reconnects=int(getattr(source, "reconnects", 0)),
        affinity=core_split.describe() if core_split is not None else None,
        exit_code=EXIT_CODES.get(stopped_by, 1) if not error else (EXIT_CODES.get(stopped_by, 1) or 1),
        sink_frames=[int(getattr(s, "frames", 0)) for s in sinks],
        budget=session.governor.summary() if getattr(session, "governor", None) is not None else None,
        stats=stats,
    )


def output_path(uri) -> Optional[Path]:
    """The file or directory a sink URI writes (None for display:// and rtsp://)."""
    if uri.scheme in ("file", "json"):
        return Path(uri.path)
    if uri.scheme == "masks":
        return Path(uri.path) / uri.query["seq"] if uri.query.get("seq") else Path(uri.path)
    return None


def check_outputs(source, sinks: Sequence, log=None) -> None:
    """Refuse, before anything is opened, outputs that would overwrite the input or each other,
    and a ``log`` location that cannot be written.

    Args:
        source: the parsed source URI.
        sinks: the parsed sink URIs.
        log: the ``--log`` path, or None.
    """
    from edgevos.parsing import check_writable, same_file

    outputs = [(str(u), p) for u in sinks if (p := output_path(u)) is not None]
    if log:
        outputs.append((f"--log {log}", check_writable(log, "--log")))
    src = Path(source.path) if source.scheme in ("file", "davis") else None
    for k, (name, path) in enumerate(outputs):
        if src is not None and same_file(path, src):
            raise InputError(f"output {name} is the input {source}: writing it would destroy the input; "
                             "write the output somewhere else")
        if source.scheme == "davis" and Path(os.path.realpath(src)) in Path(os.path.realpath(path)).parents:
            raise InputError(f"output {name} is inside the dataset {source}: it would mix with the "
                             "dataset's files; write the output somewhere else")
        for other, other_path in outputs[:k]:
            if same_file(path, other_path):
                raise InputError(f"outputs {other} and {name} are the same path '{path}': give each output "
                                 "its own file or directory")


def run(source: str, sinks: Iterable[str] = (), *, bundle=None, session=None, backend: str = "onnxruntime",
        precision: Optional[str] = None, tau: Optional[float] = None, max_reuse: Optional[int] = None,
        reuse_max_area: Optional[float] = None,
        target_fps: Optional[float] = None, threads: Optional[int] = None, first_mask=None, init_box: Optional[Sequence] = None,
        refine_box: bool = True, unsupervised: bool = False,
        pin_inference: Union[str, Iterable[int], None] = None, max_frames: Optional[int] = None,
        warmup: int = 10, timeout: Optional[float] = None, reconnect: int = 0, power=True,
        status: Optional[Callable[[str], None]] = None, log=None) -> RunSummary:
    """Segment a source URI and write sink URIs (what ``edgevos run`` does).

        summary = run("file://clip.mp4", ["file://out.mp4", "masks://out/"], bundle="bundles/gfrtm",
                      tau=0.85, init_box=[(250, 100, 150, 300)])

    Args:
        source: source URI: ``file://clip.mp4``, ``v4l2:///dev/video0``, ``csi://0``,
            ``rtsp://host/x``, ``test://``, ``davis://ROOT?seq=NAME``.
        sinks: sink URIs: ``file://out.mp4``, ``masks://DIR``, ``display://0``, ``json://stats.jsonl``.
        bundle: bundle directory (from :func:`~edgevos.export.export_bundle`); or give ``session``.
        session: a ready :class:`~edgevos.runtime.session.Session` instead of ``bundle``.
        backend, precision, tau, max_reuse, threads: for ``Session.from_bundle``.
        reuse_max_area: G-FRTM-fast's size rule (an object covering more than this share of the frame is
            always computed); None: the weights' own.
        target_fps: FPS budget mode: steer tau live to hold this frame rate with the least
            reuse (tau starts at 1); the summary's ``budget``
            tells the achieved FPS, reuse rate and tau over time.
        first_mask: (H, W) ids, a mask PNG path, or a callable ``rgb -> mask``; sources with
            ground truth (test://, davis://) carry their own.
        init_box: boxes (x, y, w, h) or ``"x,y,w,h"`` strings, one per object: the first
            mask is GrabCut inside each, refined by the model (:func:`mask_from_boxes`).
        refine_box: with ``init_box``, refine GrabCut's mask with the model (default on).
        unsupervised: require an unsupervised model (it finds the primary moving object; no first mask).
        pin_inference: Linux: cores for inference (``"0,1"`` or a set); decoding, encoding
            and writing run on the others; ``threads`` defaults to their number.
        max_frames: stop after this many frames.
        warmup: frames excluded from steady-state statistics.
        timeout: seconds without a frame before a live source counts as stalled.
        reconnect: live sources: reconnect attempts after a stall or disconnect.
        power: sample tegrastats/jtop where they exist (or a
            :class:`~edgevos.runtime.power.PowerMonitor` to use, e.g. one that logs tegrastats).
        status: called with a one-line live status twice a second.
        log: write the summary and per-frame records as JSON here.

    Returns:
        A :class:`RunSummary`.
    """
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source
    from edgevos.runtime.uri import parse_sink, parse_source

    src_uri = parse_source(source)
    sink_uris = [parse_sink(s) for s in sinks]  # validate every URI before opening anything
    check_outputs(src_uri, sink_uris, log)
    if (bundle is None) == (session is None):
        raise InputError("run() needs exactly one of bundle= (a bundle directory) or session= (a Session)")
    if first_mask is not None and init_box:
        raise InputError("give either first_mask (--init-mask) or init_box (--init-box), not both")
    if isinstance(first_mask, (str, Path)):
        from edgevos.data.masks import read_mask

        first_mask = read_mask(first_mask)
    elif init_box:
        from edgevos.data.boxes import check_box, check_box_count, parse_box

        init_box = [init_box] if isinstance(init_box, str) else list(init_box)
        check_box_count(len(init_box))  # before any GrabCut work
        boxes = [parse_box(b) if isinstance(b, str) else check_box(b) for b in init_box]
        first_mask = lambda rgb: mask_from_boxes(session, rgb, boxes, refine_box)  # noqa: E731
    elif first_mask is None and not unsupervised and src_uri.scheme not in ("test", "davis"):
        raise InputError(f"{src_uri} has no ground truth: pass --init-mask PNG or --init-box x,y,w,h "
                         "(first_mask= or init_box= in Python), or --unsupervised for an unsupervised model")

    split = None
    if pin_inference is not None:
        from edgevos.runtime.affinity import CoreSplit, parse_cores

        split = CoreSplit(parse_cores(pin_inference) if isinstance(pin_inference, str) else set(pin_inference))
        if threads is None and backend != "tensorrt":
            threads = len(split.cores)  # one intra-op thread per inference core, not one per machine core
    if session is None:
        from edgevos.runtime.session import Session

        kwargs = {"backend": backend}
        for name, value in (("precision", precision), ("tau", tau), ("threads", threads), ("max_reuse", max_reuse)):
            if value is not None:
                kwargs[name] = value
        make = lambda: Session.from_bundle(bundle, **kwargs)  # noqa: E731
        session = split.build(make) if split is not None else make()  # the backend's threads count as inference
    if unsupervised and getattr(session, "supervised", True):
        raise InputError("--unsupervised needs an unsupervised model (a slowfast bundle exported with "
                         "mode 'unsupervised'); this one is semi-supervised: drop --unsupervised and give "
                         "--init-mask or --init-box")
    if not getattr(session, "supervised", True) and (first_mask is not None or init_box):
        raise InputError("this model is unsupervised (it finds the primary moving object): drop --init-mask / "
                         "--init-box")
    if reuse_max_area is not None:
        if not hasattr(session.program, "reuse_max_area"):
            raise InputError(f"--reuse-max-area {reuse_max_area}: only gfrtm models have the size rule; drop the "
                             "option")
        session.program.reuse_max_area = reuse_max_area
    if target_fps is not None:
        session.target_fps = target_fps

    options = {"reconnect": reconnect}
    if timeout is not None:
        options["timeout"] = timeout
    src = open_source(src_uri, **options) if src_uri.scheme not in ("test", "davis") else open_source(src_uri)
    opened = []
    try:
        for u in sink_uris:
            opened.append(open_sink(u, fps=src.fps))
    except BaseException:
        for s in opened:
            s.close()
        src.close()
        raise
    logger.debug("source %s: %s, %s fps, size %s", src.uri, type(src).__name__, src.fps, src.size)
    logger.debug("outputs: %s", ", ".join(str(s.uri) for s in opened) or "none")
    monitor = None
    if power:
        from edgevos.runtime.power import PowerMonitor

        monitor = power if isinstance(power, PowerMonitor) else PowerMonitor()
    summary = run_pipeline(src, opened, session, first_mask=first_mask, max_frames=max_frames, warmup=warmup,
                           status=status, power=monitor, core_split=split)
    logger.debug("stopped by %s after %d frames", summary.stopped_by, summary.frames)
    if log:
        summary.write_json(log)
    return summary
